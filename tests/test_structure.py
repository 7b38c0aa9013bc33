"""The shape of the code, measured as issue 26's table measures it, so that it cannot regress.

Each figure comes from the source by `ast`, without importing it: the modules at the top of
`tolk_server/`, import cycles in the module graph (imports under `if TYPE_CHECKING:` and inside
functions included, relative imports resolved), functions over 60 lines, calls of the engine's
`generate` outside the pipeline and the adapters, the README's length, and what the benchmarks
import from the server (its public interface, `tolk_server.api`, only). `lint-imports` checks
the run-time layers; this also sees the type-only imports it leaves out.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every package of the repository that ships: name -> its folder.
PACKAGES = {
    "tolk_server": ROOT / "server" / "tolk_server",
    "tolk": ROOT / "clients" / "python" / "tolk",
    "tolk_bench": ROOT / "benchmarks" / "tolk_bench",
    "tolk_bundle": ROOT / "bundle" / "tolk_bundle",
}
MAX_TOP_LEVEL_MODULES = 6
MAX_FUNCTION_LINES = 60
MAX_README_LINES = 300
MAX_MODULE_LINES = 400
# The one module of the server that code outside it (the benchmarks) may import.
SERVER_PUBLIC = "tolk_server.api"
# The only places that may call an engine's `generate`: the pipeline drives the engine, the
# adapters implement it.
ENGINE_CALLERS = ("pipeline", "adapters")


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool

    @property
    def tree(self) -> ast.Module:
        return _parse(self.path)


@cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@cache
def modules() -> dict[str, Module]:
    """Every module of the packages by dotted name (a package by its `__init__`)."""
    out: dict[str, Module] = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            if any((folder / Path(*rel.parts[:n])).is_symlink() for n in range(1, len(rel.parts))):
                continue  # e.g. tolk_server/jsclient, a link to clients/js
            parts = [package, *rel.with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            out[".".join(parts)] = Module(".".join(parts), path, is_package)
    return out


def _base(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    package = module.name.split(".")
    if not module.is_package:
        package = package[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def _known(name: str) -> str | None:
    """The longest prefix of a dotted name that is one of our modules."""
    mods = modules()
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in mods:
            return candidate
    return None


def imports_of(module: Module) -> Iterator[tuple[str, int]]:
    """(imported module of ours, line) for every import statement anywhere in `module`."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := _known(alias.name)) is not None:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node)
            for alias in node.names:
                # `from pkg import sub` imports the module pkg.sub when there is one
                target = _known(f"{base}.{alias.name}") or _known(base)
                if target is not None:
                    yield target, node.lineno


@cache
def graph() -> dict[str, frozenset[str]]:
    return {name: frozenset(t for t, _ in imports_of(m) if t != name)
            for name, m in modules().items()}


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def long_functions() -> list[str]:
    out = []
    for module in modules().values():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out.append(f"{module.name}.{node.name} ({module.path.name}:{node.lineno}):"
                               f" {lines} lines")
    return sorted(out)


# -- the measuring itself, on known inputs ----------------------------------------------------

def test_cycles_finds_rings_and_only_rings() -> None:
    edges = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}),
             "d": frozenset({"a", "e"}), "e": frozenset({"d"}), "f": frozenset({"a"})}
    assert cycles(edges) == [["a", "b", "c"], ["d", "e"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_the_graph_sees_type_only_relative_and_function_level_imports() -> None:
    edges = graph()
    # a lazy __init__: its imports under TYPE_CHECKING are edges
    assert "tolk._async_client" in edges["tolk"]
    # relative, inside the SDK: `from .protocol import ...`
    assert "tolk.protocol" in edges["tolk._live"]
    # `from tolk.protocol import ...` in the server resolves across packages
    assert any(t.startswith("tolk.protocol") for t in edges["tolk_server.live.session"])
    # a lazy import inside a function counts (tolk_bench.cli imports its commands lazily)
    assert any(t.startswith("tolk_bench.") for t in edges["tolk_bench.cli"])


# -- the figures ------------------------------------------------------------------------------

def test_at_most_six_modules_at_the_top_of_the_server() -> None:
    top = sorted(p.name for p in PACKAGES["tolk_server"].glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("package", ["tolk_server", "tolk", "tolk_bench", "tolk_bundle"])
def test_no_import_cycles_type_only_included(package: str) -> None:
    edges = {name: targets for name, targets in graph().items()
             if name == package or name.startswith(package + ".")}
    found = cycles(edges)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_import_cycles_across_the_packages() -> None:
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_function_over_60_lines() -> None:
    found = long_functions()
    assert not found, "functions over 60 lines:\n" + "\n".join(found)


def test_no_module_over_400_lines() -> None:
    sizes = {m.name: m.path.read_text(encoding="utf-8").count("\n") for m in modules().values()}
    over = sorted(f"{name}: {n} lines" for name, n in sizes.items() if n > MAX_MODULE_LINES)
    assert not over, "modules over 400 lines: " + ", ".join(over)


def test_every_part_of_the_server_is_in_the_layers_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    [layers] = [c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    layered = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    parts = {m.name.split(".")[1] for m in modules().values() if m.name.count(".") >= 1
             and m.name.startswith("tolk_server.")}
    assert {f"tolk_server.{part}" for part in parts} == layered


def test_only_the_pipeline_and_the_adapters_call_an_engines_generate() -> None:
    server = PACKAGES["tolk_server"]
    calls = []
    for module in modules().values():
        if not module.name.startswith("tolk_server."):
            continue
        if module.path.relative_to(server).parts[0] in ENGINE_CALLERS:
            continue
        for node in ast.walk(module.tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "generate"):
                calls.append(f"{module.name}:{node.lineno}")
    assert not calls, "engine calls outside the pipeline: " + ", ".join(calls)


def test_the_readme_is_at_most_300_lines() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES


def test_the_benchmarks_import_only_the_servers_public_interface() -> None:
    reached = sorted({f"{module.name}:{line} -> {target}"
                      for module in modules().values() if module.name.startswith("tolk_bench")
                      for target, line in imports_of(module)
                      if target.split(".")[0] == "tolk_server" and target != SERVER_PUBLIC})
    assert not reached, "server internals the benchmarks import:\n" + "\n".join(reached)


def test_the_benchmarks_and_the_bundle_use_only_the_sdks_public_names() -> None:
    private = sorted({f"{module.name}:{line} -> {target}"
                      for module in modules().values()
                      if module.name.split(".")[0] in ("tolk_bench", "tolk_bundle")
                      for target, line in imports_of(module)
                      if target.startswith("tolk._")})
    assert not private, "private SDK modules imported:\n" + "\n".join(private)
