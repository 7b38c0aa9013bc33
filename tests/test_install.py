"""The install leaves a working environment (the torchvision/transformers trap is avoided)."""

from __future__ import annotations

import subprocess
import sys


def test_import_vllm_and_transformers_in_a_fresh_interpreter() -> None:
    code = "import vllm, transformers; from transformers import AutoTokenizer; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_client_import_is_light() -> None:
    code = ("import sys, tolk, tolk.protocol; "
            "heavy = {'torch', 'vllm', 'fastapi', 'transformers'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
