"""The house has one direction: host <- models <- quantize <- hw_build.

Every import of a bnnpose module inside the package (top-level or lazy, inside functions) and
every ``"bnnpose.x.y[:func]"`` string that names one (forwarding tables) must point at its own
layer or one below it, and no modules may import each other in a cycle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Bottom first: a module may use its own layer and the ones before it.
LAYERS = ("host", "models", "quantize", "hw_build")
_MODULE_STRING = re.compile(r"bnnpose(?:\.\w+)+(?::\w+)?")


def package_modules(root: Path = REPO) -> dict[str, Path]:
    """``bnnpose.<layer>.<...>`` -> source file, for every module of the four layers."""
    out = {}
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            parts = ("bnnpose", *path.relative_to(root).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(path: Path, modules: dict[str, Path]) -> set[tuple[str, int]]:
    """``(bnnpose module, line)`` for every import and module-naming string in ``path``."""
    found = set()

    def add(name: str, line: int) -> None:
        # "from bnnpose.a import b" names module bnnpose.a.b when that is one.
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name.startswith("bnnpose."):
            found.add((name, line))

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("bnnpose"):
            for alias in node.names:
                add(f"{node.module}.{alias.name}", node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("bnnpose"):
                    add(alias.name, node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and _MODULE_STRING.fullmatch(node.value):
            add(node.value.split(":")[0], node.lineno)
    return found


def layer_of(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def upward_imports(root: Path = REPO) -> list[str]:
    modules = package_modules(root)
    return sorted(
        f"{path.relative_to(root)}:{line}: {name} ({LAYERS[layer_of(name)]}) imports {target} "
        f"({LAYERS[layer_of(target)]})"
        for name, path in modules.items()
        for target, line in imports_of(path, modules)
        if layer_of(target) > layer_of(name))


def import_cycles(root: Path = REPO) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    modules = package_modules(root)
    edges = {m: {t for t, _ in imports_of(p, modules)} - {m} for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return cycles


def test_every_import_points_down_the_layers():
    assert upward_imports() == []


def test_no_import_cycles():
    assert import_cycles() == []


def _copy_package(tmp_path: Path) -> Path:
    for layer in LAYERS:
        for path in (REPO / layer).rglob("*.py"):
            dest = tmp_path / path.relative_to(REPO)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(path.read_text())
    return tmp_path


@pytest.mark.parametrize("planted, expected", [
    ("from bnnpose.quantize.train import train\n", "imports bnnpose.quantize.train (quantize)"),
    ("def f():\n    import bnnpose.hw_build.sim\n", "imports bnnpose.hw_build.sim (hw_build)"),
    ('TABLE = {"x": "bnnpose.hw_build.make_bitstream:main"}\n',
     "imports bnnpose.hw_build.make_bitstream (hw_build)"),
])
def test_a_planted_upward_import_is_caught(tmp_path, planted, expected):
    root = _copy_package(tmp_path)
    target = root / "models" / "registry.py"
    target.write_text(target.read_text() + "\n" + planted)
    found = upward_imports(root)
    assert len(found) == 1 and found[0].startswith("models/registry.py:")
    assert expected in found[0] and "bnnpose.models.registry (models)" in found[0]


def test_a_planted_cycle_is_caught(tmp_path):
    root = _copy_package(tmp_path)
    target = root / "host" / "codec.py"
    target.write_text(target.read_text() + "\nfrom bnnpose.host.pipeline import run\n")
    assert any({"bnnpose.host.codec", "bnnpose.host.pipeline"} <= set(c)
               for c in import_cycles(root))
