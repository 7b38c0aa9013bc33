"""Unit tests on deploy/helm/tolk's rendered manifests: the stop covers the drain, the probes
and the metric names are the server's own, GPUs only when asked, the security context is
whole, and the TOML config and the flags are what `tolk serve` accepts."""

from __future__ import annotations

import json
import math
import re
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.helm import (
    CHART,
    CI_VALUES,
    RELEASE,
    kinds,
    one,
    pod_specs,
    render,
    render_error,
    settings_toml,
    tolk_container,
    workload,
)
from support.subprocess_server import tolk_serve
from tolk_server.adapters.shield import ENGINE_TEARDOWN_S
from tolk_server.cli.commands import build_parser
from tolk_server.config import Settings, load_settings
from tolk_server.transports.uvicorn_bounds import uvicorn_config
from tolk_server.transports.ws import CLOSE_TIMEOUT_S, FLUSH_TIMEOUT_S

CI_NAMES = [p.name for p in CI_VALUES]
# Flags and variables of work in progress elsewhere (`tolk serve --workers`, the shared store,
# the OpenAI-compatible engine adapter): the chart uses exactly these names.
ANNOUNCED_FLAGS = {"--workers"}
ANNOUNCED_ENV = {"TOLK_STORE", "TOLK_HOME"}


def stop_tail_s() -> float:
    """What follows the drain (docs/operations.md, "Stop timeout")."""
    graceful = uvicorn_config(object(), Settings()).timeout_graceful_shutdown or 0
    return FLUSH_TIMEOUT_S + CLOSE_TIMEOUT_S + graceful + ENGINE_TEARDOWN_S


@pytest.fixture(scope="module")
def live_metrics() -> Iterator[str]:
    """/metrics of a real `tolk serve --engine echo`."""
    with tolk_serve("--engine", "echo", timeout=60) as (base, _proc):
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            yield r.read().decode()


def exported(text: str) -> dict[str, str]:
    """Metric family → type, from a scrape (`# TYPE name type`)."""
    return dict(m.groups() for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M))


@pytest.mark.parametrize("values", CI_NAMES)
def test_grace_period_covers_prestop_drain_and_the_stop(values: str) -> None:
    docs = render(values)
    pod = workload(docs)["spec"]["template"]["spec"]
    drain = settings_toml(docs)["drain_timeout_s"]
    pre_stop = tolk_container(docs)["lifecycle"]["preStop"]
    wait = pre_stop["sleep"]["seconds"] if "sleep" in pre_stop else \
        int(pre_stop["exec"]["command"][-1])
    assert wait >= 5  # the endpoints' propagation lag, while the pod still serves
    assert pod["terminationGracePeriodSeconds"] >= wait + drain + stop_tail_s() + 10


def test_grace_period_arithmetic_and_a_too_short_one_refused() -> None:
    docs = render(None, "server.drainTimeoutSeconds=45", "drain.preStopSeconds=7",
                  "drain.marginSeconds=10")
    assert stop_tail_s() == 14  # the chart's tolk.stopTailSeconds
    assert workload(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 76
    assert settings_toml(docs)["drain_timeout_s"] == 45
    err = render_error("drain.terminationGracePeriodSeconds=30")
    assert "shorter than preStop" in err and "killed" in err
    assert "set by the chart" in render_error("config.drain_timeout_s=5")


def test_prestop_exec_mode_uses_the_images_sleep() -> None:
    pre = tolk_container(render(None, "drain.preStopMode=exec"))["lifecycle"]["preStop"]
    assert pre == {"exec": {"command": ["sleep", "10"]}}


@pytest.mark.parametrize("values", CI_NAMES)
def test_probes_point_at_readiness_and_liveness(values: str) -> None:
    c = tolk_container(render(values))
    port = c["ports"][0]
    assert port["name"] == "http" and port["containerPort"] == settings_toml(render(values))["port"]
    for probe, path in (("startupProbe", "/ready"), ("readinessProbe", "/ready"),
                        ("livenessProbe", "/health")):
        assert c[probe]["httpGet"] == {"path": path, "port": "http"}, (probe, c[probe])
    s = c["startupProbe"]
    assert s["periodSeconds"] * s["failureThreshold"] >= 600  # 10 min for the model to load
    assert c["readinessProbe"]["failureThreshold"] == 1  # a drain leaves at the next probe


def test_the_probed_paths_are_served_and_ready_turns_off_on_drain(make_client: Any) -> None:
    client = make_client(api_keys=["a-key-of-sixteen-chars"])
    assert client.get("/health").status_code == 200  # no key needed: the kubelet has none
    assert client.get("/ready").status_code == 200
    client.app.state.tolk.draining = True  # what SIGTERM does first
    assert client.get("/ready").status_code == 503


@pytest.mark.parametrize("values", CI_NAMES)
def test_gpus_only_when_asked(values: str) -> None:
    docs = render(values)
    c = tolk_container(docs)
    pod = workload(docs)["spec"]["template"]["spec"]
    limits = c["resources"].get("limits", {})
    asked = values in ("gpu-tp2-values.yaml", "workers-values.yaml", "keda-values.yaml",
                       "ingress-values.yaml")
    assert ("nvidia.com/gpu" in limits) == asked, (values, limits)
    gpu_tolerated = any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", []))
    assert gpu_tolerated == asked
    if values == "gpu-tp2-values.yaml":
        assert limits["nvidia.com/gpu"] == 2 and settings_toml(docs)["tensor_parallel_size"] == 2
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    shm = [v for v in pod["volumes"] if v["name"] == "dshm"]
    local_engine = "topology" not in yaml.safe_load((CHART / "ci" / values).read_text())
    assert bool(shm) == local_engine
    if shm:
        assert shm[0]["emptyDir"]["medium"] == "Memory"
        assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]


def test_multi_node_engine_pods_get_their_gpus() -> None:
    (lws,) = kinds(render("multinode-values.yaml"), "LeaderWorkerSet")
    for role in ("leaderTemplate", "workerTemplate"):
        (c,) = lws["spec"]["leaderWorkerTemplate"][role]["spec"]["containers"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 8
    leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    script = leader["args"][0]
    for flag in ("--tensor-parallel-size 8", "--pipeline-parallel-size 2",
                 "--distributed-executor-backend ray", "--served-model-name llama-405b"):
        assert flag in script
    args = tolk_container(render("multinode-values.yaml"))["args"]
    assert args[args.index("--model") + 1] == f"llama-405b=openai+http://{RELEASE}-engine:8080/v1"


@pytest.mark.parametrize("values", CI_NAMES)
def test_security_context_is_complete_everywhere(values: str) -> None:
    docs = render(values)
    specs = pod_specs(docs)
    assert specs
    for name, spec in specs:
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name  # no TOLK_PORT=tcp://…
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True, name
            assert sc.get("privileged", False) is False
    for sa in kinds(docs, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize("values", CI_NAMES)
def test_config_and_flags_are_what_tolk_serve_accepts(values: str, tmp_path: Path) -> None:
    docs = render(values)
    toml = one(docs, "ConfigMap", RELEASE)["data"]["tolk.toml"]
    (tmp_path / "tolk.toml").write_text(toml)
    settings = load_settings(str(tmp_path / "tolk.toml"))  # extra="forbid": no stray key
    assert settings.host == "0.0.0.0" and not settings.api_keys
    c = tolk_container(docs)
    assert c["command"][-1] == "tolk" and c["args"][:3] == ["serve", "--config", "/etc/tolk/tolk.toml"]
    ns, rest = build_parser().parse_known_args(c["args"])
    assert set(rest) <= ANNOUNCED_FLAGS | {a for a in rest if a.isdigit()}, rest
    for model in ns.model or []:  # the OpenAI-compatible adapter's NAME=openai+URL
        assert re.fullmatch(r"[A-Za-z0-9._-]+=openai\+https?://\S+/v1", model), model
    for env in c["env"]:
        name = env["name"]
        if name.startswith("TOLK_"):
            assert name[5:].lower() in Settings.model_fields or name in ANNOUNCED_ENV, name


def test_toml_writes_integers_tables_and_arrays_of_tables() -> None:
    parsed = settings_toml(render("gpu-tp2-values.yaml"))
    assert parsed["max_num_seqs"] == 128 and isinstance(parsed["max_num_seqs"], int)
    assert parsed["gpu_memory_utilization"] == 0.92
    assert [m["name"] for m in parsed["models"]] == ["tower", "small"] and "model" not in parsed
    assert parsed["routes"] == [{"quality": "fast", "models": ["small", "tower"]}]
    assert parsed["priorities"] == {"bulk": 2, "bulk_chars": 2000}
    assert "nest one table deep" in render_error("config.priorities.x.y=1")


@pytest.mark.parametrize("values", CI_NAMES)
def test_secrets_stay_in_secrets(values: str) -> None:
    docs = render(values)
    c = tolk_container(docs)
    env = {e["name"]: e for e in c["env"]}
    keys = env["TOLK_API_KEYS"]
    assert keys["value"].startswith("$(CHART_API_KEYS)")
    assert env["CHART_API_KEYS"]["valueFrom"]["secretKeyRef"]["key"] == "api-keys"
    flat = json.dumps([workload(docs), one(docs, "ConfigMap", RELEASE)])
    for secret in kinds(docs, "Secret"):
        for value in secret["stringData"].values():
            for token in re.findall(r"[A-Za-z0-9-]{24,}", value):
                assert token not in flat, "a secret's value is in the pod spec or config"
    if "TOLK_STORE" in env and "STORE_PASSWORD" in env:
        assert ":$(STORE_PASSWORD)@" in env["TOLK_STORE"]["value"]
        assert "secretKeyRef" in env["STORE_PASSWORD"]["valueFrom"]


def test_model_is_read_only_and_offline() -> None:
    for values in ("minimal-values.yaml", "gpu-tp2-values.yaml"):
        docs = render(values)
        c = tolk_container(docs)
        pod = workload(docs)["spec"]["template"]["spec"]
        (vol,) = [v for v in pod["volumes"] if v["name"] == "model"]
        assert {"name": "model", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
        if "persistentVolumeClaim" in vol:
            assert vol["persistentVolumeClaim"] == {"claimName": "tolk-models", "readOnly": True}
        else:
            assert vol["hostPath"]["type"] == "Directory"
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
    front = workload(render("external-vllm-values.yaml"))["spec"]["template"]["spec"]
    assert not [v for v in front["volumes"] if v["name"] == "model"]


def test_rollout_keeps_capacity_and_spreads() -> None:
    docs = render("minimal-values.yaml")
    d = workload(docs)
    assert d["spec"]["strategy"] == {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    labels = d["spec"]["template"]["metadata"]["labels"]
    (spread,) = d["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"].items() <= labels.items()
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]
    assert not kinds(render(None, "workload.replicas=1"), "PodDisruptionBudget")


def test_hpa_scales_on_a_gauge_tolk_really_exports(live_metrics: str) -> None:
    types = exported(live_metrics)
    hpa = one(render("ingress-values.yaml"), "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == RELEASE
    (metric,) = hpa["spec"]["metrics"]
    name = metric["pods"]["metric"]["name"]
    assert metric["type"] == "Pods" and types.get(name) == "gauge", (name, sorted(types))
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "40"}
    default = one(render(None, "autoscaling.enabled=true"), "HorizontalPodAutoscaler")
    assert default["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "48"  # 0.75 × 64
    adapter = yaml.safe_load((CHART / "files" / "prometheus-adapter-rules.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert rule["name"]["as"] == name and name in rule["seriesQuery"]
    for gauge in ("tolk_engine_queue_depth", "tolk_engine_dead", "tolk_inflight_requests"):
        assert types.get(gauge) == "gauge", gauge


def test_rules_and_dashboard_use_exported_metrics(live_metrics: str) -> None:
    names = set(exported(live_metrics))
    names |= {f"{n}_{s}" for n, t in exported(live_metrics).items()
              for s in ("bucket", "count", "sum", "total") if t in ("histogram", "counter")}
    names |= {"tolk_store_errors_total", "up"}  # the stores' counter (shared-state work), Prometheus'
    rule = one(render("keda-values.yaml"), "PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    board = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in board["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:tolk_|up\b)[a-z_]*)\{", e)}
    assert used and used <= names, used - names
    cm = one(render("keda-values.yaml"), "ConfigMap", f"{RELEASE}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["tolk.json"])["uid"] == "tolk-overview"


def test_ingress_carries_the_streaming_settings() -> None:
    docs = render("ingress-values.yaml")
    a = one(docs, "Ingress")["metadata"]["annotations"]
    p = "nginx.ingress.kubernetes.io/"
    assert int(a[p + "proxy-read-timeout"]) >= 3600 and int(a[p + "proxy-send-timeout"]) >= 3600
    assert a[p + "proxy-buffering"] == "off" and a[p + "proxy-request-buffering"] == "off"
    assert a[p + "proxy-body-size"] == str(settings_toml(docs)["max_body_bytes"]) == "2097152"
    assert a[p + "limit-connections"] == "64"  # the user's own annotations stay
    backend = one(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend == {"service": {"name": RELEASE, "port": {"name": "http"}}}


def test_network_policy_admits_the_ingress_and_reaches_only_store_and_engine() -> None:
    docs = render("external-vllm-values.yaml")
    (np,) = [n for n in kinds(docs, "NetworkPolicy") if n["metadata"]["name"] == RELEASE]
    spec = np["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = spec["ingress"]
    assert [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for p in rule["from"]] == ["ingress-nginx", "monitoring"]
    ports = [(r["to"], [p["port"] for p in r["ports"]]) for r in spec["egress"]]
    assert [p for _, p in ports] == [[53, 53], [6379], [80]]  # DNS, the store, vLLM
    assert "vllm" in json.dumps(ports[2][0]) and "db" in json.dumps(ports[1][0])
    trial = render("keda-values.yaml")
    redis_np = one(trial, "NetworkPolicy", f"{RELEASE}-redis-trial")
    assert redis_np["spec"]["egress"] == []
    assert "networkPolicy.engine.to" in render_error(
        "topology=frontend", "frontend.url=http://v/v1", "networkPolicy.enabled=true")


def test_bundled_redis_is_labelled_for_trials() -> None:
    docs = render("keda-values.yaml")
    sts = one(docs, "StatefulSet", f"{RELEASE}-redis-trial")
    assert sts["metadata"]["labels"]["app.kubernetes.io/component"] == "store-trial"
    assert sts["metadata"]["annotations"]["tolk/trial-only"] == "true"
    text = (CHART / "templates" / "redis-trial.yaml").read_text()
    assert "FOR TRIALS ONLY" in text
    env = {e["name"]: e for e in tolk_container(docs)["env"]}
    assert env["TOLK_STORE"]["value"] == f"redis://:$(STORE_PASSWORD)@{RELEASE}-redis-trial:6379/0"
    conf = one(docs, "Secret", f"{RELEASE}-redis-trial")["stringData"]
    assert f"requirepass {conf['password']}" in conf["redis.conf"]


def test_air_gapped_image_and_pull_secrets_reach_every_pod() -> None:
    docs = render("multinode-values.yaml")
    for name, spec in pod_specs(docs):
        assert spec["imagePullSecrets"] == [{"name": "corp-registry"}], name
        for c in spec["containers"]:
            assert c["image"].startswith("registry.corp.example:5000/"), (name, c["image"])
    pinned = tolk_container(render(None, "image.registry=reg.local", "image.digest=sha256:" + "a" * 64))
    assert pinned["image"] == "reg.local/tolk@sha256:" + "a" * 64
    assert tolk_container(render(None))["image"] == "tolk:0.1.0-cuda13"  # Dockerfile.gpu's tag


def test_statefulset_gets_a_pvc_per_replica_and_a_headless_service() -> None:
    docs = render("workers-values.yaml")
    sts = workload(docs)
    assert sts["kind"] == "StatefulSet" and sts["spec"]["serviceName"] == f"{RELEASE}-headless"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    headless = one(docs, "Service", f"{RELEASE}-headless")
    assert headless["spec"]["clusterIP"] == "None"
    args = tolk_container(docs)["args"]
    assert args[args.index("--workers") + 1] == "4"
    assert math.isclose(tomllib.loads(one(docs, "ConfigMap", RELEASE)["data"]["tolk.toml"])
                        ["drain_timeout_s"], 60)


def test_engine_gauges_follow_the_engine() -> None:
    """The alerts' gauges: `tolk_engine_dead` turns 1 for a model whose engine died (with a
    second model alive the server degrades instead of exiting)."""
    from fastapi.testclient import TestClient

    from conftest import TINY_PROFILE, wait_ready
    from tolk_server.adapters.echo import EchoEngine
    from tolk_server.app.wiring import create_app
    from tolk_server.models.routing import ModelSet, ServedModel

    dying = EchoEngine()
    models = ModelSet([ServedModel("a", dying, TINY_PROFILE),
                       ServedModel("b", EchoEngine(), TINY_PROFILE)])
    with TestClient(create_app(Settings(engine="fake", max_num_seqs=2), models=models)) as client:
        wait_ready(client)
        text = client.get("/metrics").text
        assert 'tolk_engine_dead{model="a"} 0.0' in text and "tolk_engine_queue_depth 0.0" in text
        dying.kill()
        text = client.get("/metrics").text
        assert 'tolk_engine_dead{model="a"} 1.0' in text and 'tolk_engine_dead{model="b"} 0.0' in text
