"""Quality mode: chrF and BLEU through the server in both directions, and an exact-match check
that the streamed output equals the offline engine's output (greedy, FINAL_ONLY, same prompts)
for every line: streaming must not change a single character."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from .clients import WsPool
from .context import BenchSetup
from .metrics import RequestResult
from .runner import Point, Progress, run_point
from .targets import base_url, offline_outputs, tolk_server
from .workload import RequestSpec, read_pairs

DIRECTIONS = (("en", "fi"), ("fi", "en"))


def scores(hyps: list[str], refs: list[str]) -> dict[str, float]:
    import sacrebleu

    return {"bleu": float(sacrebleu.corpus_bleu(hyps, [refs]).score),
            "chrf": float(sacrebleu.corpus_chrf(hyps, [refs]).score)}


def direction_specs(setup: BenchSetup, data: Path, limit: int | None,
                    max_tokens: int) -> tuple[list[RequestSpec], list[str]]:
    pairs = read_pairs(data, limit)
    specs: list[RequestSpec] = []
    refs: list[str] = []
    for src, tgt in DIRECTIONS:
        for p in pairs:
            text, ref = (p.en, p.fi) if src == "en" else (p.fi, p.en)
            specs.append(RequestSpec(text, src, tgt, setup.render(text, src, tgt), max_tokens))
            refs.append(ref)
    return specs, refs


def offline_plan(setup: BenchSetup, specs: list[RequestSpec], split: bool
                 ) -> tuple[list[RequestSpec], list[list[tuple[str, int, str]]]]:
    """The engine requests the server makes for each line: with `split` (tolk's default) one
    per sentence, as the server's `split_sentences` cuts it, each stripped and
    rendered on its own; returns them and, per line, (lead, request index, trail) parts."""
    from tolk_server.api import split_sentences

    reqs: list[RequestSpec] = []
    layout: list[list[tuple[str, int, str]]] = []
    for spec in specs:
        pieces = split_sentences(spec.text, spec.source) if split else [spec.text]
        parts = []
        for piece in pieces:
            core = piece.strip()
            lead = piece[: len(piece) - len(piece.lstrip())]
            trail = piece[len(lead) + len(core):]
            reqs.append(RequestSpec(core, spec.source, spec.target,
                                    setup.render(core, spec.source, spec.target),
                                    spec.max_tokens))
            parts.append((lead, len(reqs) - 1, trail))
        layout.append(parts)
    return reqs, layout


def reassemble(layout: list[list[tuple[str, int, str]]], texts: list[str]) -> list[str]:
    return ["".join(lead + texts[i] + trail for lead, i, trail in parts) for parts in layout]


async def _through_server(url: str, specs: list[RequestSpec], concurrency: int,
                          streams_per_conn: int, progress: Progress,
                          split: bool) -> list[RequestResult]:
    pool = await WsPool.open(url, max(1, -(-concurrency // streams_per_conn)), split=split)
    try:
        pr = await run_point(pool.request, Point("quality", specs, concurrency=concurrency,
                                                 max_duration_s=3600.0),
                             progress, "quality    tolk (ws)")
    finally:
        await pool.close()
    return pr.results


def compare(streamed: list[RequestResult], offline: list[str],
            specs: list[RequestSpec], refs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"lines": len(specs), "directions": {}}
    mismatches: list[dict[str, Any]] = []
    for src, tgt in DIRECTIONS:
        idx = [i for i, s in enumerate(specs) if (s.source, s.target) == (src, tgt)]
        if not idx:
            continue
        hyps = [streamed[i].text for i in idx]
        exact = sum(1 for i in idx if streamed[i].success and streamed[i].text == offline[i])
        out["directions"][f"{src}-{tgt}"] = {
            "lines": len(idx),
            "failed": sum(1 for i in idx if not streamed[i].success),
            "server": scores(hyps, [refs[i] for i in idx]),
            "offline": scores([offline[i] for i in idx], [refs[i] for i in idx]),
            "exact_match": exact,
            "stream_vs_complete_mismatch": sum(1 for i in idx if streamed[i].mismatch),
        }
    for i, r in enumerate(streamed):
        if not r.success or r.text != offline[i] or r.mismatch:
            mismatches.append({"line": i, "source": specs[i].source, "text": specs[i].text,
                               "streamed": r.text, "offline": offline[i],
                               "error": r.error or None})
    out["exact_match_all"] = not mismatches
    out["mismatches"] = mismatches[:20]
    out["mismatch_count"] = len(mismatches)
    return out


def run_quality(setup: BenchSetup, logs: Path, data: Path, limit: int | None = 100,
                max_tokens: int = 256, concurrency: int = 8, streams_per_conn: int = 4,
                progress_enabled: bool = True, split: bool = True) -> dict[str, Any]:

    specs, refs = direction_specs(setup, data, limit, max_tokens)
    with Progress(enabled=progress_enabled) as prog:
        prog.log(f"[bold]quality[/bold]: {len(specs)} requests ({limit} lines x 2 directions)")
        with tolk_server(setup, logs) as srv:
            streamed = asyncio.run(_through_server(base_url(srv), specs, concurrency,
                                                   streams_per_conn, prog, split))
        prog.log("quality: offline engine (FINAL_ONLY) …")
    reqs, layout = offline_plan(setup, specs, split)
    texts, _ = offline_outputs(setup, reqs, concurrency, logs)
    offline = reassemble(layout, texts)
    res = compare(streamed, offline, specs, refs)
    res.update({"data": str(data), "max_tokens": max_tokens, "concurrency": concurrency,
                "split": split, "engine_requests": len(reqs),
                "sacrebleu": _sacrebleu_version()})
    return res


def _sacrebleu_version() -> str:
    import sacrebleu

    return str(sacrebleu.__version__)
