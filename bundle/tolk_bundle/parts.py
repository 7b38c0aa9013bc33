"""Splitting a bundle into parts of at most N MiB (an uncompressed tar stream cut in pieces)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

from .offline import (
    BUNDLE_FORMAT,
    MANIFEST,
    PART_PREFIX,
    PARTS,
    SCRIPT,
    SUMS,
    TOLK_VERSION,
    BundleError,
    _walk,
    sha256_file,
)


class _PartWriter(io.RawIOBase):
    """A write-only stream cut into files of at most `limit` bytes each."""

    def __init__(self, dest: Path, limit: int) -> None:
        self.dest, self.limit = dest, limit
        self.names: list[str] = []
        self._f: io.BufferedWriter | None = None
        self._left = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = memoryview(b).cast("B")
        n = len(data)
        while data:
            if self._f is None or self._left == 0:
                self._next()
            assert self._f is not None
            k = min(self._left, len(data))
            self._f.write(data[:k])
            self._left -= k
            data = data[k:]
        return n

    def _next(self) -> None:
        if self._f is not None:
            self._f.close()
        name = f"{PART_PREFIX}{len(self.names):03d}"
        self.names.append(name)
        self._f = (self.dest / name).open("wb")
        self._left = self.limit

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        super().close()


def split_bundle(src: Path, dest: Path, part_bytes: int) -> list[str]:
    """Pack `src` (a bundle directory) into tar parts of at most `part_bytes` in `dest`."""
    if part_bytes < 10240:
        raise BundleError("parts must hold at least 10 KiB")
    writer = _PartWriter(dest, part_bytes)
    with writer, tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for rel in _walk(src):
            tar.add(src / rel, arcname=rel, recursive=False)
    parts = [{"name": n, "size": (dest / n).stat().st_size, "sha256": sha256_file(dest / n)}
             for n in writer.names]
    manifest = json.loads((src / MANIFEST).read_text(encoding="utf-8"))
    (dest / PARTS).write_text(json.dumps({
        "format": BUNDLE_FORMAT, "tolk_version": TOLK_VERSION, "created": manifest["created"],
        "target": manifest.get("target"), "part_bytes": part_bytes,
        "manifest_sha256": sha256_file(src / MANIFEST), "parts": parts,
    }, indent=1) + "\n", encoding="utf-8")
    (dest / SUMS).write_text("".join(f"{p['sha256']}  {p['name']}\n" for p in parts),
                             encoding="utf-8")
    shutil.copy2(src / SCRIPT, dest / SCRIPT)
    return writer.names
