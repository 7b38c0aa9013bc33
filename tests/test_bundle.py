"""Offline bundles: lock parsing, create → split → verify (tampering) → install with no index.

Everything runs offline: the wheels are tiny ones this test writes itself, pip gets no index
(`--no-index`) and no configuration (`PIP_CONFIG_FILE=/dev/null`, no `PIP_*` variables).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import tolk_bundle as b
from tolk_bundle.cli import main as bundle_main

REPO = Path(__file__).resolve().parents[1]


def make_wheel(dest: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal, valid pure-Python wheel with one module `name`."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tolk-test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    whl = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return whl


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def offline_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    """No pip configuration at all (this machine's pip.conf adds local indexes and links)."""
    for k in list(os.environ):
        if k.startswith("PIP_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")


# --------------------------------------------------------------------------- units


def test_parse_lock_pins_hashes_and_continuations() -> None:
    text = (
        "# header\n"
        "Foo_Bar==1.2.0 \\\n"
        "    --hash=sha256:AB12 \\\n"
        "    --hash=sha256:cd34  # two wheels\n"
        "\n"
        "baz[extra]==0.1 --hash=sha256:ef56\n"
    )
    pins = b.parse_lock(text)
    assert [(p.name, p.key, p.version) for p in pins] == [("Foo_Bar", "foo-bar", "1.2.0"),
                                                          ("baz", "baz", "0.1")]
    assert pins[0].hashes == ("sha256:ab12", "sha256:cd34")
    assert b.parse_lock(pins[0].line()) == [pins[0]]
    for bad in ("foo>=1.0\n", "foo==1 --index-url x\n", "foo==1\nFOO==2\n",
                "a==1 --hash=sha256:00\nb==2\n"):
        with pytest.raises(b.BundleError):
            b.parse_lock(bad)


def test_parse_freeze_and_patterns() -> None:
    freeze = "torch==2.11.0\n-e git+https://x#egg=y\nfoo @ file:///tmp/foo\nNumPy==2.0\n"
    assert b.parse_freeze(freeze) == {"torch": "2.11.0", "numpy": "2.0"}
    assert b.matches_any("torch_vision", ["torchvision", "torch-vision"])
    assert b.matches_any("nvidia-cudnn-cu13", ["nvidia-*"])
    assert not b.matches_any("torch", b.DEFAULT_EXCLUDE_PACKAGES)


def test_manylinux_expansion() -> None:
    tags = b.expand_platform("manylinux_2_31_x86_64")
    assert tags[0] == "manylinux_2_31_x86_64"
    for t in ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64",
              "manylinux1_x86_64"):
        assert t in tags
    assert b.expand_platform("win_amd64") == ["win_amd64"]
    args = b.Target().pip_args()
    assert args[args.index("--python-version") + 1] == "3.12"
    assert "--only-binary=:all:" in args


# --------------------------------------------------------------------------- end to end


def test_create_split_verify_tamper_install(tmp_path: Path, offline_pip: None,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    wheels = [make_wheel(src, "tinya", "1.0"),
              make_wheel(src, "tinyb", "2.0", ("tinya==1.0",)),
              make_wheel(src, "tinyc", "3.0"),
              make_wheel(src, "torchvision", "0.26.0")]
    lock = tmp_path / "test.lock"
    lock.write_text("".join(f"{w.name.split('-')[0]}=={w.name.split('-')[1]} "
                            f"--hash=sha256:{sha(w)}\n" for w in wheels))
    freeze = tmp_path / "host-freeze.txt"
    freeze.write_text("tinyc==3.0\ntinya==0.9\n")  # the host has tinyc, an older tinya
    model = tmp_path / "my-model"
    (model / ".git").mkdir(parents=True)
    (model / ".git" / "HEAD").write_text("ref: main\n")
    (model / "config.json").write_text('{"model_type": "llama"}\n')
    (model / "model.safetensors").write_bytes(os.urandom(60_000))
    (model / "pytorch_model.bin").write_bytes(b"never loaded")
    (model / "flax_model.msgpack").write_bytes(b"never loaded")

    out = tmp_path / "bundle"
    rc = bundle_main(["bundle", "create", str(out), "--lock", str(lock), "--no-index",
                      "--find-links", str(src), "--no-tolk", "--model", str(model),
                      "--skip-installed", str(freeze), "--split-mb", "0.02", "--json"])
    created = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert created["packages"] == ["tinya==1.0", "tinyb==2.0"]
    assert created["excluded"] == ["torchvision==0.26.0"]
    assert created["already_on_host"] == ["tinyc==3.0"]
    assert sorted(created["model_excluded_files"]) == [".git/HEAD", "flax_model.msgpack",
                                                      "pytorch_model.bin"]
    parts = sorted(out.glob(b.PART_PREFIX + "*"))
    assert len(parts) >= 3 and parts == [out / n for n in created["parts"]]
    assert all(p.stat().st_size <= 0.02 * 1024 * 1024 for p in parts)
    assert sorted(os.listdir(out)) == sorted([*created["parts"], b.PARTS, b.SUMS, b.SCRIPT])
    pristine = tmp_path / "pristine"
    shutil.copytree(out, pristine)

    # verify reassembles the parts and checks every file against the manifest
    assert bundle_main(["bundle", "verify", str(out), "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["ok"] and verified["reassembled"]
    root = out / b.UNPACKED
    manifest = json.loads((root / b.MANIFEST).read_text())
    assert manifest["target"]["python_version"] == "3.12"
    assert manifest["target"]["platforms"] == [b.DEFAULT_PLATFORM]
    assert manifest["tolk_version"] and manifest["created"].endswith("Z")
    listed = {f["path"]: f for f in manifest["files"]}
    assert sorted(listed) == sorted(["requirements.lock", b.SCRIPT,
                                     "wheels/tinya-1.0-py3-none-any.whl",
                                     "wheels/tinyb-2.0-py3-none-any.whl",
                                     "model/my-model/config.json",
                                     "model/my-model/model.safetensors"])
    for rel, f in listed.items():
        assert f["sha256"] == sha(root / rel) and f["size"] == (root / rel).stat().st_size
    sums = subprocess.run(["sha256sum", "-c", "--quiet", b.SUMS], cwd=root,
                          capture_output=True, text=True, timeout=30)
    assert sums.returncode == 0, sums.stdout + sums.stderr

    # tampering: a changed part, a missing part, an extra file next to the parts
    bad = tmp_path / "bad"
    shutil.copytree(pristine, bad)
    part1 = bad / created["parts"][1]
    data = bytearray(part1.read_bytes())
    data[100] ^= 0xFF
    part1.write_bytes(bytes(data))
    (bad / created["parts"][-1]).unlink()
    (bad / "evil.whl").write_bytes(b"x")
    assert bundle_main(["bundle", "verify", str(bad), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert any("modified" in p and created["parts"][1] in p for p in problems)
    assert any("missing part" in p for p in problems)
    assert any("evil.whl" in p for p in problems)
    assert not (bad / b.UNPACKED).exists()

    # tampering inside an unpacked bundle: changed, extra and missing files
    plain = tmp_path / "plain"
    shutil.copytree(root, plain)
    whl = plain / "wheels" / "tinyb-2.0-py3-none-any.whl"
    raw = bytearray(whl.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    whl.write_bytes(bytes(raw))
    (plain / "wheels" / "extra-1.0-py3-none-any.whl").write_bytes(b"x")
    (plain / "model" / "my-model" / "config.json").unlink()
    res = b.verify_bundle(plain)
    assert not res.ok
    assert "modified file (sha256 mismatch): wheels/tinyb-2.0-py3-none-any.whl" in res.problems
    assert "extra file (not in the manifest): wheels/extra-1.0-py3-none-any.whl" in res.problems
    assert "missing file: model/my-model/config.json" in res.problems

    # install into a fresh venv, with no index; a tampered bundle is refused first
    venv = tmp_path / "venv"
    # without pip of its own (fast): `install` then runs our pip with `--python`
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = str(venv / "bin" / "python")
    assert bundle_main(["bundle", "install", str(plain), "--python", py]) == 1
    assert "does not verify" in capsys.readouterr().err
    assert bundle_main(["bundle", "install", str(out), "--python", py, "--json"]) == 0
    inst = json.loads(capsys.readouterr().out)
    assert [(i["name"], i["version"]) for i in inst["installed"]] == [("tinya", "1.0"),
                                                                      ("tinyb", "2.0")]
    assert inst["already_installed"] == []
    assert any("tinyc==3.0" in w for w in inst["warnings"])  # assumed, but not on this host
    assert inst["model"] == str(root / "model" / "my-model")
    ok = subprocess.run([py, "-c", "import tinya, tinyb; print(tinya.VERSION, tinyb.VERSION)"],
                        capture_output=True, text=True, timeout=60)
    assert ok.stdout.split() == ["1.0", "2.0"], ok.stderr

    # a second install finds everything there; the standalone script verifies too
    assert bundle_main(["bundle", "install", str(out), "--python", py, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["installed"] == []
    assert [a["name"] for a in again["already_installed"]] == ["tinya", "tinyb"]
    standalone = subprocess.run([py, str(pristine / b.SCRIPT), "verify", str(pristine)],
                                capture_output=True, text=True, timeout=60)
    assert standalone.returncode == 0 and standalone.stdout.startswith("ok:"), standalone.stderr


def test_create_refuses_unpinned_or_missing_wheels(tmp_path: Path, offline_pip: None) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make_wheel(src, "tinya", "1.0")
    lock = tmp_path / "l.lock"
    lock.write_text("tinya==1.0\nnot-here==9.9\n")
    with pytest.raises(b.BundleError, match="not-here"):
        b.create_bundle(tmp_path / "out", lock, build_tolk=False,
                        pip_options=["--no-index", "--find-links", str(src)])
    assert not (tmp_path / "out").exists()  # no half-made bundle is left behind
    lock.write_text("tinya>=1.0\n")
    with pytest.raises(b.BundleError, match="exact"):
        b.create_bundle(tmp_path / "out2", lock, build_tolk=False)


def test_tolk_wheel_is_built_and_installs_offline(tmp_path: Path, offline_pip: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The tolk wheel (on no index) is built from a clean copy of the source tree."""
    src = tmp_path / "src"
    src.mkdir()
    tiny = make_wheel(src, "tinya", "1.0")
    lock = tmp_path / "one.lock"
    lock.write_text(f"tinya==1.0 --hash=sha256:{sha(tiny)}\n")
    out = tmp_path / "bundle"
    assert bundle_main(["bundle", "create", str(out), "--lock", str(lock), "--no-index",
                        "--find-links", str(src), "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["packages"] == ["tinya==1.0", "tolk==0.1.0"]
    whl = next((out / "wheels").glob("tolk-0.1.0-py3-none-any.whl"))
    # the lock hashes every pin, so tolk's pin gets the hash of the wheel just built
    assert f"tolk==0.1.0 \\\n    --hash=sha256:{sha(whl)}" in (out / b.LOCK).read_text()
    assert not (REPO / "build").exists() or (REPO / "build").stat().st_mtime < whl.stat().st_mtime
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = str(venv / "bin" / "python")
    assert bundle_main(["bundle", "install", str(out), "--python", py, "--json"]) == 0
    inst = json.loads(capsys.readouterr().out)
    assert [(i["name"], i["version"]) for i in inst["installed"]] == [("tinya", "1.0"),
                                                                      ("tolk", "0.1.0")], inst
    # the installed bundle module needs nothing beyond the standard library
    ok = subprocess.run([py, "-m", "tolk_bundle.offline", "verify", str(out)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stdout + ok.stderr
