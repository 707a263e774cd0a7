"""The house rules of the package, checked on its source: imports only go down, no loops,
few modules at the root, short functions.

Floors, bottom to top (a package may import its own modules and anything on a lower floor;
packages on one floor do not import each other):

    core < model < {stn, nets, photos} < fitting < flatten < training < evaluation < viz < demo < cli
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "stn3dmm"
FLOORS = {"core": 0, "model": 1, "stn": 2, "nets": 2, "photos": 2, "fitting": 3, "flatten": 4,
          "training": 5, "evaluation": 6, "viz": 7, "demo": 8, "cli": 9}
MAX_ROOT_MODULES = 8
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The stn3dmm modules that ``name`` imports, function-local imports included."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: None if is_pkg else -1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            cands = [f"{target}.{a.name}" for a in node.names] or [target]
        elif isinstance(node, ast.Import):
            cands = [a.name for a in node.names]
        else:
            continue
        for c in cands:
            while c not in MODULES and "." in c:
                c = c.rsplit(".", 1)[0]
            if c in MODULES and c != name:
                found.add(c)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _floor(name: str) -> tuple[str, int] | None:
    parts = name.split(".")
    return (parts[1], FLOORS[parts[1]]) if len(parts) > 1 else None


def test_every_folder_and_root_module_has_a_floor():
    tops = {name.split(".")[1] for name in MODULES if "." in name}
    assert tops <= set(FLOORS), f"modules without a floor: {sorted(tops - set(FLOORS))}"


def test_imports_only_go_down():
    bad = []
    for name, deps in GRAPH.items():
        me = _floor(name)
        if me is None:  # the package root re-exports the public names
            continue
        for d in deps:
            them = _floor(d)
            if them is None or (them[0] != me[0] and them[1] >= me[1]):
                bad.append(f"{name} -> {d}")
    assert not bad, "upward or sideways imports:\n" + "\n".join(sorted(bad))


def test_no_import_loops():
    state, loops = {}, []

    def visit(n, stack):
        state[n] = 1
        for d in GRAPH[n]:
            if state.get(d) == 1:
                loops.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[n] = 2

    for n in sorted(GRAPH):
        if n not in state:
            visit(n, [n])
    assert not loops, "import loops:\n" + "\n".join(loops)


def test_few_modules_at_the_root():
    root = sorted(p.name for p in PKG.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_every_package_says_what_it_owns():
    missing = [str(p.relative_to(PKG)) for p in PKG.rglob("__init__.py") if not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, missing


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_functions_are_short(path):
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines, line {n.lineno})"
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long
