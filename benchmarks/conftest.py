"""A plain test run (``pytest``, benchmarks disabled) executes each benchmark once, as a
correctness test of the benchmark's own code: its inputs, its call and its check against NumPy
or torch. Two kinds of rows would repeat that check, and a plain run leaves them out:

- a case parametrized over sizes runs at its smallest size only. The larger sizes run the same
  code on more elements, and the builds they reach (a kernel's parallel build, past its size
  threshold) have tests of their own in tests/ (test_families.py, test_vmath.py,
  test_reduce_kernels.py, test_softmax_parallel.py);
- a case parametrized over thread counts runs at one thread only. The other rows run the same
  code through the kernels' parallel builds, which have tests of their own in tests/ as well,
  and on an empty kernel cache they compiled parallel builds that the suite's tests compile in
  the other dtype only;
- in the cases of ``TWIN_ROWS``, each row runs both libraries' passes and compares them before
  timing one of the two: the torch row's check is the firefly row's, over again.

``--benchmark-enable`` keeps every row.
"""

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The parameters that set a benchmark's problem size (number of elements, matrix order).
SIZE_PARAMETERS = ("size", "n")
# The parameters (or parametrized fixtures) that set the thread count a row runs at.
THREAD_PARAMETERS = ("threads", "trig_threads")
# (file, function) -> the parameter naming the library a row times.
TWIN_ROWS = {
    ("bench_layers.py", "test_layer_forward_backward"): "implementation",
    ("bench_layers.py", "test_conv_pass"): "implementation",
    ("bench_layers.py", "test_bmm_attention_pass"): "implementation",
    ("bench_attention.py", "test_attention_forward_backward"): "implementation",
    ("bench_recurrent.py", "test_recurrent_forward_backward"): "implementation",
    ("bench_optimizers.py", "test_lbfgs_step"): "library",
}


def _params(item):
    """The item's parameters; None for a test outside benchmarks/ (this hook sees the whole
    session's items)."""
    if HERE not in Path(item.path).resolve().parents:
        return None
    return getattr(getattr(item, "callspec", None), "params", {})


def _size(params):
    return next(((name, params[name]) for name in SIZE_PARAMETERS if name in params), None)


def _case(item, size_name):
    """The item's function and its parameters other than the size."""
    others = tuple(sorted((k, repr(v)) for k, v in item.callspec.params.items() if k != size_name))
    return item.nodeid.split("[")[0], others


def _more_than_one_thread(params):
    return any(params.get(name, 1) != 1 for name in THREAD_PARAMETERS)


def _twin_torch_row(item, params):
    library = TWIN_ROWS.get((Path(item.path).name, item.originalname))
    return library is not None and params.get(library) == "torch"


@pytest.hookimpl(trylast=True)  # after pytest-benchmark has read its options
def pytest_collection_modifyitems(config, items):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.disabled:
        return
    rows = []  # (item, its parameters, (size name, size) or None), for benchmarks/ items
    for item in items:
        params = _params(item)
        rows.append((item, params, params and _size(params)))
    smallest = {}
    for item, _, size in rows:
        if size:
            case = _case(item, size[0])
            smallest[case] = min(smallest.get(case, size[1]), size[1])
    kept, deselected = [], []
    for item, params, size in rows:
        if params and (
            _twin_torch_row(item, params)
            or _more_than_one_thread(params)
            or (size and smallest[_case(item, size[0])] != size[1])
        ):
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
