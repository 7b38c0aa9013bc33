#!/usr/bin/env bash
# The GPU proof on an air-gapped NVIDIA host, from the repository root:
#   1. install from the offline bundle what the host lacks (tolk-bundle.py install);
#   2. build a 7B-class model with dummy weights and a tokenizer of the same vocabulary;
#   3. tolk bench with the raw-engine baseline: ~40 tokens in, exactly 40 out (ignore_eos).
# Results go to benchmarks/results/DATE-gpu-NAME/ (results.json records GPU, driver, vLLM).
#
#   benchmarks/gpu-proof.sh BUNDLE_DIR [SHAPE]      SHAPE: llama2-7b (default) or llama3-8b
#
# Environment: PYTHON (default python3), CONCURRENCY (default 1,64,256), REQUESTS (default 256).
set -euo pipefail

bundle=${1:?usage: benchmarks/gpu-proof.sh BUNDLE_DIR [SHAPE]}
shape=${2:-llama2-7b}
py=${PYTHON:-python3}
data=benchmarks/data/wmt19-en-fi-300.tsv

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1 | tr -c 'A-Za-z0-9\n' '-')
out=benchmarks/results/$(date -u +%F)-gpu-${gpu}-${shape}
model=${TMPDIR:-/tmp}/tolk-dummy-${shape}

"$py" "$bundle/tolk-bundle.py" install "$bundle" --python "$py"
"$py" -m tolk_bench.dummy_model "$model" --shape "$shape" --data "$data"
"$py" -m tolk_server.cli.commands bench --model "$model" --load-format dummy --dtype bfloat16 \
    --no-enforce-eager --max-num-seqs 256 --max-model-len 1024 \
    --concurrency "${CONCURRENCY:-1,64,256}" --requests "${REQUESTS:-256}" --max-tokens 40 \
    --warmup 16 --long 0 --data "$data" --no-frontend --out "$out" \
    --note "dummy weights (load_format=dummy), shape ${shape}; ignore_eos: 40 output tokens" \
    --note "HBM bound per token (bf16 weights / bandwidth): see ${model}/dummy_model.json"
cp "$model/dummy_model.json" "$out/"
echo "results: $out"
