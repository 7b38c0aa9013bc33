"""Settings precedence and the `tolk` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tolk_server.cli.commands import build_parser, main
from tolk_server.config import Settings, is_loopback, load_settings


def test_precedence_cli_over_env_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "tolk.toml"
    cfg.write_text('port = 9001\nmax_num_seqs = 8\nmax_text_chars = 123\n')
    monkeypatch.setenv("TOLK_MAX_NUM_SEQS", "16")
    monkeypatch.setenv("TOLK_API_KEYS", "a, b")
    s = load_settings(str(cfg), port=None, max_text_chars=77)
    assert s.port == 9001  # from the file
    assert s.max_num_seqs == 16  # env beats the file
    assert s.max_text_chars == 77  # the flag beats both
    assert s.api_keys == ["a", "b"]
    with pytest.raises(FileNotFoundError):
        load_settings(str(tmp_path / "missing.toml"))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Settings(max_num_seqs=0)
    with pytest.raises(ValueError):
        Settings(bogus=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(("host", "loop"), [("127.0.0.1", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False),
                                            ("10.1.2.3", False)])
def test_is_loopback(host: str, loop: bool) -> None:
    assert is_loopback(host) is loop


def test_serve_refuses_public_host_without_keys(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--host", "0.0.0.0", "--engine", "fake"])
    assert info.value.code == 2
    assert "without API keys" in capsys.readouterr().err


def test_prompt_prints_the_rendered_prompt() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tolk_server.cli", "prompt", "--text", "Hello {x}", "--source",
         "en", "--target", "fi", "--profile", "demo"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "<2fi>Hello {x}<sep>"


def test_info_json_names_model_and_engine_settings() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tolk_server.cli", "info", "--json", "--max-num-seqs", "48"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["model"].endswith("models/demo")
    assert info["engine_args"]["max_num_seqs"] == 48
    assert info["profile"] in ("demo", "tolk-demo")


def test_parser_has_the_commands() -> None:
    p = build_parser()
    for cmd in ("serve", "translate", "prompt", "info"):
        assert p.parse_args([cmd, *(["x", "--target", "fi"] if cmd == "translate" else
                                    ["--text", "t", "--source", "en", "--target", "fi"]
                                    if cmd == "prompt" else [])]).command == cmd
