"""firefly's import graph, read from the source with ``ast``, has no cycle.

What counts as an edge from module A to module B (the rules docs/architecture.md states):

- every ``import``/``from ... import`` of a firefly module in A, at module level (also inside
  ``if``/``try``/class bodies) and inside functions alike. A function-level import runs after
  every module has loaded, so it cannot break import order; it still counts, because a cycle
  through one is the same tangle of layers, only hidden (firefly has no such cycle, so the rule
  costs nothing today);
- ``from P import name`` is an edge to ``P.name`` when that is a module, else to ``P``;
- importing ``P.Q.R`` also imports the packages ``P.Q``: those are edges too, except the root
  ``firefly`` package, which is the public facade that imports every layer and which no module
  inside firefly imports at module level (checked separately);
- an import inside ``if TYPE_CHECKING:`` is no edge: it never runs, it only names a type for
  the checker (``autograd.py`` names the Tensor class that ``bind_tensor_type`` hands it).
"""

import ast
import pathlib
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[1]


def modules(root):
    """{dotted module name: path} of every .py file of the package under ``root``."""
    found = {}
    for path in sorted((root / "firefly").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(node, module, is_package, known):
    """The firefly modules an Import/ImportFrom node names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "firefly"]
    base = node.module or ""
    if node.level:
        parts = module.split(".")[: len(module.split(".")) - (0 if is_package else 1)]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([base] if base else []))
    if base.split(".")[0] != "firefly":
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def _type_checking_imports(tree):
    """The Import/ImportFrom nodes inside ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            for statement in node.body:
                found.update(
                    id(n)
                    for n in ast.walk(statement)
                    if isinstance(n, (ast.Import, ast.ImportFrom))
                )
    return found


def import_edges(root):
    """{module: set of modules it imports}, and {module: lines importing the root package at
    module level}, following the rules in this file's docstring."""
    known = modules(root)
    edges, root_imports = {}, {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        targets = set()
        type_only = _type_checking_imports(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in type_only:
                targets.update(_imported(node, module, is_package, known))
        for node in tree.body:  # module level, outside functions
            if isinstance(node, ast.Import) and any(a.name == "firefly" for a in node.names):
                root_imports.setdefault(module, []).append(node.lineno)
        closed = set()
        for target in targets:
            parts = target.split(".")
            closed.update(".".join(parts[:k]) for k in range(2, len(parts) + 1))
        edges[module] = {
            t for t in closed if t in known and t != module and not module.startswith(t + ".")
        }
    return edges, root_imports


def find_cycle(edges):
    """One import cycle as a list of modules (first repeated last), or None."""
    state = {}  # module -> "open" while on the path, "done" after
    path = []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(edges):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_firefly_has_no_import_cycle():
    edges, _ = import_edges(REPO)
    assert len(edges) > 50  # the whole package was read
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_the_facade_at_module_level():
    _, root_imports = import_edges(REPO)
    assert root_imports == {}, f"`import firefly` at module level in {root_imports}"


def test_the_checker_finds_cycles(tmp_path):
    package = tmp_path / "firefly"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from firefly.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("def f():\n    from firefly import c\n")
    (package / "c.py").write_text("import firefly.a\n")
    edges, _ = import_edges(tmp_path)
    assert edges["firefly.a"] == {"firefly.sub", "firefly.sub.b"}
    assert find_cycle(edges) == ["firefly.a", "firefly.sub.b", "firefly.c", "firefly.a"]
    (package / "c.py").write_text("import numpy\n")
    assert find_cycle(import_edges(tmp_path)[0]) is None


def test_an_import_for_the_type_checker_only_is_no_edge(tmp_path):
    package = tmp_path / "firefly"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from firefly.high import X\n"
    )
    (package / "high.py").write_text("from firefly import low\n")
    edges, _ = import_edges(tmp_path)
    assert edges["firefly.low"] == set()
    assert find_cycle(edges) is None
    (package / "low.py").write_text("from firefly.high import X\n")  # a run-time import
    assert find_cycle(import_edges(tmp_path)[0]) == ["firefly.high", "firefly.low", "firefly.high"]


def _run(run_python, code, **env):
    proc = run_python(
        "-c",
        textwrap.dedent(code),
        env={"FIREFLY_DISABLE_PLUGIN_AUTOLOAD": "1", "FIREFLY_NO_COMPILE_NOTICE": "1", **env},
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_the_import_leaves_no_garbage_and_freezes_what_it_made(run_python):
    """``import firefly`` freezes every object alive after it (gc.freeze), so that the
    collector's full passes skip them: only sound while none of them is garbage."""
    out = _run(
        run_python,
        """
        import gc
        import firefly

        frozen = gc.get_freeze_count()
        gc.unfreeze()
        print(frozen, gc.collect())
        """,
    )
    frozen, garbage = map(int, out.split())
    assert frozen > 10_000 and garbage == 0


def test_a_late_import_frees_the_programs_garbage_before_freezing(run_python):
    """A program that made cyclic garbage before importing firefly gets it freed, not frozen."""
    out = _run(
        run_python,
        """
        import gc
        import weakref

        class Node:
            pass

        node = Node()
        node.me = node
        alive = weakref.ref(node)
        gc.collect()  # the cycle survives into the oldest generation, as in a long-running program
        del node  # and only then becomes garbage
        import firefly

        print(alive() is None)
        """,
    )
    assert out.split() == ["True"]


def test_the_freeze_is_skipped_when_turned_off_or_when_the_collector_is_off(run_python):
    report = "import gc\nimport firefly\nprint(gc.get_freeze_count() > 0, gc.isenabled())\n"
    assert _run(run_python, report).split() == ["True", "True"]
    assert _run(run_python, report, FIREFLY_GC_FREEZE="0").split() == ["False", "True"]
    assert _run(run_python, "import gc\ngc.disable()\n" + report).split() == ["False", "False"]


# Numba modules that a cached kernel's environments name (np.empty's helpers live in arrayobj,
# np.dot's in linalg) and that loading it no longer imports (_cache._rebuild_environment).
NOT_IMPORTED_BY_A_LOAD = ("numba.np.arrayobj", "numba.np.linalg", "numba.cpython.unicode")


def test_loading_cached_kernels_imports_no_numba_support_modules(run_python):
    code = f"""
        import sys
        import numpy as np
        import firefly
        from firefly.kernels._jit import kernel_load_counts

        x = firefly.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
        w = firefly.tensor(np.ones((4, 2)), requires_grad=True)
        y = (x @ w).relu().sum()
        y.backward()
        assert y.item() == 132.0 and x.grad.numpy().sum() == 24.0
        loaded, compiled = kernel_load_counts()
        print(loaded, compiled, *[m for m in {NOT_IMPORTED_BY_A_LOAD!r} if m in sys.modules])
    """
    _run(run_python, code)  # fills the user's cache where it is empty
    loaded, compiled, *imported = _run(run_python, code).split()
    assert int(loaded) >= 4 and int(compiled) == 0
    assert imported == []
