#!/bin/sh
# The live-input benchmark of 2026-11-30 (issue 13), on the shared 2-core CPU box, demo model.
# Not under /tmp/tolk-engine.lock (it would block the other helpers' engine runs for an hour),
# so other engine runs may have shared the CPU with it. Concurrency 8 first (all 200 dev
# sentences per direction, forced and unforced servers), then concurrency 1 (as many
# sentences per direction as fit the time: --n1), forced only.
set -x
cd "$(dirname "$0")/../../.."
export PATH=/work/main/.venv/bin:$PATH PYTHONPATH=$PWD/clients/python:$PWD/server:$PWD/benchmarks
OUT=benchmarks/results/2026-11-30-live-cpu
DATA=/work/shared/data/tatoeba-en-fi/dev.tsv
MODEL=/work/main/models/demo
N1=${N1:-140}
nice -n 5 timeout 1800 python -m tolk_bench.live --model $MODEL --data $DATA -n 200 \
    --concurrency 8 --logs /tmp/tolk-live-bench-c8 --out $OUT/report-c8.json > /tmp/w13/full-c8.log 2>&1
nice -n 5 timeout 3300 python -m tolk_bench.live --model $MODEL --data $DATA -n 200 --n1 $N1 \
    --concurrency 1 --no-baseline --logs /tmp/tolk-live-bench-c1 --out $OUT/report-c1.json > /tmp/w13/full-c1.log 2>&1
