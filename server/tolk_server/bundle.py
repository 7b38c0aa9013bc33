"""Offline bundles: every wheel a target host needs (plus, optionally, a model), with a manifest.

A bundle is a directory, made on a connected machine and carried into the air gap:

    requirements.lock   the exact pins to install (`name==version`, with `--hash`es when the
                        source lock has them), minus excluded and already-installed packages
    wheels/             one wheel per pin, downloaded for the *target* platform
    model/NAME/         the model directory (optional), minus files the engine never loads
    tolk-bundle.py      this module, so a host without tolk can run `verify` and `install`
    SHA256SUMS          `sha256sum -c` format, for hosts without Python tooling
    manifest.json       every file above with its size and SHA-256, the target platform, the
                        tolk version and the creation time

With `--split-mb N` the directory is packed into an uncompressed tar stream cut into parts of
at most N MiB (`tolk-bundle.tar.000`, …) next to `parts.json` (each part's size and SHA-256).
`verify` and `install` check the parts, reassemble them into `unpacked/` and check that.
(`cat tolk-bundle.tar.* | tar -x` reassembles them by hand.)

Wheels are never modified: they are hash-pinned, and pip refuses a wheel whose hash changed.
What is left out is decided per package (`--exclude-package`, by default the torchvision,
torchaudio and torchcodec wheels that vLLM depends on but a text model never imports) and per
model file (`--exclude-pattern`, by default other frameworks' weights and VCS metadata).

This module uses the standard library only: it is copied into each bundle and runs there as
`python3 tolk-bundle.py verify|install DIR`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from . import __version__ as TOLK_VERSION
except ImportError:  # pragma: no cover - running as the standalone tolk-bundle.py
    TOLK_VERSION = "unknown"

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

# The default target: the CUDA 13 image (Ubuntu 24.04, CPython 3.12) and GPU hosts with
# glibc >= 2.31. manylinux_2_28 alone does not resolve vllm 0.26.0 (llguidance 1.7.x ships
# x86_64 wheels for manylinux_2_31 only); see bundle/requirements-gpu.lock.
DEFAULT_PLATFORM = "manylinux_2_31_x86_64"
DEFAULT_PYTHON_VERSION = "3.12"
DEFAULT_IMPLEMENTATION = "cp"
# vLLM depends on these, but a text-only translation model never imports them.
DEFAULT_EXCLUDE_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
# Files in a model directory that vLLM never loads on a GPU host.
DEFAULT_MODEL_EXCLUDES = (
    ".git/*", ".cache/*", ".gitattributes", "*.h5", "*.msgpack", "*.ot", "*.onnx", "onnx/*",
    "*.gguf", "*.tflite", "original/*", "coreml/*",
)
CHUNK = 1 << 20

_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;=]+)$")
_HASH_RE = re.compile(r"^--hash=(sha256|sha384|sha512):([0-9a-fA-F]+)$")
_MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


class BundleError(Exception):
    """A bundle cannot be created, verified or installed; the message says why."""


def normalize(name: str) -> str:
    """The PEP 503 normal form of a project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --------------------------------------------------------------------------- lock files


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


def parse_freeze(text: str) -> dict[str, str]:
    """`pip freeze` output → {normalized name: version}; editable and URL installs are left out."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")) or " @ " in line:
            continue
        name, sep, version = line.partition("==")
        if sep and version:
            out[normalize(name.split("[")[0])] = version.strip()
    return out


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    key = normalize(name)
    return any(fnmatch.fnmatchcase(key, normalize(p)) for p in patterns)


# --------------------------------------------------------------------------- target


def expand_platform(platform: str) -> list[str]:
    """`manylinux_2_31_x86_64` → itself and every older manylinux tag (pip does not)."""
    m = _MANYLINUX_RE.match(platform)
    if not m or int(m.group(1)) != 2:
        return [platform]
    minor, arch = int(m.group(2)), m.group(3)
    tags: list[str] = []
    for v in range(minor, 4, -1):
        tags.append(f"manylinux_2_{v}_{arch}")
        legacy = _LEGACY_MANYLINUX.get((2, v))
        if legacy:
            tags.append(f"{legacy}_{arch}")
    return tags


@dataclass(frozen=True)
class Target:
    platforms: tuple[str, ...] = (DEFAULT_PLATFORM,)
    python_version: str = DEFAULT_PYTHON_VERSION
    implementation: str = DEFAULT_IMPLEMENTATION
    abi: str | None = None

    def all_platforms(self) -> list[str]:
        out: list[str] = []
        for p in self.platforms:
            out += [t for t in expand_platform(p) if t not in out]
        return out

    def pip_args(self) -> list[str]:
        args: list[str] = []
        for p in self.all_platforms():
            args += ["--platform", p]
        args += ["--python-version", self.python_version, "--implementation",
                 self.implementation, "--only-binary=:all:"]
        if self.abi:
            args += ["--abi", self.abi]
        return args

    def to_json(self) -> dict[str, Any]:
        return {"platforms": list(self.platforms), "python_version": self.python_version,
                "implementation": self.implementation, "abi": self.abi}


# --------------------------------------------------------------------------- helpers


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


def source_root() -> Path | None:
    """The tolk source tree this module runs from (it holds pyproject.toml), if any."""
    here = Path(__file__).resolve()
    for parent in here.parents[:4]:
        pp = parent / "pyproject.toml"
        if pp.is_file() and 'name = "tolk"' in pp.read_text(encoding="utf-8"):
            return parent
    return None


def default_lock() -> Path | None:
    root = source_root()
    if root and (root / "bundle" / "requirements-gpu.lock").is_file():
        return root / "bundle" / "requirements-gpu.lock"
    return None


def _wheel_key(filename: str) -> tuple[str, str]:
    parts = filename[:-4].split("-")
    return normalize(parts[0]), parts[1] if len(parts) > 1 else ""


# --------------------------------------------------------------------------- lock generation


def resolve_lock(requirements: Path, out: Path, target: Target | None = None,
                 pip_options: Sequence[str] = ()) -> list[Pin]:
    """Resolve `requirements` for the target platform and write an exact, hashed lock."""
    target = target or Target()
    with tempfile.TemporaryDirectory(prefix="tolk-lock-") as tmp:
        report = Path(tmp) / "report.json"
        _run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
              "--quiet", "--report", str(report), "--target", str(Path(tmp) / "t"),
              *target.pip_args(), *pip_options, "-r", str(requirements)])
        data = json.loads(report.read_text(encoding="utf-8"))
    pins: list[Pin] = []
    for item in data.get("install", []):
        meta, info = item["metadata"], item["download_info"]
        hashes = info.get("archive_info", {}).get("hashes", {})
        sha = hashes.get("sha256")
        pins.append(Pin(meta["name"], meta["version"], (f"sha256:{sha}",) if sha else ()))
    pins.sort(key=lambda p: p.key)
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = [
        "# The exact wheels of a tolk GPU host. Generated by `tolk bundle lock`; do not edit.",
        f"# input: {requirements.name}; resolved {now} with pip, for the target:",
        f"#   --platform {' '.join(target.platforms)} (and every older manylinux tag)",
        f"#   --python-version {target.python_version} --implementation "
        f"{target.implementation} --only-binary=:all:",
        "# Hashes are of the wheel chosen for that target; regenerate for another target.",
        "# Every requirement resolved to a wheel on the registry used. `tolk bundle create`",
        f"# leaves out by default: {', '.join(DEFAULT_EXCLUDE_PACKAGES)} (vLLM depends on them;",
        "# a text model never imports them).",
        "",
    ]
    out.write_text("\n".join(header) + "\n".join(p.line() for p in pins) + "\n",
                   encoding="utf-8")
    return pins


# --------------------------------------------------------------------------- create


@dataclass
class CreateResult:
    path: Path
    pins: list[Pin]
    excluded: list[Pin]
    skipped: list[Pin]
    model_excluded: list[str]
    parts: list[str] = field(default_factory=list)


def _copy_model(src: Path, dest: Path, patterns: Sequence[str]) -> list[str]:
    files = _walk(src)
    have_safetensors = any(f.endswith(".safetensors") for f in files)
    left_out: list[str] = []
    for rel in files:
        base = rel.rsplit("/", 1)[-1]
        drop = any(fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(base, p) for p in patterns)
        # With safetensors present, vLLM never loads the PyTorch pickles.
        if have_safetensors and fnmatch.fnmatchcase(base, "pytorch_model*.bin"):
            drop = True
        if drop:
            left_out.append(rel)
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dest / rel)
    return left_out


def write_manifest(root: Path, extra: dict[str, Any]) -> dict[str, Any]:
    files = []
    for rel in _walk(root):
        if rel in META_FILES:
            continue
        p = root / rel
        files.append({"path": rel, "size": p.stat().st_size, "sha256": sha256_file(p)})
    manifest = {"format": BUNDLE_FORMAT, "tolk_version": TOLK_VERSION,
                "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                **extra, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    (root / SUMS).write_text("".join(f"{f['sha256']}  {f['path']}\n" for f in files),
                             encoding="utf-8")
    return manifest


_NOT_SOURCE = frozenset({".venv", ".git", "build", "dist", "__pycache__", ".mypy_cache",
                         ".pytest_cache", ".ruff_cache", ".hypothesis", "node_modules"})


def _ignore_non_source(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n in _NOT_SOURCE or n.endswith(".egg-info")]


def build_tolk_wheel(dest: Path) -> Path:
    """Build the tolk wheel from a clean copy of the source tree (it is on no index)."""
    root = source_root()
    if root is None:
        raise BundleError("no tolk source tree here: pass --tolk-wheel PATH or --no-tolk")
    with tempfile.TemporaryDirectory(prefix="tolk-wheel-") as tmp:
        src = Path(tmp) / "src"  # a copy: no stale build/ in, and none left in the tree
        shutil.copytree(root, src, ignore=_ignore_non_source, symlinks=True)
        out = Path(tmp) / "out"
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
              "--quiet", "-w", str(out), str(src)])
        built = sorted(out.glob("tolk-*.whl"))
        if not built:
            raise BundleError("pip wheel produced no tolk wheel")
        whl = dest / built[0].name
        shutil.copy2(built[0], whl)
    return whl


def create_bundle(
    out: Path,
    lock: Path,
    target: Target | None = None,
    *,
    model: Path | None = None,
    skip_installed: Path | None = None,
    exclude_packages: Sequence[str] = DEFAULT_EXCLUDE_PACKAGES,
    model_excludes: Sequence[str] = DEFAULT_MODEL_EXCLUDES,
    split_mb: float | None = None,
    tolk_wheel: Path | None = None,
    build_tolk: bool = True,
    pip_options: Sequence[str] = (),
) -> CreateResult:
    target = target or Target()
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} exists and is not empty")
    if model is not None and not model.is_dir():
        raise BundleError(f"--model {model} is not a directory")
    if split_mb is not None and split_mb <= 0:
        raise BundleError("--split-mb must be positive")
    all_pins = parse_lock(lock.read_text(encoding="utf-8"))
    have = parse_freeze(skip_installed.read_text(encoding="utf-8")) if skip_installed else {}
    excluded = [p for p in all_pins if matches_any(p.name, exclude_packages)]
    skipped = [p for p in all_pins if p not in excluded and have.get(p.key) == p.version]
    pins = [p for p in all_pins if p not in excluded and p not in skipped]

    made_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out)) if split_mb else out
    ok = False
    try:
        wheels = stage / WHEELS
        wheels.mkdir()
        lock_lines = [p.line() for p in pins]
        if pins:
            req = stage / LOCK
            req.write_text("\n".join(lock_lines) + "\n", encoding="utf-8")
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                  "-d", str(wheels), *target.pip_args(), *pip_options, "-r", str(req)])
        got = {_wheel_key(w.name): w.name for w in wheels.glob("*.whl")}
        missing = [p.name for p in pins if (p.key, p.version) not in got]
        if missing:
            raise BundleError(f"no wheel was downloaded for: {', '.join(missing)}")
        if build_tolk or tolk_wheel is not None:
            if tolk_wheel is not None:
                whl = wheels / tolk_wheel.name
                shutil.copy2(tolk_wheel, whl)
            else:
                whl = build_tolk_wheel(wheels)
            name, version = _wheel_key(whl.name)
            hashes = (f"sha256:{sha256_file(whl)}",) if any(p.hashes for p in pins) else ()
            tolk_pin = Pin(name, version, hashes)
            pins.append(tolk_pin)
            lock_lines.append(tolk_pin.line())
        header = [f"# tolk bundle lock: from {lock.name} (sha256 {sha256_file(lock)})",
                  f"# excluded: {', '.join(p.name for p in excluded) or '-'}",
                  f"# already on the host: {', '.join(p.name for p in skipped) or '-'}"]
        (stage / LOCK).write_text("\n".join(header + lock_lines) + "\n", encoding="utf-8")
        model_left_out: list[str] = []
        if model is not None:
            dest = stage / MODEL / model.resolve().name
            dest.mkdir(parents=True)
            model_left_out = _copy_model(model, dest, model_excludes)
        shutil.copy2(Path(__file__), stage / SCRIPT)
        write_manifest(stage, {
            "target": target.to_json(),
            "packages": [{"name": p.name, "version": p.version} for p in pins],
            "excluded_packages": [f"{p.name}=={p.version}" for p in excluded],
            "assumed_installed": [f"{p.name}=={p.version}" for p in skipped],
            "model": (f"{MODEL}/{model.resolve().name}" if model is not None else None),
            "model_excluded_files": model_left_out,
        })
        result = CreateResult(out, pins, excluded, skipped, model_left_out)
        if split_mb:
            result.parts = split_bundle(stage, out, int(split_mb * 1024 * 1024))
        ok = True
    finally:
        if stage != out:
            shutil.rmtree(stage, ignore_errors=True)
        if not ok:  # leave no half-made bundle behind (`out` was new or empty)
            if made_out:
                shutil.rmtree(out, ignore_errors=True)
            else:
                for child in list(out.iterdir()):
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
    return result


# --------------------------------------------------------------------------- split / join


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


# --------------------------------------------------------------------------- verify


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


# --------------------------------------------------------------------------- install


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


# --------------------------------------------------------------------------- standalone


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
