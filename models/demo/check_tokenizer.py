#!/usr/bin/env python
"""Checks for the exported demo tokenizer (run: python models/demo/check_tokenizer.py).

* exact encode/decode round-trip of every training and dev sentence, plus hand-written
  edge cases (Finnish letters, unseen characters via byte fallback, multiple spaces);
* special tokens and their ids; a single BOS is added to the served prompt;
* no leading space: a target never starts with "▁", so decoding a generated
  continuation gives no stray leading space.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path("/work/shared/data")


def main(model_dir=str(HERE)):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ["<unk>", "<s>", "</s>", "<pad>", "<2fi>", "<2en>", "<sep>"]}
    print("special token ids:", ids, "vocab:", len(tok))
    assert ids == {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3, "<2fi>": 4, "<2en>": 5, "<sep>": 6}

    lines = []
    with open(DATA / "tatoeba-en-fi" / "train.tsv", encoding="utf-8") as f:
        for line in f:
            lines += line.rstrip("\n").split("\t")[:2]
    with open(DATA / "tatoeba-en-fi" / "dev.tsv", encoding="utf-8") as f:
        for line in f:
            lines += line.rstrip("\n").split("\t")[:2]
    lines += [
        "Hyvää päivää! Äiti ja Öljy, å Å.",
        "  kaksi  välilyöntiä  ja\ttabulaattori ",
        "123 456,78 € — 50 % «lainaus» “quote”",
        "日本語 emoji 🙂 ÆØ ß ŝ",
        "Tom's \"quoted\" text\nnew line",
    ]
    enc = tok(lines, add_special_tokens=False)["input_ids"]
    bad = [(l, tok.decode(e)) for l, e in zip(lines, enc) if tok.decode(e) != l]
    print(f"round-trip: {len(lines) - len(bad)}/{len(lines)} exact")
    for l, d in bad[:5]:
        print("   MISMATCH", repr(l), repr(d))
    assert not bad
    n_unk = sum(e.count(0) for e in enc)
    assert n_unk == 0, n_unk

    p = tok("<2fi>Hello world.<sep>")["input_ids"]
    print("served prompt ids:", p, tok.convert_ids_to_tokens(p))
    assert p[0] == 1 and p.count(1) == 1 and p[1] == 4 and p[-1] == 6
    t = tok("Hyvää huomenta.", add_special_tokens=False)["input_ids"]
    assert not tok.convert_ids_to_tokens(t)[0].startswith("\u2581")
    assert tok.decode(t + [2], skip_special_tokens=True) == "Hyvää huomenta."
    print("OK")


if __name__ == "__main__":
    main(*sys.argv[1:])
