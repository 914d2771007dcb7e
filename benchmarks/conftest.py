"""A plain test run (``pytest``, benchmarks disabled) executes each benchmark once, as a
correctness test of the benchmark's own code: its inputs, its call and its check against NumPy.
A case parametrized over sizes then runs at its smallest size only. The larger sizes run the
same code on more elements, and the builds they reach (a kernel's parallel build, past its size
threshold) have tests of their own in tests/ (test_families.py, test_vmath.py,
test_reduce_kernels.py, test_softmax_parallel.py). ``--benchmark-enable`` keeps every size.
"""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The parameters that set a benchmark's problem size (number of elements, matrix order).
SIZE_PARAMETERS = ("size", "n")


def _size(item):
    """(name, value) of the benchmark's size parameter; None for a test outside benchmarks/
    (this hook sees the whole session's items) or a case without one."""
    if HERE not in Path(item.path).resolve().parents:
        return None
    params = getattr(getattr(item, "callspec", None), "params", {})
    return next(((name, params[name]) for name in SIZE_PARAMETERS if name in params), None)


def _case(item, size_name):
    """The item's function and its parameters other than the size."""
    params = item.callspec.params
    others = tuple(sorted((k, repr(v)) for k, v in params.items() if k != size_name))
    return item.nodeid.split("[")[0], others


@pytest.hookimpl(trylast=True)  # after pytest-benchmark has read its options
def pytest_collection_modifyitems(config, items):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.disabled:
        return
    smallest = {}
    for item in items:
        size = _size(item)
        if size is not None:
            case = _case(item, size[0])
            smallest[case] = min(smallest.get(case, size[1]), size[1])
    kept, deselected = [], []
    for item in items:
        size = _size(item)
        if size is None or smallest[_case(item, size[0])] == size[1]:
            kept.append(item)
        else:
            deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
