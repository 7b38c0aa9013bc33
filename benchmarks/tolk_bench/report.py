"""Results: `results.json`, a Markdown summary (pasteable into the README) and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .suite import TARGETS

LABELS = {"raw": "raw engine (AsyncLLM)", "vllm-serve": "vllm serve (/v1/completions SSE)",
          "tolk-ws": "tolk WebSocket", "tolk-sse": "tolk HTTP SSE"}


def write_results(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "results.json"]
    paths[0].write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    try:
        paths += plot(doc, out_dir)
    except ImportError:  # a host without the bench extra (e.g. from the GPU bundle): no PNGs
        print("tolk bench: matplotlib is not installed; writing results without plots")
    md = out_dir / "summary.md"
    md.write_text(summary(doc, [p.name for p in paths if p.suffix == ".png"]), encoding="utf-8")
    paths.append(md)
    return paths


def _f(v: Any, nd: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != v:
            return "–"
        return f"{v:.{nd}f}"
    return str(v)


def _x(v: Any) -> str:
    return "–" if v is None else f"{v:.2f}×"


def machine_line(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    gpu = ", ".join(m["gpus"]) if m["gpus"] else "no GPU"
    return (f"{m['cpu_model']}, {m['cpu_cores_usable']} cores, {m['ram_gib']} GiB RAM, {gpu}; "
            f"{m['os']}")


def summary(doc: dict[str, Any], pngs: list[str] | None = None) -> str:
    lines = [f"# tolk benchmark — {doc['started'][:10]}", "", *_setup_lines(doc)]
    lines += ["", "Definitions as `vllm bench serve`: TTFT to the first streamed token chunk, "
              "TPOT = (E2E − TTFT)/(tokens − 1), ITL = gaps between chunks (pooled), "
              "throughput = output tokens / duration; percentiles by linear interpolation.", ""]
    lines += _points_table(doc, "sweep")
    lines += _ratio_lines(doc)
    cpu = _cpu_table(doc)
    if cpu:
        lines += ["", *cpu]
    lines += _other_sections(doc)
    if pngs:
        lines += ["", "Plots: " + ", ".join(f"[{p}]({p})" for p in pngs)]
    lines += ["", f"Raw data: `results.json` (wall time of the run {doc.get('wall_s', 0):.0f} s)."]
    return "\n".join(lines) + "\n"


def _setup_lines(doc: dict[str, Any]) -> list[str]:
    """The machine, the model, the engine settings, the workload and the notes."""
    s = doc.get("setup", {})
    ea = s.get("engine_args", {})
    lines = [
        f"- **Machine:** {machine_line(doc)}",
        f"- **Model:** `{s.get('model')}` (profile `{s.get('profile')}`); engine {s.get('engine')}"
        f", {s.get('torch')}",
        f"- **Engine settings (all targets):** max_num_seqs={ea.get('max_num_seqs')}, "
        f"max_model_len={ea.get('max_model_len')}, dtype={ea.get('dtype')}, "
        f"enforce_eager={ea.get('enforce_eager')}, prefix caching="
        f"{ea.get('enable_prefix_caching')}, KV cache {s.get('kv_cache_gib')} GiB; greedy",
    ]
    plan = doc.get("plan", {})
    if plan:
        lines.append(
            f"- **Workload:** sentences from `{Path(doc.get('data', '')).name}` (both "
            f"directions), max_tokens={plan['max_tokens']} on every path, "
            f"{plan['requests']} requests per concurrency level after {plan['warmup']} warm-up "
            f"requests, each point capped at {plan['max_duration_s']:g} s; targets run one "
            f"after another, never concurrently; the load generator runs on the same machine. "
            f"tolk gets `split: false` (one engine request per input: the same prompt as the "
            f"baselines) and runs with its result cache off.")
    pc = doc.get("prompt_check")
    if pc and pc.get("checked"):
        lines.append(f"- **Prompts:** rendered with `tolk_server.api.prompt_renderer`; "
                     f"identical to `tolk prompt`: {'yes' if pc['identical'] else 'NO'} "
                     f"(e.g. `{pc['prompt'][:80]!r}`)")
    busy = sorted(set(doc.get("busy_at_start", []) + doc.get("busy_at_end", [])))
    if busy:
        lines.append(f"- **Note:** a busy, shared machine: other processes were using CPU "
                     f"during the run ({'; '.join(b[:60] for b in busy[:4])}), so absolute "
                     f"figures are pessimistic; ratios between targets are the useful part.")
    for note in doc.get("notes", []):
        lines.append(f"- **Note:** {note}")
    return lines


def _ratio_lines(doc: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    ratios = [r for r in doc.get("ratios", []) if r["workload"] == "sweep"]
    if ratios:
        lines += ["", "## Ratios (tolk ÷ baseline; < 1 is better for TTFT, > 1 for throughput)",
                  "", "| tolk via | concurrency | TTFT p50 ÷ raw | TTFT p95 ÷ raw | tok/s ÷ raw "
                  "| TTFT p50 ÷ vllm serve | TTFT p95 ÷ vllm serve | tok/s ÷ vllm serve |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in ratios:
            lines.append(
                f"| {r['target']} | {r['point']} | {_x(r['ttft_p50_vs_raw'])} | "
                f"{_x(r['ttft_p95_vs_raw'])} | {_x(r['throughput_vs_raw'])} | "
                f"{_x(r['ttft_p50_vs_vllm'])} | {_x(r['ttft_p95_vs_vllm'])} | "
                f"{_x(r['throughput_vs_vllm'])} |")
    return lines


def _other_sections(doc: dict[str, Any]) -> list[str]:
    """Poisson arrivals, long inputs, same outputs, failures, the front end, quality."""
    lines: list[str] = []
    for wl, title in (("poisson", "Poisson arrivals"), ("long", "Long inputs")):
        t = _points_table(doc, wl, title)
        if any(row.startswith("| ") and not row.startswith("| target") for row in t):
            lines += ["", *t]
    same = doc.get("same_outputs")
    if same:
        lines += ["", "Same text as the raw engine for the same prompts (first sweep point): "
                  + ", ".join(f"{k} {v['identical']}/{v['compared']}" for k, v in same.items())
                  + "."]
    failed = [f"{n}: {t['error'][:200]}" for n, t in doc.get("targets", {}).items()
              if t.get("error")]
    if failed:
        lines += ["", "**Targets that failed:** " + "; ".join(failed)]
    fe = doc.get("frontend")
    if fe:
        lines += ["", *frontend_section(fe)]
    q = doc.get("quality")
    if q:
        lines += ["", *quality_section(q)]
    return lines


def _points_table(doc: dict[str, Any], workload: str, title: str | None = None) -> list[str]:
    head = "rate (req/s)" if workload == "poisson" else "concurrency"
    lines = ([f"## {title}", ""] if title else []) + [
        f"| target | {head} | TTFT p50 / p95 / p99 (ms) | TPOT p50 (ms) | ITL p50 / p99 (ms) "
        "| E2E p50 / p95 (ms) | req/s | out tok/s | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name in TARGETS:
        t = doc.get("targets", {}).get(name)
        if not t:
            continue
        for p in t.get("points", []):
            if p["workload"] != workload:
                continue
            m = p["metrics"]
            tt, it, e2 = m["ttft_ms"], m["itl_ms"], m["e2el_ms"]
            errs = ", ".join(f"{k}: {v}" for k, v in m["errors"].items()) or "0"
            lines.append(
                f"| {name} | {p['concurrency'] if workload != 'poisson' else p['rate']} | "
                f"{_f(tt['p50'])} / {_f(tt['p95'])} / {_f(tt['p99'])} | "
                f"{_f(m['tpot_ms']['p50'])} | {_f(it['p50'])} / {_f(it['p99'])} | "
                f"{_f(e2['p50'])} / {_f(e2['p95'])} | {_f(m['request_throughput'], 2)} | "
                f"{_f(m['output_throughput'])} | {errs} |")
    return lines


def _cpu_table(doc: dict[str, Any]) -> list[str]:
    """CPU time of the serving process itself (not the engine core) per request."""
    rows = []
    for name in ("vllm-serve", "tolk-ws", "tolk-sse"):
        for p in doc.get("targets", {}).get(name, {}).get("points", []):
            if p["workload"] == "sweep" and p.get("server_cpu_ms_per_request") is not None:
                rows.append(f"| {name} | {p['concurrency']} | "
                            f"{p['server_cpu_ms_per_request']:.2f} | "
                            f"{p['server_cpu_s'] / p['metrics']['duration_s']:.2f} |")
    if not rows:
        return []
    return ["## Serving process CPU (the API process; the engine core and workers excluded)",
            "", "| target | concurrency | CPU ms per request | cores busy |",
            "|---|---:|---:|---:|", *rows]


def frontend_section(fe: dict[str, Any]) -> list[str]:
    if fe.get("error"):
        return ["## Front end alone (null engine)", "", f"failed: {fe['error'][:300]}"]
    lg = fe["long"]
    lines = ["## Front end alone (null engine: `tolk serve --engine fake`)", "",
             f"- **Most requests/s:** {fe['requests_per_s_max']:.0f} (short sentences over "
             f"WebSocket, concurrency {fe['requests_per_s_at_concurrency']}; the load "
             f"generator shares the machine's cores with the server)",
             f"- **Frames/s:** {lg['frames_per_s']:.0f} (long inputs, {lg['frames']} frames); "
             f"per server CPU-second: {_f(lg['frames_per_cpu_s'], 0)} frames "
             f"(server process CPU {_f(lg['server_cpu_util'], 2)} cores busy)",
             "", "| concurrency | connections | req/s | frames/s | server CPU (cores) "
             "| req per server CPU-s | TTFT p50 (ms) | errors |",
             "|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in fe["short"]:
        errs = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        lines.append(f"| {r['concurrency']} | {r['connections']} | {r['requests_per_s']:.0f} | "
                     f"{r['frames_per_s']:.0f} | {_f(r['server_cpu_util'], 2)} | "
                     f"{_f(r['requests_per_cpu_s'], 0)} | {_f(r['ttft_ms']['p50'])} | {errs} |")
    lines += ["", "| idle WebSockets | opened | still open | a translation with all open "
              "| server RSS before → after (MiB) | RSS per connection (KiB) |",
              "|---:|---:|---:|---|---:|---:|"]
    for r in fe["idle"]:
        lines.append(f"| {r['connections']} | {r['opened']} | {r['alive']} | "
                     f"{'ok' if r['responsive'] else 'FAILED'} | "
                     f"{r['rss_before_mib']:.0f} → {r['rss_after_mib']:.0f} | "
                     f"{_f(r['rss_per_connection_kib'])} |")
    return lines


def quality_section(q: dict[str, Any]) -> list[str]:
    if q.get("error"):
        return ["## Quality", "", f"failed: {q['error'][:300]}"]
    lines = ["## Quality (through the server, WebSocket streaming)", "",
             f"`{Path(q['data']).name}`, {q['lines']} requests, max_tokens={q['max_tokens']}, "
             f"sentence splitting {'on' if q.get('split') else 'off'} "
             f"({q.get('engine_requests', q['lines'])} engine requests), "
             f"sacrebleu {q['sacrebleu']}.", "",
             "| direction | lines | BLEU | chrF | streamed = offline engine | failed |",
             "|---|---:|---:|---:|---:|---:|"]
    for d, r in q["directions"].items():
        lines.append(f"| {d} | {r['lines']} | {r['server']['bleu']:.1f} | "
                     f"{r['server']['chrf']:.1f} | {r['exact_match']}/{r['lines']} | "
                     f"{r['failed']} |")
    verdict = ("every line identical" if q["exact_match_all"]
               else f"{q['mismatch_count']} lines differ (see results.json)")
    lines += ["", f"Exact-match check (streamed vs offline greedy FINAL_ONLY): {verdict}."]
    return lines


def _log_x(ax: Any, ticks: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)


Sweeps = dict[str, list[dict[str, Any]]]


def plot(doc: dict[str, Any], out_dir: Path) -> list[Path]:
    """The latency, throughput and latency-CDF plots of the sweep (none without a sweep)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps: Sweeps = {}
    for name in TARGETS:
        pts = [p for p in doc.get("targets", {}).get(name, {}).get("points", [])
               if p["workload"] == "sweep"]
        if pts:
            sweeps[name] = sorted(pts, key=lambda p: p["concurrency"])
    if not sweeps:
        return []
    subtitle = f"{Path(str(doc['setup'].get('model', ''))).name} · {machine_line(doc)[:70]}"
    out = []
    for draw, name, title in ((_latency, "latency_vs_concurrency.png", "Latency vs concurrency"),
                              (_throughput, "throughput_vs_concurrency.png",
                               "Throughput vs concurrency"),
                              (_cdf, "latency_cdf.png", "Latency CDF")):
        fig = draw(plt, sweeps)
        fig.suptitle(f"{title} — {subtitle}", fontsize=9)
        fig.tight_layout()
        out.append(out_dir / name)
        fig.savefig(out[-1], dpi=110)
        plt.close(fig)
    return out


def _ticks(sweeps: Sweeps) -> list[int]:
    return sorted({p["concurrency"] for pts in sweeps.values() for p in pts})


def _latency(plt: Any, sweeps: Sweeps) -> Any:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for name, pts in sweeps.items():
        xs = [p["concurrency"] for p in pts]
        for ax, key, pct in ((axes[0], "ttft_ms", "p50"), (axes[1], "ttft_ms", "p95"),
                             (axes[2], "e2el_ms", "p50")):
            ax.plot(xs, [p["metrics"][key][pct] for p in pts], marker="o", label=LABELS[name])
    for ax, title in zip(axes, ("TTFT p50", "TTFT p95", "E2E latency p50"), strict=True):
        _log_x(ax, _ticks(sweeps))
        ax.set_xlabel("concurrency")
        ax.set_ylabel("ms")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def _throughput(plt: Any, sweeps: Sweeps) -> Any:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, pts in sweeps.items():
        xs = [p["concurrency"] for p in pts]
        axes[0].plot(xs, [p["metrics"]["output_throughput"] for p in pts], marker="o",
                     label=LABELS[name])
        axes[1].plot(xs, [p["metrics"]["request_throughput"] for p in pts], marker="o",
                     label=LABELS[name])
    for ax, title in zip(axes, ("output tokens/s", "requests/s"), strict=True):
        _log_x(ax, _ticks(sweeps))
        ax.set_xlabel("concurrency")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig


def _cdf(plt: Any, sweeps: Sweeps) -> Any:
    """TTFT and E2E latency CDFs at the highest concurrency."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    top = max(_ticks(sweeps))
    for name, pts in sweeps.items():
        p = next((q for q in pts if q["concurrency"] == top), pts[-1])
        for ax, key in ((axes[0], "ttft_ms"), (axes[1], "e2el_ms")):
            vals = sorted(p["samples"][key])
            if vals:
                ys = [(i + 1) / len(vals) for i in range(len(vals))]
                ax.step(vals, ys, where="post", label=LABELS[name])
    for ax, title in zip(axes, ("TTFT", "E2E latency"), strict=True):
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"{title} CDF at concurrency {top}")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig
