"""`tolk bench`: argument parsing only; the runner is imported when the command runs."""

from __future__ import annotations

import argparse


def add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmark latency, throughput and quality")
    p.set_defaults(func=_not_built)


def _not_built(ns: argparse.Namespace) -> int:
    print("tolk bench: not built yet")
    return 2
