"""The package's shape, checked: no import cycles outside autograd/, and one module that
tells the backends apart by name (the backend table), so a feature lands once per backend."""
import ast
import importlib.util
from pathlib import Path

import pytest

import fastmlp

PACKAGE = Path(fastmlp.__file__).parent
BACKEND_NAMES = {"numpy", "native"}


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources():
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_module(name):
    """A module (the compiled fastmlp._core, say), not a name defined by a package."""
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def imports(name, path, modules):
    """The fastmlp modules that `path` imports anywhere in it (functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:   # `from . import x` imports the submodule x, if any
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules or is_module(sub) else target)
    return {m for m in found if m in modules and m != name}


def import_graph(modules):
    return {name: imports(name, path, modules) for name, path in modules.items()}


def find_cycle(graph, ignore):
    """One import cycle among the modules not matched by `ignore`, as a list, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if ignore(n):
                continue
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        state[m] = "done"
        stack.pop()
        return None
    for m in sorted(graph):
        if not ignore(m) and m not in state and (cycle := visit(m)):
            return cycle
    return None


def in_autograd(m):
    return m.startswith("fastmlp.autograd")


def test_no_import_cycle_outside_autograd():
    cycle = find_cycle(import_graph(sources()), in_autograd)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = import_graph(sources())
    graph["fastmlp.training"] = graph["fastmlp.training"] | {"fastmlp.model"}
    cycle = find_cycle(graph, in_autograd)
    assert cycle is not None and {"fastmlp.model", "fastmlp.training"} <= set(cycle)
    # a function-level import counts too
    assert "fastmlp.model" in imports("fastmlp.plots", PACKAGE / "plots.py", sources())


def backend_name_comparisons(path):
    """Lines of `path` that compare something with "numpy" or "native"."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare) and any(
                isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)) for op in node.ops):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) and o.value in BACKEND_NAMES for o in operands):
                lines.append(node.lineno)
    return lines


def test_only_the_backend_table_compares_backend_names():
    found = {name: lines for name, path in sources().items()
             if name != "fastmlp.backend" and (lines := backend_name_comparisons(path))}
    assert found == {}
    assert backend_name_comparisons(PACKAGE / "backend.py"), "the check must see backend.py's"


@pytest.mark.parametrize("name", ["numpy", "native"])
def test_every_backend_has_the_one_training_interface(name):
    try:
        table = fastmlp.get_backend(name)
    except RuntimeError:
        pytest.skip("fastmlp._core is not built")
    reference = fastmlp.get_backend("numpy").training
    for function in ("gradients", "update", "step", "epoch", "evaluate", "get_num_threads",
                     "set_num_threads"):
        assert callable(getattr(table.training, function)), function
        assert (getattr(table.training, function).__code__.co_varnames[:3]
                == getattr(reference, function).__code__.co_varnames[:3]), function
    assert isinstance(table.training.FINDS_NONFINITE_X, bool)
