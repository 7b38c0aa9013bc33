"""The README and docs/*.md: every relative link resolves, and the runnable examples run.

A code block is runnable when the line before its fence is `<!-- runnable -->` (run here) or
`<!-- runnable: PATH -->` (run by the test at PATH); see docs/development.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(`{3,})([\w-]*)[ \t]*\n(.*?)^\1[ \t]*$", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
MARKER = re.compile(r"^<!-- runnable(?:: (\S+))? -->[ \t]*\n$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    code: str
    runner: str | None  # None: run here; else the test that runs it

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def without_fences(text: str) -> str:
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def without_code(text: str) -> str:
    """The text with fenced blocks and inline code blanked out (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "``", without_fences(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for m in re.finditer(r"^#{1,6} (.+)$", without_fences(page.read_text(encoding="utf-8")), re.M):
        base = slug(m.group(1))
        name, n = base, 0
        while name in found:  # GitHub numbers repeated headings: x, x-1, x-2
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def links() -> list[tuple[Path, str]]:
    out = []
    for page in PAGES:
        for m in LINK.finditer(without_code(page.read_text(encoding="utf-8"))):
            target = m.group(1)
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                out.append((page, target))
    return out


def blocks() -> list[Block]:
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            before = text[:m.start()]
            prev = before[before.rstrip("\n").rfind("\n") + 1:]
            marker = MARKER.match(prev)
            if marker:
                out.append(Block(page, before.count("\n") + 1, m.group(2), m.group(3),
                                 marker.group(1)))
    return out


LINKS = links()
BLOCKS = blocks()
HERE = [b for b in BLOCKS if b.runner is None]


def test_the_docs_are_found_and_marked() -> None:
    assert {"README.md", "protocol.md", "clients.md", "architecture.md"} <= {p.name for p in PAGES}
    assert len(LINKS) >= 20
    assert {b.lang for b in HERE} == {"python", "sh"}
    assert any(b.page.name == "README.md" for b in HERE)


def test_slugs_follow_github() -> None:
    assert slug("Protocol v1 (`/v1/stream`, JSON text frames)") == "protocol-v1-v1stream-json-text-frames"
    assert slug("Options of `translate` (all optional)") == "options-of-translate-all-optional"
    assert slug("5. Measure it on the host (the GPU proof)") == "5-measure-it-on-the-host-the-gpu-proof"
    assert slug("Several models, routing and fallback") == "several-models-routing-and-fallback"


@pytest.mark.parametrize(("page", "target"), LINKS,
                         ids=[f"{p.relative_to(ROOT)}->{t}" for p, t in LINKS])
def test_link_resolves(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.relative_to(ROOT)}: {target} does not exist"
    if anchor:
        assert dest.suffix == ".md", target
        assert anchor in anchors(dest), f"{page.relative_to(ROOT)}: no heading #{anchor} in {path}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.runner], ids=lambda b: b.name)
def test_block_run_elsewhere_names_its_runner(block: Block) -> None:
    assert block.runner is not None
    runner = ROOT / block.runner
    assert runner.is_file(), f"{block.name}: no {block.runner}"
    page = block.page.relative_to(ROOT).as_posix()
    assert page in runner.read_text(encoding="utf-8"), f"{block.runner} does not read {page}"


@pytest.mark.parametrize("block", HERE, ids=lambda b: b.name)
def test_runnable_block_runs(block: Block, fake_server: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TOLK_API_KEY", "TOLK_URL")}
    env["TOLK_URL"] = "ws://" + fake_server.removeprefix("http://")
    env["HOME"] = str(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if block.lang == "python":
        (tmp_path / "example.py").write_text(block.code, encoding="utf-8")
        cmd = [sys.executable, "example.py"]
    else:
        assert block.lang == "sh", f"{block.name}: runnable blocks are python or sh"
        cmd = ["bash", "-euc", block.code]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, f"{block.name} failed:\n{block.code}\n{out.stderr[-3000:]}"
    assert out.stdout.strip(), f"{block.name} printed nothing"
