"""Verifying and installing an offline bundle, standard library only.

This module is copied into each bundle as `tolk-bundle.py` and runs there on a host that has
no tolk yet: `python3 tolk-bundle.py verify|install DIR` (see `tolk_bundle` for the layout).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from tolk import __version__ as _version
except ImportError:  # pragma: no cover - running as the standalone tolk-bundle.py
    _version = "unknown"
TOLK_VERSION: str = _version

log = logging.getLogger("tolk.bundle")

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
PARTS = "parts.json"
PART_PREFIX = "tolk-bundle.tar."
UNPACKED = "unpacked"
WHEELS = "wheels"
MODEL = "model"
LOCK = "requirements.lock"
SCRIPT = "tolk-bundle.py"
META_FILES = frozenset({MANIFEST, SUMS})

CHUNK = 1 << 20

_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;=]+)$")
_HASH_RE = re.compile(r"^--hash=(sha256|sha384|sha512):([0-9a-fA-F]+)$")


class BundleError(Exception):
    """A bundle cannot be created, verified or installed; the message says why."""


def normalize(name: str) -> str:
    """The PEP 503 normal form of a project name."""
    return re.sub(r"[-_.]+", "-", name).lower()



@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return normalize(self.name)

    def line(self) -> str:
        if not self.hashes:
            return f"{self.name}=={self.version}"
        return " \\\n    ".join([f"{self.name}=={self.version}",
                                *(f"--hash={h}" for h in self.hashes)])


def _logical_lines(text: str) -> Iterator[str]:
    buf = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield buf.strip()
        buf = ""
    if buf.strip():
        yield buf.strip()


def parse_lock(text: str) -> list[Pin]:
    """Exact pins only: `name==version` with optional `--hash=ALG:HEX` options."""
    pins: list[Pin] = []
    seen: set[str] = set()
    for line in _logical_lines(text):
        first, *rest = line.split()
        m = _PIN_RE.match(first)
        if not m:
            raise BundleError(f"lock lines must be exact `name==version` pins, got: {line!r}")
        hashes: list[str] = []
        for opt in rest:
            h = _HASH_RE.match(opt)
            if not h:
                raise BundleError(f"unsupported option in lock line {line!r}: {opt!r}")
            hashes.append(f"{h.group(1)}:{h.group(2).lower()}")
        pin = Pin(m.group(1), m.group(3), tuple(hashes))
        if pin.key in seen:
            raise BundleError(f"{pin.name} is pinned twice in the lock")
        seen.add(pin.key)
        pins.append(pin)
    if pins and any(p.hashes for p in pins) and not all(p.hashes for p in pins):
        missing = [p.name for p in pins if not p.hashes]
        raise BundleError(f"the lock hashes some pins but not these: {', '.join(missing)}")
    return pins


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _walk(root: Path) -> list[str]:
    """Every regular file under `root`, as sorted POSIX relative paths."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            out.append((Path(dirpath) / fn).relative_to(root).as_posix())
    return sorted(out)


def _run(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    log.info("$ %s", " ".join(cmd))
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=cwd)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-3000:]
        raise BundleError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc


def offline_env() -> dict[str, str]:
    """The environment for an offline pip: no pip configuration files, no PIP_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


class _PartReader(io.RawIOBase):
    """The parts read back as one stream."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = list(paths)
        self._f: io.BufferedReader | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        while True:
            if self._f is None:
                if not self._paths:
                    return 0
                self._f = self._paths.pop(0).open("rb")
            n = self._f.readinto(view)
            if n:
                return n
            self._f.close()
            self._f = None

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
        super().close()


def _check_parts(d: Path) -> tuple[list[str], list[Path], dict[str, Any]]:
    problems: list[str] = []
    try:
        info = json.loads((d / PARTS).read_text(encoding="utf-8"))
        parts = info["parts"]
    except (OSError, ValueError, KeyError) as exc:
        return [f"{PARTS} is unreadable: {exc}"], [], {}
    names = [p["name"] for p in parts]
    for p in parts:
        f = d / p["name"]
        if not f.is_file():
            problems.append(f"missing part: {p['name']}")
        elif f.stat().st_size != p["size"]:
            problems.append(f"part has the wrong size: {p['name']}")
        elif sha256_file(f) != p["sha256"]:
            problems.append(f"part is modified (sha256 mismatch): {p['name']}")
    known = {PARTS, SUMS, SCRIPT, *names}
    for entry in sorted(os.listdir(d)):
        if entry not in known and entry != UNPACKED:
            problems.append(f"extra file next to the parts: {entry}")
    return problems, [d / n for n in names], info


def _reassemble(parts: Sequence[Path], dest: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=dest.parent))
    try:
        with _PartReader(parts) as reader, tarfile.open(fileobj=reader, mode="r|") as tar:
            tar.extractall(tmp, filter="data")
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)



@dataclass
class VerifyResult:
    root: Path
    problems: list[str]
    manifest: dict[str, Any] = field(default_factory=dict)
    reassembled: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bundle(d: Path) -> VerifyResult:
    """Check every file against the manifest (after checking and reassembling parts)."""
    d = Path(d)
    if not d.is_dir():
        return VerifyResult(d, [f"{d} is not a directory"])
    reassembled = False
    root = d
    if not (d / MANIFEST).is_file() and (d / PARTS).is_file():
        problems, parts, info = _check_parts(d)
        if problems:
            return VerifyResult(d, problems)
        root = d / UNPACKED
        if (root / MANIFEST).is_file():
            earlier = verify_bundle(root)  # reassembled before: re-use it when still intact
            if earlier.ok and sha256_file(root / MANIFEST) == info.get("manifest_sha256"):
                return earlier
        shutil.rmtree(root, ignore_errors=True)
        try:
            _reassemble(parts, root)
        except (tarfile.TarError, OSError) as exc:
            return VerifyResult(d, [f"the parts do not reassemble: {exc}"])
        reassembled = True
        if sha256_file(root / MANIFEST) != info.get("manifest_sha256"):
            return VerifyResult(root, [f"{UNPACKED}/{MANIFEST} does not match {PARTS}"])
    if not (root / MANIFEST).is_file():
        return VerifyResult(d, [f"no {MANIFEST} (or {PARTS}) in {d}"])
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        listed = {f["path"]: f for f in manifest["files"]}
    except (ValueError, KeyError, TypeError) as exc:
        return VerifyResult(root, [f"{MANIFEST} is unreadable: {exc}"])
    problems = []
    present = set(_walk(root)) - META_FILES
    for rel in sorted(set(listed) - present):
        problems.append(f"missing file: {rel}")
    for rel in sorted(present - set(listed)):
        problems.append(f"extra file (not in the manifest): {rel}")
    for rel in sorted(present & set(listed)):
        p, want = root / rel, listed[rel]
        if p.stat().st_size != want["size"]:
            problems.append(f"modified file (size): {rel}")
        elif sha256_file(p) != want["sha256"]:
            problems.append(f"modified file (sha256 mismatch): {rel}")
    return VerifyResult(root, problems, manifest, reassembled)



@dataclass
class InstallResult:
    root: Path
    python: str
    installed: list[tuple[str, str | None, str]]  # name, version before (None: new), version
    already: list[tuple[str, str]]
    pip_check: str
    warnings: list[str]
    model: Path | None


def _pip(python: str | None, cwd: Path | None = None) -> list[str]:
    """How to run pip for `python`: its own pip, or ours with `--python` when it has none."""
    if python is None:
        return [sys.executable, "-m", "pip"]
    probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True,
                           env=offline_env(), timeout=120, cwd=cwd)
    if probe.returncode == 0:
        return [python, "-m", "pip"]
    return [sys.executable, "-m", "pip", "--python", python]


_LIST_DISTS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions()]))"
)


def installed_versions(python: str | None = None) -> dict[str, str]:
    """{normalized name: version} of what `python`'s environment has (like `pip freeze`).

    Isolated (`-I`): the working directory (a source tree's *.egg-info) does not count.
    """
    out = _run([python or sys.executable, "-I", "-c", _LIST_DISTS], env=offline_env(),
               timeout=120, cwd=Path(tempfile.gettempdir()))
    found: dict[str, str] = {}
    for name, version in json.loads(out.stdout):
        if name:  # the first on sys.path wins, as for imports
            found.setdefault(normalize(str(name)), str(version))
    return found


def install_bundle(d: Path, python: str | None = None) -> InstallResult:
    """Verify, reassemble and install with `pip --no-index` into `python`'s environment."""
    res = verify_bundle(d)
    if not res.ok:
        raise BundleError("the bundle does not verify:\n  " + "\n  ".join(res.problems))
    root = res.root
    pins = parse_lock((root / LOCK).read_text(encoding="utf-8")) if (root / LOCK).is_file() \
        else []
    # pip runs in the bundle, not in the caller's directory: a source tree there (with its
    # *.egg-info) would look installed to it
    pip = _pip(python, cwd=root)
    env = offline_env()
    before = installed_versions(python)
    if pins:
        _run([*pip, "install", "--no-index", "--find-links", str(root / WHEELS), "--no-deps",
              "--disable-pip-version-check", "-r", str(root / LOCK)], env=env, timeout=3600,
             cwd=root)
    after = installed_versions(python)
    installed: list[tuple[str, str | None, str]] = []
    already: list[tuple[str, str]] = []
    warnings: list[str] = []
    for p in pins:
        if before.get(p.key) == p.version:
            already.append((p.name, p.version))
        elif after.get(p.key) == p.version:
            installed.append((p.name, before.get(p.key), p.version))
        else:
            warnings.append(f"{p.name}=={p.version} is not installed after pip ran")
    for spec in res.manifest.get("assumed_installed", []):
        name, _, version = spec.partition("==")
        if after.get(normalize(name)) != version:
            warnings.append(f"the bundle assumed the host has {spec}; it has "
                            f"{after.get(normalize(name), 'nothing')}")
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, env=env,
                           timeout=300, cwd=root)
    model = root / res.manifest["model"] if res.manifest.get("model") else None
    return InstallResult(root, python or sys.executable, installed, already,
                         check.stdout.strip(), warnings, model)



def _standalone_main(argv: Sequence[str] | None = None) -> int:
    """`python3 tolk-bundle.py verify|install DIR` on a host that has no tolk yet."""
    ap = argparse.ArgumentParser(prog="tolk-bundle.py")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("verify").add_argument("dir", type=Path)
    ins = sub.add_parser("install")
    ins.add_argument("dir", type=Path)
    ins.add_argument("--python")
    ns = ap.parse_args(argv)
    if ns.command == "verify":
        res = verify_bundle(ns.dir)
        print("\n".join(res.problems) or f"ok: {res.root}")
        return 0 if res.ok else 1
    try:
        inst = install_bundle(ns.dir, ns.python)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, old, new in inst.installed:
        print(f"installed {name} {new}" + (f" (was {old})" if old else ""))
    for name, version in inst.already:
        print(f"already there {name} {version}")
    for w in inst.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_standalone_main())
