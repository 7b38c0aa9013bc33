"""The chart's PrometheusRule and autoscaling queries, run by real Prometheus tools: Debian's
`promtool` (`check rules`, `test rules` on synthetic series: every alert fires when it should
and not otherwise), and a `prometheus` scraping a live `tolk serve --engine echo` on loopback,
evaluating the recording rules, an alert, the Prometheus Adapter's query and KEDA's query
while requests are in flight. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from websockets.asyncio.client import connect

from support.helm import CHART, NAMESPACE, RELEASE, binary, one, render
from support.live_server import free_port
from support.subprocess_server import tolk_serve

SERIES = f'namespace="{NAMESPACE}", job="{RELEASE}"'
LONG = " ".join(["The meeting will begin shortly."] * 20)  # ~215 tokens: ~9 s at 40 ms


def rule_groups() -> list[dict[str, Any]]:
    """The PrometheusRule's groups, as rendered (keda-values: a store, so every alert)."""
    groups: list[dict[str, Any]] = one(render("keda-values.yaml"), "PrometheusRule")["spec"]["groups"]
    return groups


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "tolk-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    return path


def series(pod: str, name: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    return {"series": f'{name}{{{SERIES}, pod="{pod}"{extra}}}', "values": values}


def annotations(name: str, labels: dict[str, str], value: str) -> dict[str, str]:
    """The rule's annotations with its labels and `value` (as humanized) filled in."""
    rule = next(r for g in rule_groups() for r in g["rules"] if r.get("alert") == name)
    out = {}
    for key, text in rule["annotations"].items():
        text = re.sub(r"\{\{ \$value \| humanize(Duration)? \}\}", value, text)
        out[key] = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
    return out


def alert(name: str, at: str, *fired: dict[str, str], value: str = "") -> dict[str, Any]:
    return {"eval_time": at, "alertname": name,
            "exp_alerts": [{"exp_labels": labels, "exp_annotations": annotations(name, labels, value)}
                           for labels in fired]}


def buckets(pod: str, per_minute: dict[str, int]) -> list[dict[str, str]]:
    return [series(pod, "tolk_first_token_seconds_bucket", f"0+{n}x40", le=le)
            for le, n in per_minute.items()]


def unit_tests() -> list[dict[str, Any]]:
    crit = {"severity": "critical", "namespace": NAMESPACE}
    return [
        {"interval": "1m",  # a dead engine in p1 and a pod that stopped answering (p3)
         "input_series": [series("p1", "tolk_engine_dead", "0 0 1 1 1 1 1 1", model="tower"),
                          series("p2", "tolk_engine_dead", "0 0 0 0 0 0 0 0", model="tower"),
                          series("p2", "up", "1 1 1 1 1 1 1 1"),
                          series("p3", "up", "1 0 0 0 0 0 0 0")],
         "alert_rule_test": [alert("TolkEngineDead", "1m"),
                             alert("TolkEngineDead", "6m", {**crit, "pod": "p1"},
                                   {**crit, "pod": "p3"})]},
        {"interval": "1m",  # the queue grows for 30 min; another release's does not count
         "input_series": [series("p1", "tolk_engine_queue_depth", "0+2x40"),
                          {"series": 'tolk_engine_queue_depth{namespace="other", job="tolk", '
                                     'pod="x"}', "values": "0+9x40"}],
         "alert_rule_test": [alert("TolkQueueGrowing", "5m"),
                             alert("TolkQueueGrowing", "25m", {"severity": "warning",
                                   "namespace": NAMESPACE, "job": RELEASE}, value="50")],
         "promql_expr_test": [{"expr": "tolk:engine_queue_depth:sum", "eval_time": "10m",
                               "exp_samples": [{"labels": f"tolk:engine_queue_depth:sum"
                                                          f"{{{SERIES}}}", "value": 20}]}]},
        {"interval": "1m",  # a long queue that does not grow: no alert
         "input_series": [series("p1", "tolk_engine_queue_depth", "5x40")],
         "alert_rule_test": [alert("TolkQueueGrowing", "30m")]},
        {"interval": "1m",  # p95 ≈ 1.9 s over the 0.5 s threshold, for 10 min and more
         "input_series": buckets("p1", {"0.5": 1, "1.0": 2, "2.0": 10, "+Inf": 10}),
         "alert_rule_test": [alert("TolkFirstTokenSlow", "8m"),
                             alert("TolkFirstTokenSlow", "20m", {"severity": "warning",
                                   "namespace": NAMESPACE, "job": RELEASE}, value="1.938s")],
         "promql_expr_test": [{"expr": "tolk:first_token_seconds:p95_5m", "eval_time": "20m",
                               "exp_samples": [{"labels": f"tolk:first_token_seconds:p95_5m"
                                                          f"{{{SERIES}}}", "value": 1.9375}]}]},
        {"interval": "1m",  # fast first tokens: no alert
         "input_series": buckets("p1", {"0.5": 10, "1.0": 10, "2.0": 10, "+Inf": 10}),
         "alert_rule_test": [alert("TolkFirstTokenSlow", "30m")]},
        {"interval": "1m",  # store errors keep coming in p1; p2's stopped long ago
         "input_series": [series("p1", "tolk_store_errors_total", "0+3x20"),
                          series("p2", "tolk_store_errors_total", "0 1 1 1 1 1 1 1 1 1 1 1 1")],
         "alert_rule_test": [alert("TolkStoreUnreachable", "12m", {**crit, "pod": "p1"},
                                   value="50m")]},
        {"interval": "1m",  # the recording rule behind the in-flight average
         "input_series": [series("p1", "tolk_inflight_requests", "10x10"),
                          series("p2", "tolk_inflight_requests", "20x10")],
         "promql_expr_test": [{"expr": "tolk:inflight_requests:avg", "eval_time": "5m",
                               "exp_samples": [{"labels": f"tolk:inflight_requests:avg"
                                                          f"{{{SERIES}}}", "value": 15}]}]},
    ]


def test_promtool_checks_and_tests_the_rules(rules_file: Path, tmp_path: Path) -> None:
    promtool = binary("promtool")
    check = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
    tests = tmp_path / "tolk-rules.test.yaml"
    tests.write_text(yaml.safe_dump({"rule_files": [rules_file.name], "evaluation_interval": "1m",
                                     "tests": unit_tests()}, sort_keys=False))
    run = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True,
                         text=True, timeout=60, check=False, cwd=tmp_path)
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr


PROMETHEUS_YML = """\
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{rules}]
scrape_configs:
  - job_name: {job}   # what the ServiceMonitor makes: job = the Service, plus namespace, pod
    static_configs:
      - targets: ["127.0.0.1:{port}"]
        labels: {{namespace: {namespace}, pod: {job}-0}}
"""


@pytest.fixture
def prometheus(rules_file: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(tolk's base URL, Prometheus' URL): a live tolk scraped every second."""
    with tolk_serve("--engine", "echo", "--fake-token-delay-ms", "40", "--max-num-seqs", "2",
                    timeout=60) as (base, _proc):
        port = base.rsplit(":", 1)[1]
        (tmp_path / "prometheus.yml").write_text(PROMETHEUS_YML.format(
            rules=rules_file, job=RELEASE, port=port, namespace=NAMESPACE))
        web = f"127.0.0.1:{free_port()}"
        log = (tmp_path / "prometheus.log").open("wb")
        proc = subprocess.Popen([binary("prometheus"), f"--config.file={tmp_path}/prometheus.yml",
                                 f"--storage.tsdb.path={tmp_path}/data", f"--web.listen-address={web}"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                try:
                    if httpx.get(f"http://{web}/-/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            else:
                pytest.fail("prometheus did not get ready in 30 s")
            yield base, f"http://{web}"
        finally:
            proc.terminate()
            proc.wait(20)


async def _stream(url: str, i: int) -> str:
    async with connect(url.replace("http://", "ws://") + "/v1/stream", compression=None,
                       open_timeout=10) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
        await ws.send(json.dumps({"type": "translate", "id": f"r{i}", "text": f"{i}. {LONG}",
                                  "source": "en", "target": "fi", "split": False,
                                  "max_tokens": 1000}))
        for _ in range(3000):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if frame["type"] in ("complete", "error"):
                return str(frame["type"])
    return "no terminal frame"


async def _query(http: httpx.AsyncClient, prom: str, expr: str) -> list[dict[str, Any]]:
    r = await http.get(f"{prom}/api/v1/query", params={"query": expr})
    assert r.status_code == 200, r.text
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


async def test_live_prometheus_evaluates_the_scaling_queries_and_an_alert(
        prometheus: tuple[str, str]) -> None:
    base, prom = prometheus
    rendered = render("keda-values.yaml")
    keda = one(rendered, "ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
    queue_alert = next(r["expr"] for g in rule_groups() for r in g["rules"]
                       if r.get("alert") == "TolkQueueGrowing")
    adapter = yaml.safe_load((CHART / "files" / "prometheus-adapter-rules.yaml").read_text())
    per_pod = adapter["rules"]["custom"][0]["metricsQuery"].replace(
        "<<.Series>>", "tolk_inflight_requests").replace(
        "<<.LabelMatchers>>", f'namespace="{NAMESPACE}",pod=~"{RELEASE}-0"').replace(
        "<<.GroupBy>>", "pod")
    queries = (keda, queue_alert, per_pod, "tolk:inflight_requests:sum",
               'ALERTS{alertname="TolkQueueGrowing"}')
    async with httpx.AsyncClient(timeout=5) as http:

        async def until(want: int, *needed: str) -> dict[str, list[dict[str, Any]]]:
            """Poll (≤ 20 s) until KEDA's sum is `want` and the `needed` queries answer."""
            got: dict[str, list[dict[str, Any]]] = {}
            for _ in range(80):
                got = {q: await _query(http, prom, q) for q in queries}
                if all(got[q] for q in needed) and all(
                        got[q] and float(got[q][0]["value"][1]) == want
                        for q in (keda, "tolk:inflight_requests:sum") if q in needed or q == keda):
                    return got
                await asyncio.sleep(0.25)
            pytest.fail(f"no {want} in flight with {needed} in 20 s: {got}")

        await until(0)  # scraped (service discovery takes a few seconds)
        streams = [asyncio.create_task(_stream(base, i)) for i in range(3)]
        await until(3, queue_alert)  # 1 waits for the batch of 2: the queue starts
        streams += [asyncio.create_task(_stream(base, i)) for i in range(3, 6)]
        got = await until(6, *queries)  # 4 wait: the queue grows
        outcomes = await asyncio.wait_for(asyncio.gather(*streams), 60)
        dead = await _query(http, prom, next(r["expr"] for g in rule_groups()
                                             for r in g["rules"] if r.get("alert") == "TolkEngineDead"))
    assert outcomes == ["complete"] * 6
    assert float(got[keda][0]["value"][1]) == 6, got  # KEDA: the release's in-flight sum
    (queue,) = got[queue_alert]
    assert queue["metric"] == {"namespace": NAMESPACE, "job": RELEASE}
    assert float(queue["value"][1]) == 4  # 6 held by the engine, its batch is 2
    (pod,) = got[per_pod]  # the adapter's per-pod value for the HPA (averaged over 1m)
    assert pod["metric"] == {"pod": f"{RELEASE}-0"} and 0 < float(pod["value"][1]) <= 6
    assert float(got["tolk:inflight_requests:sum"][0]["value"][1]) == 6  # recorded by Prometheus
    (pending,) = got['ALERTS{alertname="TolkQueueGrowing"}']
    assert pending["metric"]["alertstate"] == "pending"  # `for: 10m` not over yet
    assert dead == []  # a healthy engine, a scraped pod
