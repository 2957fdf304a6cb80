"""The package's shape that the rest of the code relies on: every import, at any depth (function-level ones
included), goes down the documented layer order, so neither modules nor packages import each other; module
names are unique; a torch-free spec checker."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# ARCHITECTURE.md's order, lowest first: a module imports only from its own layer or those before it.
LAYERS = (
    ("hpo_cls", "hpo_cls.errors", "hpo_cls.console", "hpo_cls.cache_dir", "hpo_cls.package_versions", "hpo_cls.outputs"),
    ("hpo_cls.spec",),
    ("hpo_cls.models",),
    ("hpo_cls.data",),
    ("hpo_cls.train",),
    ("hpo_cls.tracking",),
    ("hpo_cls.search",),
    ("hpo_cls.sweep",),
    ("hpo_cls.promote", "hpo_cls.ensemble"),
    ("hpo_cls.cli",),
)
# Kept at their old paths so that models registered before a layout change still load (their logged code
# imports these names): hpo_cls.ensemble re-exports hpo_cls.promote.ensemble.
LEGACY_NAMES = {"ensemble"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path) -> set[str]:
    """hpo_cls modules ``path`` imports at any depth (inside functions too); ``if TYPE_CHECKING:`` blocks,
    which never run, aside."""
    module = _module_name(path)
    names: set[str] = set()
    stack = [ast.parse(path.read_text())]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.ImportFrom) and node.level:  # "from . import resnet" inside a package
            package = module.rsplit(".", node.level - (path.name == "__init__.py"))[0]
            base = f"{package}.{node.module}" if node.module else package
            names |= {base, *(f"{base}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hpo_cls"):
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}  # a name may be a module
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("hpo_cls")}
    return names


def _graph() -> dict[str, set[str]]:
    graph = {_module_name(p): _imports(p) for p in SRC.rglob("*.py")}
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def _layer(module: str) -> int:
    for i, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") and m != "hpo_cls" for m in members):
            return i
    raise AssertionError(f"{module} is in no layer of LAYERS (ARCHITECTURE.md)")


def test_the_layout_test_sees_function_level_imports():
    imports = _imports(SRC / "hpo_cls" / "promote" / "plan.py")
    assert "hpo_cls.data" in imports, "imported inside _check_predict_folder"
    assert "hpo_cls.tracking.writer" not in _imports(SRC / "hpo_cls" / "tracking" / "runs.py"), "TYPE_CHECKING"


def test_no_import_cycles_between_modules():
    graph = _graph()
    visiting, done = [], set()

    def visit(module):
        if module in done:
            return
        assert module not in visiting, "import cycle: " + " -> ".join(visiting[visiting.index(module):] + [module])
        visiting.append(module)
        for dependency in sorted(graph[module]):
            visit(dependency)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_every_import_goes_down_the_documented_layers():
    """So no two packages import each other. A module that imports nothing of hpo_cls (a table of names the
    spec checker reads, a figure) cannot close a cycle: any layer may use it."""
    graph = _graph()
    leaves = {m for m, deps in graph.items() if not deps}
    upward = [f"{m} -> {d}" for m, deps in sorted(graph.items()) for d in sorted(deps)
              if d not in leaves and _layer(d) > _layer(m)]
    assert upward == []


def test_module_names_are_unique_across_the_package():
    names = Counter(p.stem for p in SRC.rglob("*.py") if p.stem != "__init__")
    assert sorted(n for n, count in names.items() if count > 1 and n not in LEGACY_NAMES) == []


def test_reading_a_spec_imports_neither_torch_nor_ray():
    """`hpo-cls validate` and every pre-flight read specs; that must not cost torch's import."""
    code = ("import sys, hpo_cls.spec, hpo_cls.data; "
            "print(sorted(m for m in ('torch', 'ray', 'optuna', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
