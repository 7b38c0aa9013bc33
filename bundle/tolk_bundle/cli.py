"""`tolk bundle lock|create|verify|install`: the offline install path (see `bundle.py`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import tolk_bundle as b


def _target_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target platform")
    g.add_argument("--platform", action="append", dest="platforms", metavar="TAG",
                   help=f"wheel platform tag (repeatable; default {b.DEFAULT_PLATFORM}); "
                        "manylinux_2_N also accepts every older manylinux tag")
    g.add_argument("--python-version", default=b.DEFAULT_PYTHON_VERSION)
    g.add_argument("--implementation", default=b.DEFAULT_IMPLEMENTATION)
    g.add_argument("--abi")


def _index_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where wheels come from (passed to pip)")
    g.add_argument("--index-url")
    g.add_argument("--extra-index-url", action="append", default=[])
    g.add_argument("--find-links", action="append", default=[])
    g.add_argument("--no-index", action="store_true")


def _target(ns: argparse.Namespace) -> b.Target:
    return b.Target(tuple(ns.platforms or [b.DEFAULT_PLATFORM]), ns.python_version,
                    ns.implementation, ns.abi)


def _pip_options(ns: argparse.Namespace) -> list[str]:
    opts: list[str] = []
    if ns.index_url:
        opts += ["--index-url", ns.index_url]
    for url in ns.extra_index_url:
        opts += ["--extra-index-url", url]
    for fl in ns.find_links:
        opts += ["--find-links", fl]
    if ns.no_index:
        opts.append("--no-index")
    return opts


def _emit(ns: argparse.Namespace, data: dict[str, Any], lines: list[str]) -> None:
    if getattr(ns, "json", False):
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(lines))


def cmd_lock(ns: argparse.Namespace) -> int:
    from . import locking
    from .locks import GPU_LOCK

    target = _target(ns)
    root = b.source_root()
    if ns.requirements is None and ns.out is None and root is not None:
        # The project's own GPU lock: with its record, following the CPU locks (`make lock`).
        rec = locking.lock_gpu(root, [], target, _pip_options(ns), python=ns.target_python)
        print(f"wrote {root / GPU_LOCK}: {len(rec.packages)} pins")
        return 0
    src = ns.requirements or _repo_file("bundle/requirements-gpu.in")
    out = ns.out or _repo_file("bundle/requirements-gpu.lock", must_exist=False)
    pins = b.resolve_lock(Path(src), Path(out), target, _pip_options(ns),
                          python=locking.target_python(target.python_version, ns.target_python))
    print(f"wrote {out}: {len(pins)} pins")
    return 0


def _repo_file(rel: str, must_exist: bool = True) -> Path:
    root = b.source_root()
    if root is None or (must_exist and not (root / rel).is_file()):
        raise b.BundleError(f"no {rel} in a tolk source tree here: name the file explicitly")
    return root / rel


def cmd_create(ns: argparse.Namespace) -> int:
    lock = Path(ns.lock) if ns.lock else b.default_lock()
    if lock is None:
        raise b.BundleError("no bundle/requirements-gpu.lock here: pass --lock FILE")
    excludes = ([] if ns.no_default_excludes else list(b.DEFAULT_EXCLUDE_PACKAGES))
    excludes += ns.exclude_package
    model_excludes = ([] if ns.no_default_excludes else list(b.DEFAULT_MODEL_EXCLUDES))
    model_excludes += ns.exclude_pattern
    res = b.create_bundle(
        Path(ns.out), lock, _target(ns),
        model=Path(ns.model) if ns.model else None,
        skip_installed=Path(ns.skip_installed) if ns.skip_installed else None,
        exclude_packages=excludes, model_excludes=model_excludes, split_mb=ns.split_mb,
        tolk_wheel=Path(ns.tolk_wheel) if ns.tolk_wheel else None,
        build_tolk=not ns.no_tolk, pip_options=_pip_options(ns),
    )
    data = {
        "path": str(res.path), "packages": [f"{p.name}=={p.version}" for p in res.pins],
        "excluded": [f"{p.name}=={p.version}" for p in res.excluded],
        "already_on_host": [f"{p.name}=={p.version}" for p in res.skipped],
        "model_excluded_files": res.model_excluded, "parts": res.parts,
    }
    lines = [f"bundle: {res.path} ({len(res.pins)} wheels)"]
    if res.excluded:
        lines.append("excluded: " + ", ".join(data["excluded"]))
    if res.skipped:
        lines.append("already on the host (left out): " + ", ".join(data["already_on_host"]))
    if res.model_excluded:
        lines.append(f"model files left out: {len(res.model_excluded)}")
    if res.parts:
        lines.append(f"split into {len(res.parts)} parts of at most {ns.split_mb} MiB")
    _emit(ns, data, lines)
    return 0


def cmd_verify(ns: argparse.Namespace) -> int:
    res = b.verify_bundle(Path(ns.dir))
    data = {"ok": res.ok, "root": str(res.root), "problems": res.problems,
            "reassembled": res.reassembled, "files": len(res.manifest.get("files", []))}
    lines = ([f"ok: {res.root} ({data['files']} files match the manifest)"] if res.ok
             else ["FAILED: " + p for p in res.problems])
    _emit(ns, data, lines)
    return 0 if res.ok else 1


def cmd_install(ns: argparse.Namespace) -> int:
    res = b.install_bundle(Path(ns.dir), ns.python)
    data = {
        "python": res.python,
        "installed": [{"name": n, "version": v, "previous": o} for n, o, v in res.installed],
        "already_installed": [{"name": n, "version": v} for n, v in res.already],
        "warnings": res.warnings, "pip_check": res.pip_check,
        "model": str(res.model) if res.model else None,
    }
    lines = [f"installed into {res.python}:"]
    lines += [f"  + {n} {v}" + (f" (was {o})" if o else "") for n, o, v in res.installed]
    if res.already:
        lines.append("already there: " + ", ".join(f"{n} {v}" for n, v in res.already))
    lines += [f"warning: {w}" for w in res.warnings]
    if res.pip_check:
        lines.append("pip check (excluded packages are expected here):\n" + res.pip_check)
    if res.model:
        lines.append(f"model: {res.model}  (serve with --model {res.model})")
    _emit(ns, data, lines)
    return 0


def _run(func: Any) -> Any:
    def run(ns: argparse.Namespace) -> int:
        logging.basicConfig(level=logging.INFO if ns.verbose else logging.WARNING,
                            format="%(message)s", stream=sys.stderr)
        try:
            return int(func(ns))
        except b.BundleError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return run


def add_bundle_parser(sub: Any) -> None:
    """Add `tolk bundle …` to the `tolk` command's subparsers."""
    bundle = sub.add_parser("bundle", help="offline bundles for air-gapped hosts")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True)

    lock = bsub.add_parser("lock", help="resolve the GPU requirements into an exact, hashed lock")
    lock.add_argument("requirements", nargs="?", help="default: bundle/requirements-gpu.in")
    lock.add_argument("--out", help="default: bundle/requirements-gpu.lock")
    lock.add_argument("--target-python", metavar="PATH",
                      help="a CPython of the target's version, for its markers (default: found)")
    _target_flags(lock)
    _index_flags(lock)
    lock.set_defaults(func=_run(cmd_lock))

    create = bsub.add_parser("create", help="download every wheel of the lock for the target")
    create.add_argument("out", help="the bundle directory to create (must be new or empty)")
    create.add_argument("--lock", help="default: bundle/requirements-gpu.lock")
    create.add_argument("--model", help="a model directory to carry in the bundle")
    create.add_argument("--skip-installed", metavar="FREEZE.txt",
                        help="`pip freeze` of the target host: leave out what it already has")
    create.add_argument("--exclude-package", action="append", default=[], metavar="PATTERN",
                        help="leave out packages matching this glob (default: "
                             + ", ".join(b.DEFAULT_EXCLUDE_PACKAGES) + ")")
    create.add_argument("--exclude-pattern", action="append", default=[], metavar="GLOB",
                        help="leave out model files matching this glob (default: "
                             + " ".join(b.DEFAULT_MODEL_EXCLUDES) + ")")
    create.add_argument("--no-default-excludes", action="store_true")
    create.add_argument("--split-mb", type=float, metavar="N",
                        help="pack the bundle into tar parts of at most N MiB")
    tw = create.add_mutually_exclusive_group()
    tw.add_argument("--tolk-wheel", help="the tolk wheel to include (default: build it)")
    tw.add_argument("--no-tolk", action="store_true", help="do not include tolk itself")
    _target_flags(create)
    _index_flags(create)
    create.add_argument("--json", action="store_true")
    create.set_defaults(func=_run(cmd_create))

    verify = bsub.add_parser("verify", help="check a bundle against its manifest")
    verify.add_argument("dir")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=_run(cmd_verify))

    install = bsub.add_parser("install", help="verify, then install with pip --no-index")
    install.add_argument("dir")
    install.add_argument("--python", help="the environment's interpreter (default: this one)")
    install.add_argument("--json", action="store_true")
    install.set_defaults(func=_run(cmd_install))

    for p in (lock, create, verify, install):
        p.add_argument("-v", "--verbose", action="store_true", help="log the pip commands")


def main(argv: list[str] | None = None) -> int:
    """`python -m tolk_bundle.cli …` (the same as `tolk bundle …`)."""
    parser = argparse.ArgumentParser(prog="tolk")
    add_bundle_parser(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(argv)
    return int(ns.func(ns))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
