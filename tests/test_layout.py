"""The package's shape that the rest of the code relies on: no import cycles, a torch-free spec checker."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """hpo_cls modules imported when ``path`` is imported (function-level imports run later)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hpo_cls") and not node.level:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:  # "from . import resnet" inside a package
            package = _module_name(path).rsplit(".", node.level - (path.name == "__init__.py"))[0]
            names |= {f"{package}.{node.module}" if node.module else f"{package}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("hpo_cls")}
    return names


def test_no_import_cycles_between_modules():
    graph = {_module_name(p): _top_level_imports(p) for p in SRC.rglob("*.py")}
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    visiting, done = [], set()

    def visit(module):
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " -> ".join(visiting[visiting.index(module):] + [module])
        visiting.append(module)
        for dependency in graph[module]:
            visit(dependency)
        visiting.pop()
        done.add(module)

    for module in graph:
        visit(module)


def test_reading_a_spec_imports_neither_torch_nor_ray():
    """`hpo-cls validate` and every pre-flight read specs; that must not cost torch's import."""
    code = ("import sys, hpo_cls.spec, hpo_cls.data; "
            "print(sorted(m for m in ('torch', 'ray', 'optuna', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
