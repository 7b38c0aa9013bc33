"""The documented Python client examples run as written against a live server.

The code blocks come from the "Python" section of docs/clients.md (marked there
`<!-- runnable: tests/test_sdk_readme.py -->`, see docs/development.md).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_section() -> tuple[Path, str]:
    path = ROOT / "docs" / "clients.md"
    text = path.read_text(encoding="utf-8")
    m = re.search(r"^##{1,2} Python[ \t]*\n(.*?)(?=^#{1,3} |\Z)", text, re.M | re.S)
    assert m, "no 'Python' section in docs/clients.md"
    return path, m.group(1)


def python_blocks() -> list[str]:
    _, section = python_section()
    return re.findall(r"^```python[ \t]*\n(.*?)^```", section, re.M | re.S)


BLOCKS = python_blocks()


def test_the_section_has_examples() -> None:
    path, _ = python_section()
    assert len(BLOCKS) >= 3, path
    assert any("translate_stream" in b for b in BLOCKS)
    assert any("AsyncClient" in b for b in BLOCKS)
    assert any("TranslationEventHandler" in b for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index: int, fake_server: str, tmp_path: Path) -> None:
    code = BLOCKS[index]
    env = {k: v for k, v in os.environ.items() if k not in ("TOLK_API_KEY", "TOLK_URL")}
    env["TOLK_URL"] = "ws://" + fake_server.removeprefix("http://")
    script = tmp_path / f"example_{index}.py"
    script.write_text(code, encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, f"example {index} failed:\n{code}\n{out.stderr[-3000:]}"
    assert out.stdout.strip(), f"example {index} printed nothing"
    assert "failed:" not in out.stdout, out.stdout
