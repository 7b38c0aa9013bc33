"""Where the benchmark's data and results live."""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SAMPLE_DATA = BENCH_DIR / "data" / "tatoeba-en-fi-sample.tsv"
TINY_PROFILE = BENCH_DIR / "profiles" / "tiny.toml"
DEFAULT_DATA = REPO_DIR.parent / "shared" / "data" / "tatoeba-en-fi" / "dev.tsv"
