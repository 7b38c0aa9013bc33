"""The GPU proof's pipeline (benchmarks/gpu-proof.sh), dry-run on CPU: a model of a given shape
with dummy weights, its tokenizer of the same vocabulary, and ignore_eos from its profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from conftest import TINY_PROFILE, wait_ready
from tolk_bench.dummy_model import SHAPES, build, hbm_bound_ms
from tolk_bench.paths import NEWS_DATA, REPO_DIR
from tolk_server.adapters.echo import EchoEngine
from tolk_server.app.wiring import create_app
from tolk_server.config import Settings
from tolk_server.engine.interface import GenerationParams
from tolk_server.models.profiles import resolve_profile


def test_shapes_match_the_published_models() -> None:
    assert SHAPES["llama2-7b"].n_params == 6_738_415_616  # Llama-2-7b
    assert SHAPES["llama3-8b"].n_params == 8_030_261_248  # Llama-3.1-8B
    # the "about 4.2 ms per token for 7B in bf16 on an H100" (SXM, 3.35 TB/s)
    assert 3.9 < hbm_bound_ms(SHAPES["llama2-7b"].n_params, 3.35) < 4.2


def test_news_data_is_attributed() -> None:
    lines = NEWS_DATA.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 300 and all(line.count("\t") == 1 for line in lines)
    readme = (NEWS_DATA.parent / "README.md").read_text(encoding="utf-8")
    assert NEWS_DATA.name in readme and "WMT 2019" in readme


@pytest.fixture(scope="module")
def tiny_dummy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dummy") / "tiny"
    build(out, "tiny", NEWS_DATA)
    return out


def test_tokenizer_vocabulary_equals_the_config(tiny_dummy: Path) -> None:
    from transformers import AutoTokenizer

    config = json.loads((tiny_dummy / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(tiny_dummy))
    assert len(tok) == config["vocab_size"] == SHAPES["tiny"].vocab_size
    assert config["eos_token_id"] == tok.eos_token_id
    # every id the model can emit decodes to some text (no silent, empty deltas)
    assert all(tok.decode([i]) for i in range(len(tok)))
    text = "Kokous alkaa pian. Äiti ja Åland."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_profile_fixes_output_lengths(tiny_dummy: Path) -> None:
    prof = resolve_profile(str(tiny_dummy), None)
    assert prof.sampling.ignore_eos and prof.sampling.max_tokens == 40
    assert not resolve_profile(str(REPO_DIR / "models" / "demo"), None).sampling.ignore_eos


class RecordingEngine(EchoEngine):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[GenerationParams] = []

    async def generate(self, prompt: str, params: GenerationParams, request_id: str) -> Any:
        self.seen.append(params)
        async for delta in super().generate(prompt, params, request_id):
            yield delta


@pytest.mark.parametrize("ignore_eos", [False, True])
def test_translator_passes_ignore_eos_to_the_engine(ignore_eos: bool) -> None:
    sampling = TINY_PROFILE.sampling.model_copy(update={"ignore_eos": ignore_eos})
    engine = RecordingEngine()
    app = create_app(Settings(engine="fake"), engine=engine,
                     profile=TINY_PROFILE.model_copy(update={"sampling": sampling}))
    with TestClient(app) as client:
        wait_ready(client)
        r = client.post("/v1/translate", json={"text": "good morning", "source": "en",
                                               "target": "fi", "stream": False})
    assert r.status_code == 200, r.text
    assert [p.ignore_eos for p in engine.seen] == [ignore_eos]


def test_bench_dummy_weights_raw_and_ws(tiny_dummy: Path, tmp_path: Path) -> None:
    """`tolk bench --load-format dummy` as on the GPU host: raw engine baseline and tolk over
    WebSocket, every request exactly max_tokens long."""
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "tolk_server.cli", "bench", "--model", str(tiny_dummy),
           "--load-format", "dummy", "--targets", "raw,tolk-ws", "--concurrency", "1,4",
           "--requests", "8", "--max-tokens", "12", "--warmup", "1", "--long", "0",
           "--no-frontend", "--data", str(NEWS_DATA), "--out", str(out), "--no-progress",
           "--kv-cache-gib", "1", "--max-num-seqs", "8"]
    env = {**os.environ, "TOLK_CACHE_ENTRIES": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env,
                          cwd=REPO_DIR)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    assert doc["setup"]["engine_args"]["load_format"] == "dummy"
    assert doc["setup"]["sampling"]["ignore_eos"] is True
    for target in ("raw", "tolk-ws"):
        points = doc["targets"][target]["points"]
        assert [p["concurrency"] for p in points] == [1, 4]
        for p in points:
            assert p["metrics"]["failed"] == 0, p["metrics"]["errors"]
            assert set(p["samples"]["output_tokens"]) == {12}
            assert p["metrics"]["ttft_ms"]["p50"] > 0
