"""Making an offline bundle: resolve the lock, download wheels for the target, copy the
model, write the manifest, and optionally split it into parts."""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import offline
from .offline import (
    BUNDLE_FORMAT,
    LOCK,
    MANIFEST,
    META_FILES,
    MODEL,
    SCRIPT,
    SUMS,
    TOLK_VERSION,
    WHEELS,
    BundleError,
    Pin,
    _run,
    _walk,
    normalize,
    parse_lock,
    sha256_file,
)
from .parts import split_bundle

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
_MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


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



def resolve_lock(requirements: Path, out: Path, target: Target | None = None,
                 pip_options: Sequence[str] = (), python: str | None = None) -> list[Pin]:
    """Resolve `requirements` for the target platform and write an exact, hashed lock.

    `python`, an interpreter of the target's version, makes pip evaluate environment markers
    for the target (with `--python-version` alone it evaluates them for this interpreter)."""
    target = target or Target()
    interpreter = ["--python", python] if python else []
    with tempfile.TemporaryDirectory(prefix="tolk-lock-") as tmp:
        report = Path(tmp) / "report.json"
        _run([sys.executable, "-m", "pip", *interpreter, "install", "--dry-run",
              "--ignore-installed",
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
    _check_args(out, model, split_mb)
    pins, excluded, skipped = _select(lock, skip_installed, exclude_packages)
    made_out = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out)) if split_mb else out
    ok = False
    try:
        wheels = stage / WHEELS
        wheels.mkdir()
        _download(stage, pins, [*target.pip_args(), *pip_options])
        if build_tolk or tolk_wheel is not None:
            pins.append(_tolk_pin(wheels, tolk_wheel, hashed=any(p.hashes for p in pins)))
        header = [f"# tolk bundle lock: from {lock.name} (sha256 {sha256_file(lock)})",
                  f"# excluded: {', '.join(p.name for p in excluded) or '-'}",
                  f"# already on the host: {', '.join(p.name for p in skipped) or '-'}"]
        (stage / LOCK).write_text("\n".join(header + [p.line() for p in pins]) + "\n",
                                  encoding="utf-8")
        model_left_out: list[str] = []
        if model is not None:
            dest = stage / MODEL / model.resolve().name
            dest.mkdir(parents=True)
            model_left_out = _copy_model(model, dest, model_excludes)
        shutil.copy2(Path(offline.__file__), stage / SCRIPT)
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
        if not ok:
            _remove_half_made(out, made_out)
    return result


def _check_args(out: Path, model: Path | None, split_mb: float | None) -> None:
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} exists and is not empty")
    if model is not None and not model.is_dir():
        raise BundleError(f"--model {model} is not a directory")
    if split_mb is not None and split_mb <= 0:
        raise BundleError("--split-mb must be positive")


def _select(lock: Path, skip_installed: Path | None, exclude_packages: Sequence[str]
            ) -> tuple[list[Pin], list[Pin], list[Pin]]:
    """The lock's pins to bundle, those excluded by name, and those the host already has."""
    all_pins = parse_lock(lock.read_text(encoding="utf-8"))
    have = parse_freeze(skip_installed.read_text(encoding="utf-8")) if skip_installed else {}
    excluded = [p for p in all_pins if matches_any(p.name, exclude_packages)]
    skipped = [p for p in all_pins if p not in excluded and have.get(p.key) == p.version]
    pins = [p for p in all_pins if p not in excluded and p not in skipped]
    return pins, excluded, skipped


def _download(stage: Path, pins: list[Pin], pip_args: list[str]) -> None:
    """Every pin's wheel into the stage's wheel folder, by hash when the lock has them."""
    wheels = stage / WHEELS
    if pins:
        req = stage / LOCK
        req.write_text("\n".join(p.line() for p in pins) + "\n", encoding="utf-8")
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
              "-d", str(wheels), *pip_args, "-r", str(req)])
    got = {_wheel_key(w.name): w.name for w in wheels.glob("*.whl")}
    missing = [p.name for p in pins if (p.key, p.version) not in got]
    if missing:
        raise BundleError(f"no wheel was downloaded for: {', '.join(missing)}")


def _tolk_pin(wheels: Path, tolk_wheel: Path | None, hashed: bool) -> Pin:
    """tolk's own wheel (given, or built from this tree) into the bundle, and its pin."""
    if tolk_wheel is not None:
        whl = wheels / tolk_wheel.name
        shutil.copy2(tolk_wheel, whl)
    else:
        whl = build_tolk_wheel(wheels)
    name, version = _wheel_key(whl.name)
    return Pin(name, version, (f"sha256:{sha256_file(whl)}",) if hashed else ())


def _remove_half_made(out: Path, made_out: bool) -> None:
    """Leave no half-made bundle behind (`out` was new or empty)."""
    if made_out:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in list(out.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
