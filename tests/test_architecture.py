"""The package's shape (issue 12): module sizes, no import cycles, the synthetic benchmark used by nothing else."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "speechbrain_lmaczs"
NAME = PACKAGE.name
MAX_LINES = 500


def _modules():
    """Dotted module name -> path, for every module of the package."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _resolve(name, modules):
    # "a.b.C" (a name imported from module a.b) -> "a.b"; the deepest module the dotted name reaches.
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules):
    """Module -> the package's modules it imports anywhere in its code (top level, functions, methods)."""
    graph = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = module.split(".") if is_package else module.split(".")[:-1]
                    parts = parts[: len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                target = _resolve(name, modules)
                if target and target != module:
                    targets.add(target)
        graph[module] = targets
    return graph


def find_cycle(graph):
    """One import cycle as a list of modules (first == last), or None."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path + [target])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_find_cycle_detects_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_relative_and_lazy_imports_are_edges(tmp_path, monkeypatch):
    package = tmp_path / NAME
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .x import f\n")
    (package / "sub" / "x.py").write_text("def f():\n    from speechbrain_lmaczs import y\n")
    (package / "y.py").write_text("from .sub import x\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", package)
    graph = import_graph(_modules())
    assert graph[f"{NAME}.sub"] == {f"{NAME}.sub.x"}
    assert f"{NAME}.y" in graph[f"{NAME}.sub.x"]
    assert find_cycle(graph) is not None


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph(_modules())) is None


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_module_is_over_500_lines(module):
    lines = _modules()[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it along its seams."


def test_only_the_demo_entry_point_imports_the_synthetic_benchmark():
    graph = import_graph(_modules())
    synthetic = f"{NAME}.synthetic"
    users = {
        module
        for module, targets in graph.items()
        if not module.startswith(synthetic) and any(t.startswith(synthetic) for t in targets)
    }
    assert users == {f"{NAME}.demo"}
