"""Where the benchmark's data and results live."""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SAMPLE_DATA = BENCH_DIR / "data" / "tatoeba-en-fi-sample.tsv"
# News sentences of ~40 tokens (WMT newstest2019): the GPU proof's workload.
NEWS_DATA = BENCH_DIR / "data" / "wmt19-en-fi-300.tsv"
TINY_PROFILE = BENCH_DIR / "profiles" / "tiny.toml"
DEFAULT_DATA = REPO_DIR.parent / "shared" / "data" / "tatoeba-en-fi" / "dev.tsv"
