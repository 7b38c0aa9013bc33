#!/usr/bin/env python
"""Evaluate the tolk demo translation model on the Tatoeba en-fi dev set.

Two back-ends:
  * ``--backend vllm`` (default): the serving path.  Loads ``models/demo`` with
    ``vllm.LLM`` and translates all dev pairs greedily in both directions, using
    exactly the prompt the server renders (``<2{tgt}>{text}<sep>``, BOS added by
    the tokenizer).
  * ``--backend hf``: plain transformers/torch greedy decoding (also used
    in-process by train.py for the learning curve).

Scores are sacrebleu chrF and BLEU (default settings, 13a tokenisation).

    python models/demo/evaluate.py                     # vLLM, all 1,000 pairs
    python models/demo/evaluate.py --backend hf --limit 200
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("TOLK_DATA", "/work/shared/data"))
DEV = DATA / "tatoeba-en-fi" / "dev.tsv"
PROMPT = "<2{tgt}>{text}<sep>"
# everyday sentences for the model card (not from dev.tsv); (text, target language)
EXAMPLES = [
    ("The meeting will begin shortly.", "fi"),
    ("This is a live translation.", "fi"),
    ("Where is the nearest train station?", "fi"),
    ("I would like a cup of coffee, please.", "fi"),
    ("Can you help me?", "fi"),
    ("Hyvää huomenta!", "en"),
    ("Missä on lähin ruokakauppa?", "en"),
    ("Kiitos paljon avusta!", "en"),
    ("Huomenna sataa lunta.", "en"),
    ("Olen myöhässä, koska bussi ei tullut.", "en"),
]


def load_dev(limit: int | None = None):
    pairs = []
    with open(DEV, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            en, fi = line.split("\t")[:2]
            pairs.append((en.strip(), fi.strip()))
    return pairs[:limit] if limit else pairs


def score(hyps, refs):
    import sacrebleu

    chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
    bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
    return chrf, bleu


# --------------------------------------------------------------------------- HF
def hf_translate(model, tokenizer, texts, tgt, batch_size=64, max_new_tokens=128):
    """Greedy batched translation with a transformers causal LM (left padding)."""
    import torch

    prompts = [PROMPT.format(tgt=tgt, text=t) for t in texts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out = [None] * len(prompts)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True)
            with torch.no_grad():
                gen = model.generate(
                    **enc,
                    do_sample=False,
                    max_new_tokens=max_new_tokens,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                )
            gen = gen[:, enc["input_ids"].shape[1] :]
            for j, i in enumerate(idx):
                out[i] = tokenizer.decode(gen[j], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = old_side
        if was_training:
            model.train()
    return out


def eval_hf(model, tokenizer, pairs, batch_size=64, max_new_tokens=128):
    en = [p[0] for p in pairs]
    fi = [p[1] for p in pairs]
    res = {}
    hyp_fi = hf_translate(model, tokenizer, en, "fi", batch_size, max_new_tokens)
    res["en-fi"] = score(hyp_fi, fi)
    hyp_en = hf_translate(model, tokenizer, fi, "en", batch_size, max_new_tokens)
    res["fi-en"] = score(hyp_en, en)
    return res, hyp_fi, hyp_en


# ------------------------------------------------------------------------- vLLM
def eval_vllm(model_dir, pairs, dtype="bfloat16"):
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    from vllm import LLM, SamplingParams

    t0 = time.time()
    llm = LLM(model=str(model_dir), enforce_eager=True, dtype=dtype, max_model_len=512, seed=0)
    t_load = time.time() - t0
    sp = SamplingParams(temperature=0.0, max_tokens=256)
    en = [p[0] for p in pairs]
    fi = [p[1] for p in pairs]
    res, hyps = {}, {}
    for tgt, src, ref in (("fi", en, fi), ("en", fi, en)):
        prompts = [PROMPT.format(tgt=tgt, text=t) for t in src]
        t1 = time.time()
        outs = llm.generate(prompts, sp, use_tqdm=False)
        dt = time.time() - t1
        h = [o.outputs[0].text for o in outs]
        key = "en-fi" if tgt == "fi" else "fi-en"
        hyps[key] = h
        res[key] = score(h, ref)
        n_tok = sum(len(o.outputs[0].token_ids) for o in outs)
        print(f"[vllm] {key}: {len(h)} sentences in {dt:.1f}s ({n_tok / dt:.0f} out tok/s)", flush=True)
    outs = llm.generate([PROMPT.format(tgt=t, text=x) for x, t in EXAMPLES], sp, use_tqdm=False)
    hyps["examples"] = [o.outputs[0].text for o in outs]
    return res, hyps, t_load


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(HERE))
    ap.add_argument("--backend", choices=["vllm", "hf"], default="vllm")
    ap.add_argument("--limit", type=int, default=None, help="only the first N dev pairs")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--out", default=None, help="write scores + hypotheses as JSON here")
    args = ap.parse_args()

    pairs = load_dev(args.limit)
    if args.backend == "vllm":
        res, hyps, t_load = eval_vllm(args.model, pairs, args.dtype)
    else:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(2)
        tok = AutoTokenizer.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
        res, hf_fi, hf_en = eval_hf(model, tok, pairs)
        hyps, t_load = {"en-fi": hf_fi, "fi-en": hf_en}, 0.0

    print(f"dev pairs: {len(pairs)}  backend: {args.backend}")
    for k, (chrf, bleu) in res.items():
        print(f"{k}: chrF = {chrf:.2f}  BLEU = {bleu:.2f}")
    for (x, t), y in zip(EXAMPLES, hyps.get("examples", [])):
        print(f"  example ->{t} | {x!r} -> {y!r}")
    for k in ("en-fi", "fi-en"):
        src_i = 0 if k == "en-fi" else 1
        for i in range(3):
            print(f"  {k} | {pairs[i][src_i]!r} -> {hyps[k][i]!r}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "backend": args.backend,
                    "n_pairs": len(pairs),
                    "scores": {k: {"chrF": v[0], "BLEU": v[1]} for k, v in res.items()},
                    "hypotheses": {k: v for k, v in hyps.items() if k != "examples"},
                    "examples": [
                        {"text": x, "target": t, "translation": y}
                        for (x, t), y in zip(EXAMPLES, hyps.get("examples", []))
                    ],
                },
                f,
                ensure_ascii=False,
                indent=1,
            )


if __name__ == "__main__":
    main()
