"""Kernel compilation and threading: nothing compiles at import, the on-disk cache honours
NUMBA_CACHE_DIR and falls back cleanly when no folder is writable, concurrent parallel kernels
from two threads are safe, and serial and parallel builds agree."""

import os
import shutil
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest
from numba import prange

import firefly
from firefly.kernels._jit import is_sized_kernel
from firefly.ops import declared_kernels, get, names


@pytest.fixture
def run_code(run_python):
    """``run_code(code, env=None, cwd=None, repo_importable=True)``: runs ``code`` in a fresh
    interpreter, without plugins or bytecode files, and returns its stdout, after failing with
    its output unless it exits 0."""

    def run(code, env=None, cwd=None, repo_importable=True):
        env = {
            "PYTHONDONTWRITEBYTECODE": "1",
            "FIREFLY_DISABLE_PLUGIN_AUTOLOAD": "1",
            **(env or {}),
        }
        proc = run_python(
            "-c", textwrap.dedent(code), env=env, cwd=cwd, repo_importable=repo_importable
        )
        assert proc.returncode == 0, (
            f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
        return proc.stdout

    return run


def test_no_kernel_compiles_at_import(run_code):
    out = run_code("""
        import importlib, pkgutil
        from numba.core.registry import CPUDispatcher
        import firefly, firefly.kernels
        from firefly.kernels._jit import is_sized_kernel
        from firefly.ops import declared_kernels, get, names

        for info in pkgutil.walk_packages(firefly.__path__, "firefly."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
        found = [value
                 for info in pkgutil.iter_modules(firefly.kernels.__path__, "firefly.kernels.")
                 for value in vars(importlib.import_module(info.name)).values()]
        found += [k for name in names() for attr in ("forward_kernel", "backward_kernel")
                  for k in declared_kernels(getattr(get(name), attr))]
        dispatchers = [d for k in found if is_sized_kernel(k) or isinstance(k, CPUDispatcher)
                       for d in (k.dispatchers() if is_sized_kernel(k) else (k,))]
        assert len(dispatchers) > 40, dispatchers
        compiled = [d.py_func.__qualname__ for d in dispatchers if d.signatures]
        assert not compiled, f"compiled at import: {compiled}"
        print(len(dispatchers))
    """)
    assert int(out) > 40


# One kernel, so that the subprocesses, which compile from scratch, stay quick.
SMALL_WORKLOAD = """
    import numpy as np
    from firefly import Tensor
    x = np.linspace(-2.0, 2.0, 12).reshape(3, 4)
    np.testing.assert_array_equal((Tensor(x) + Tensor(x)).numpy(), x + x)
"""


def test_numba_cache_dir_is_honoured(run_code, tmp_path):
    cache = tmp_path / "numba-cache"
    run_code(SMALL_WORKLOAD, {"NUMBA_CACHE_DIR": str(cache)})
    written = sorted(p.name for p in cache.rglob("*") if p.suffix in (".nbi", ".nbc"))
    assert any("add_forward" in name for name in written), written


# Kernels specialised from one family template: each must have cache files of its own, and a
# second process must load them all from the cache instead of compiling.
CACHE_WORKLOAD = """
    import numpy as np
    from firefly import Tensor
    from firefly.ops import get
    x = Tensor(np.linspace(0.5, 2.0, 12).reshape(3, 4), requires_grad=True)
    (x.exp() + x.log() + x.tanh() * x.sigmoid() - x * x / (x + 1.0)).relu().sum().backward()
    from firefly.ops import declared_kernels
    family = [k for name in ("exp", "log", "tanh", "sigmoid", "relu", "sub", "mul", "div")
              for attr in ("forward_kernel", "backward_kernel")
              for k in declared_kernels(getattr(get(name), attr))[:1]]
    family = [k.dispatchers()[0] for k in family]
    print(sum(sum(k.stats.cache_hits.values()) for k in family),
          sum(sum(k.stats.cache_misses.values()) for k in family))
"""


def test_family_kernels_have_cache_files_of_their_own_and_load_from_them(run_code, tmp_path):
    cache = tmp_path / "numba-cache"
    env = {"NUMBA_CACHE_DIR": str(cache)}
    hits, misses = map(int, run_code(CACHE_WORKLOAD, env).split())
    assert hits == 0 and misses >= 15
    indexes = [p.name for p in cache.rglob("*.nbi")]
    for name in ("exp", "log", "tanh", "sigmoid", "relu", "mul", "div"):
        for direction in ("forward", "backward"):
            assert (
                sum(
                    i.startswith(f"families.{name}_{direction}__") or f"_{name}_{direction}__" in i
                    for i in indexes
                )
                == 1
            ), (name, direction, indexes)
    hits, misses = map(int, run_code(CACHE_WORKLOAD, env).split())
    assert misses == 0 and hits >= 15


def unwritable_environment(tmp_path):
    """Env vars (and a package copy) that leave Numba no writable cache folder, even for root.

    Every cache folder Numba would try lies under a regular file, so creating it fails with
    NotADirectoryError whatever the permissions.
    """
    blocker = tmp_path / "a-regular-file"
    blocker.write_text("")
    package_root = tmp_path / "site"
    shutil.copytree(
        Path(firefly.__file__).parent,
        package_root / "firefly",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for folder in (package_root / "firefly").rglob("*"):
        if folder.is_dir():
            (folder / "__pycache__").write_text("")  # in-tree caches: a file where the folder goes
    env = {
        "NUMBA_CACHE_DIR": str(blocker / "numba"),
        "XDG_CACHE_HOME": str(blocker / "xdg"),
        "HOME": str(blocker / "home"),
        "PYTHONPATH": str(package_root),
    }
    return env, package_root


FALLBACK_CHECK = (
    """
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import firefly
    assert firefly.__file__.startswith({root!r}), firefly.__file__
    messages = [str(w.message) for w in caught if "not be cached" in str(w.message)]
    assert len(messages) == 1, [str(w.message) for w in caught]
    assert "NUMBA_CACHE_DIR" in messages[0]
    from firefly.kernels import _cache
    assert _cache.cache_enabled is False
"""
    + SMALL_WORKLOAD
)


def test_unwritable_cache_folders_fall_back_to_no_cache_with_one_warning(run_code, tmp_path):
    env, package_root = unwritable_environment(tmp_path)
    run_code(
        FALLBACK_CHECK.format(root=str(package_root)), env, cwd=tmp_path, repo_importable=False
    )
    assert not [p for p in package_root.rglob("*") if p.suffix in (".nbi", ".nbc")]


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root writes to read-only folders"
)
def test_read_only_package_folder_falls_back_to_no_cache(run_code, tmp_path):
    env, package_root = unwritable_environment(tmp_path)
    for path in (package_root / "firefly").rglob("__pycache__"):
        path.unlink()
    for folder in [package_root / "firefly", *(package_root / "firefly").rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o555)
    try:
        run_code(
            FALLBACK_CHECK.format(root=str(package_root)), env, cwd=tmp_path, repo_importable=False
        )
    finally:
        for folder in [package_root / "firefly", *(package_root / "firefly").rglob("*")]:
            if folder.is_dir():
                folder.chmod(0o755)


def test_two_threads_running_parallel_kernels_do_not_abort(run_code):
    # workqueue is the layer that aborts on concurrent entry; omp and tbb tolerate it.
    run_code(
        """
        import threading
        import numpy as np
        from firefly import Tensor
        from firefly.kernels import _jit

        n = 4 * max(_jit.PARALLEL_MIN_MEMORY_BOUND, _jit.PARALLEL_MIN_TRANSCENDENTAL)
        errors = []

        def work(seed):
            try:
                x = np.random.default_rng(seed).uniform(-1, 1, n)
                t = Tensor(x, requires_grad=True)
                for _ in range(20):
                    y = (t * t + t).tanh().exp()
                    np.testing.assert_allclose(y.numpy(), np.exp(np.tanh(x * x + x)), rtol=1e-12)
                    y.sum().backward()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
    """,
        {"NUMBA_THREADING_LAYER": "workqueue"},
    )


@pytest.fixture(params=["serial", "parallel"])
def build(request, monkeypatch):
    """Forces every sized kernel to one build, whatever the size of its arguments."""
    import importlib
    import pkgutil

    import firefly.kernels

    threshold = 0 if request.param == "parallel" else sys.maxsize
    found = [
        value
        for info in pkgutil.iter_modules(firefly.kernels.__path__, "firefly.kernels.")
        for value in vars(importlib.import_module(info.name)).values()
    ]
    found += [
        k
        for name in names()
        for attr in ("forward_kernel", "backward_kernel")
        for k in declared_kernels(getattr(get(name), attr))
    ]
    for value in found:
        if is_sized_kernel(value):
            monkeypatch.setattr(value, "threshold", threshold)
    return request.param


SIZED_OPS = [
    "neg",
    "relu",
    "exp",
    "log",
    "sigmoid",
    "tanh",
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "sum",
    "mean",
    "max",
    "softmax",
    "log_softmax",
    "reshape",
    "transpose",
    "getitem",
]


def run_forward_backward(name, shape, seed, same_shapes):
    op = get(name)
    rng = np.random.default_rng(seed)
    if same_shapes:  # the flat fast path of the binary kernels
        arrays, attrs = [rng.uniform(0.5, 2.0, shape) for _ in range(op.arity)], {}
    else:  # the op's own samples: broadcasting partners, axes, indexes
        arrays, attrs = op.sample_inputs(rng, shape, np.float64)
    leaves = [firefly.Tensor(a, requires_grad=True) for a in arrays]
    out = firefly.ops.apply(name, *leaves, **attrs)
    out.backward(rng.uniform(-1, 1, out.shape))
    return [out.numpy()] + [leaf.grad.numpy() for leaf in leaves]


RESULTS = {}


BUILD_CASES = [(name, False) for name in SIZED_OPS] + [
    (name, True) for name in ("add", "sub", "mul", "div", "pow")
]


@pytest.mark.parametrize(
    "name, same_shapes",
    BUILD_CASES,
    ids=[f"{n}-{'same-shapes' if same else 'sampled'}" for n, same in BUILD_CASES],
)
def test_serial_and_parallel_builds_give_identical_results(build, name, same_shapes):
    # Both builds run the same op on the same inputs; the second to run compares with the first.
    results = run_forward_backward(name, (3, 40, 7), 7, same_shapes)
    other = RESULTS.setdefault((name, same_shapes), (build, results))
    if other[0] != build:
        for ours, theirs in zip(results, other[1]):
            np.testing.assert_array_equal(ours, theirs)


LAYER_CHECK = """
    import os, sys
    for name in ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"):
        if name not in {chosen}:
            os.environ.pop(name, None)
    import numba
    import numba.core.config
    numba.core.config.reload_config()  # as if the variables had never been set
    import numpy as np
    from firefly import Tensor
    from firefly.kernels import _jit

    x = np.ones(2 * _jit.PARALLEL_MIN_MEMORY_BOUND, np.float32)
    np.testing.assert_array_equal((Tensor(x) + Tensor(x)).numpy(), 2 * x)  # runs a parallel build
    print(numba.threading_layer(), " ".join(numba.config.THREADING_LAYER_PRIORITY))
"""


def test_threading_layer_prefers_workqueue_to_omp(run_code):
    # omp's join waits a whole time slice for a worker whose core another process holds
    # (docs/performance.md): firefly puts workqueue before it unless tbb loads.
    layer, *priority = run_code(LAYER_CHECK.format(chosen=())).split()
    assert priority == ["tbb", "workqueue", "omp"]
    assert layer in ("tbb", "workqueue")


def test_threading_layer_variables_override_the_choice(run_code):
    out = run_code(
        LAYER_CHECK.format(chosen=("NUMBA_THREADING_LAYER_PRIORITY",)),
        {"NUMBA_THREADING_LAYER_PRIORITY": "omp workqueue tbb"},
    )
    layer, *priority = out.split()
    assert priority == ["omp", "workqueue", "tbb"]
    out = run_code(
        LAYER_CHECK.format(chosen=("NUMBA_THREADING_LAYER",)),
        {"NUMBA_THREADING_LAYER": "workqueue"},
    )
    assert out.split()[0] == "workqueue"


def test_pip_installed_tbb_loads_without_the_library_path(run_code):
    # pip's tbb puts libtbb.so.12 in <environment>/lib, outside the loader's search path:
    # firefly loads it by its full path (firefly/kernels/_threading.py) so that tbb is chosen.
    import importlib.metadata
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("the library is loaded by path on Linux only")
    try:
        importlib.metadata.version("tbb")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip('needs the tbb package: pip install ".[tbb]"')
    # An empty LD_LIBRARY_PATH: the loader searches only its default folders.
    assert run_code(LAYER_CHECK.format(chosen=()), {"LD_LIBRARY_PATH": ""}).split()[0] == "tbb"


def test_tbb_is_not_loaded_when_another_layer_is_chosen(run_code):
    out = run_code(
        "from firefly.kernels import _threading\nprint(_threading.preload_tbb())",
        {"NUMBA_THREADING_LAYER": "workqueue"},
    )
    assert out.split() == ["False"]


def test_kernels_are_dispatchers_that_numba_completes_at_their_first_use(tmp_path, monkeypatch):
    from numba.core.registry import CPUDispatcher

    from firefly.kernels import _jit

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_jit._cache, "cache_enabled", False)  # this test's kernels stay here

    @_jit.inline_helper
    def twice(v):
        return 2.0 * v

    @_jit.kernel
    def scaled_sum(a, scale=3.0):
        total = 0.0
        for i in range(a.size):
            total += twice(a[i])
        return total * scale

    @_jit.kernel
    def total_of(*values):
        total = 0.0
        for value in values:
            total += value
        return total

    assert isinstance(scaled_sum, CPUDispatcher) and _jit.is_helper(twice)
    assert not scaled_sum.is_complete and not twice.is_complete
    assert scaled_sum.__name__ == "scaled_sum" and scaled_sum.py_func.__name__ == "scaled_sum"
    a = np.arange(4.0)
    # positional, keyword and default arguments, and *args, as Numba's own dispatcher takes them
    assert scaled_sum(a) == 36.0
    assert scaled_sum(a, scale=1.0) == 12.0
    assert total_of(5.0, 7.0) == 12.0
    assert scaled_sum.is_complete and len(scaled_sum.signatures) == 2  # scale omitted, or not
    # the helper was inlined by the kernel's compile, which typed it without calling it
    assert twice.targetoptions["inline"] == "always" and twice(1.5) == 3.0
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        scaled_sum.missing  # noqa: B018


def test_most_kernels_stay_incomplete_after_import(run_code):
    out = run_code("""
        import firefly
        from firefly.kernels import _jit
        print(sum(d.is_complete for d in _jit._dispatchers), len(_jit._dispatchers))
    """)
    complete, made = map(int, out.split())
    assert made > 200 and complete == 0


def test_array_arguments_get_numbas_types_without_importing_numpy_ma(run_code):
    # firefly's dispatchers type an exact ndarray themselves (Numba's typeof imports numpy.ma
    # to rule out a masked array); the types must be those Numba's typeof gives, every other
    # value still goes through Numba, and a masked array is still refused.
    out = run_code("""
        import sys
        import numpy as np
        import numba
        from numba.core.typing.typeof import Purpose
        from firefly.kernels import _cache, _jit

        _cache.cache_enabled = False  # this test's kernel is no user's

        @_jit.kernel
        def first(a):
            return a.flat[0]

        @_jit.kernel
        def first_of_last(arrays):
            return arrays[-1].flat[0]

        x = np.arange(24.0).reshape(2, 3, 4)
        readonly = np.arange(6, dtype=np.int32)
        readonly.flags.writeable = False
        values = [x, x.astype(np.float32), np.asfortranarray(x), x[:, ::2], x.T, readonly,
                  np.zeros((0, 3), np.int64), np.bool_(True)[None], 2.5, 3,
                  (x, x), (x.astype(np.float32), readonly, x.T), (x, 3), ()]
        assert first(x) == 0.0 and first(readonly) == 0 and first(x[:, ::2]) == 0.0
        assert first_of_last((x, x[:, ::2])) == 0.0  # a tuple of arrays (optimizer states)
        assert "numpy.ma" not in sys.modules, "typing an ndarray imported numpy.ma"
        for value in values:
            assert first.typeof_pyval(value) == numba.typeof(value, Purpose.argument), value
        try:  # as Numba's typeof (the C dispatch may still accept it, as Numba's does)
            first.typeof_pyval(np.ma.masked_array(x, mask=x > 3))
        except numba.core.errors.TypingError as exc:
            assert "MaskedArray" in str(exc)
        else:
            raise AssertionError("a masked array was typed")
        print("ok")
    """)
    assert out.strip() == "ok"


def test_data_onnx_utils_and_distributed_are_imported_at_first_use(run_code):
    out = run_code("""
        import sys
        import firefly

        lazy = ("firefly.data", "firefly.utils", "firefly.onnx", "firefly.distributed")
        assert not [m for m in (*lazy, "multiprocessing") if m in sys.modules], sorted(
            m for m in sys.modules if m.startswith(("firefly.", "multiprocessing"))
        )
        assert {"data", "utils", "onnx", "distributed"} <= set(dir(firefly))
        assert firefly.data.DataLoader is sys.modules["firefly.data"].DataLoader
        from firefly import onnx
        from firefly.utils.data import TensorDataset

        namespace = {}
        exec("from firefly import *", namespace)
        assert namespace["distributed"] is sys.modules["firefly.distributed"]
        assert onnx is sys.modules["firefly.onnx"] and TensorDataset is not None
        try:
            firefly.no_such_module
        except AttributeError as exc:
            assert "no_such_module" in str(exc)
        else:
            raise AssertionError("an unknown attribute was found")
        print("ok")
    """)
    assert out.strip() == "ok"


def test_a_called_helper_compiles_once_for_a_constant_and_a_variable(monkeypatch):
    from numba import prange

    from firefly.kernels import _jit

    monkeypatch.setattr(_jit._cache, "cache_enabled", False)  # this test's kernels stay here

    @_jit.called_helper
    def fill_from(start, stop, out):
        for i in range(start, stop):
            out[i] = 2.0 * i

    def fill(out, threads):
        n = out.size
        if threads == 1:
            fill_from(0, n, out)  # a constant start: Literal[int](0) to Numba's typing
            return
        for t in prange(threads):
            fill_from(t * n // threads, (t + 1) * n // threads, out)

    filled = _jit.sized_kernel(fill, threshold=0)
    for threads in (1, 3):
        out = np.zeros(10)
        filled(out, threads)
        np.testing.assert_array_equal(out, 2.0 * np.arange(10))
    (signature,) = fill_from.signatures  # one specialisation, for int64 starts
    assert str(signature[0]) == "int64", signature


def _rows_scaled(x, scale, out):
    """out[o, m, i] = scale[o, 0, i] * x[o, m, i]: the prange inside a plain loop."""
    outer, middle, inner = out.shape
    for o in range(outer):
        for m in prange(middle):
            for i in range(inner):
                out[o, m, i] = scale[o, 0, i] * x[o, m, i]


def _offset_squares(x, out):
    """out[i] = x[i]**2 from index 2 on: a prange with a start."""
    for i in prange(2, out.size):
        out[i] = x[i] * x[i]


def _total_then_scale(x, out):
    """A loop and then work after it, which shares cannot split: it gets two builds."""
    total = 0.0
    for i in prange(x.size):
        total += x[i]
    out[0] = total


@pytest.mark.parametrize("threads", [1, 2])
def test_a_prange_loop_compiles_once_and_runs_in_shares(monkeypatch, threads):
    from firefly.kernels import _jit

    monkeypatch.setattr(_jit._cache, "cache_enabled", False)  # this test's kernels stay here
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("one Numba thread")
    rng = np.random.default_rng(0)
    x, scale = rng.standard_normal((3, 37, 5)), rng.standard_normal((3, 1, 5))
    rows = _jit.sized_kernel(_rows_scaled, threshold=0)
    squares = _jit.sized_kernel(_offset_squares, threshold=0)
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        for run in (rows.serial, rows.parallel, rows):
            out = np.zeros_like(x)
            run(x, scale, out)
            np.testing.assert_array_equal(out, scale * x)
        for run in (squares.serial, squares.parallel):
            out = np.zeros(41)
            run(x.ravel()[:41], out)
            np.testing.assert_array_equal(out[2:], x.ravel()[2:41] ** 2)
            assert not out[:2].any()
    finally:
        numba.set_num_threads(before)
    # the loop as written for the serial run; the share loop and its launcher for the parallel
    # one, none of them a parfor build
    for kernel in (rows, squares):
        builds = kernel.dispatchers()
        assert [b.py_func.__qualname__.rsplit("__", 1)[-1] for b in builds[1:]] == [
            "shares",
            "launch",
        ]
        assert all(len(b.signatures) == 1 and not b.targetoptions["parallel"] for b in builds)


def _checked_roots(x, out):
    for i in prange(x.size):
        if x[i] < 0.0:
            raise ValueError("a negative element")
        out[i] = x[i] ** 0.5


def test_an_error_in_a_share_is_raised_by_the_parallel_run(monkeypatch):
    from firefly.kernels import _jit

    monkeypatch.setattr(_jit._cache, "cache_enabled", False)
    roots = _jit.sized_kernel(_checked_roots, threshold=0)
    x = np.arange(100.0)
    out = np.empty(100)
    roots(x, out)
    np.testing.assert_array_equal(out, np.sqrt(x))
    x[77] = -1.0
    for run in (roots.serial, roots.parallel):
        with pytest.raises(ValueError, match="a negative element"):
            run(x, out)


def test_a_loop_that_shares_cannot_split_gets_a_serial_and_a_parfor_build(monkeypatch):
    from firefly.kernels import _jit

    monkeypatch.setattr(_jit._cache, "cache_enabled", False)
    with pytest.raises(_jit.SharesError, match="_total_then_scale.*last statement"):
        _jit._shared_loop(_total_then_scale)
    total = _jit.sized_kernel(_total_then_scale, threshold=0)
    x = np.arange(1000.0)
    for run in (total.serial, total.parallel):
        out = np.zeros(1)
        run(x, out)
        assert out[0] == x.sum()
    serial, parallel = total.dispatchers()
    assert not serial.targetoptions["parallel"] and parallel.targetoptions["parallel"]


def test_loops_that_cannot_be_shares_are_named_in_the_error():
    from firefly.kernels import _jit

    def two_loops(x, out):
        for i in prange(x.size):
            out[i] = x[i]
        for i in prange(x.size):
            out[i] += 1.0

    def returns_a_value(x, out):
        for i in prange(x.size):
            out[i] = x[i]
        return out

    with pytest.raises(_jit.SharesError, match="two_loops: .*exactly one prange loop.*found 2"):
        _jit._shared_loop(two_loops)
    with pytest.raises(_jit.SharesError, match="returns_a_value: .*must return nothing"):
        _jit._shared_loop(returns_a_value)
    namespace = {"prange": prange}
    exec("def typed_in(x, out):\n    for i in prange(x.size):\n        out[i] = x[i]\n", namespace)
    with pytest.raises(_jit.SharesError, match="typed_in: no source"):
        _jit._shared_loop(namespace["typed_in"])


def _call_at_once(barrier, fresh, a, errors):
    barrier.wait()
    try:
        fresh(a)
    except Exception as exc:  # noqa: BLE001  (reported by the caller's assertion)
        errors.append(exc)


def test_two_threads_calling_a_fresh_kernel_at_once_both_get_its_result():
    """A kernel's dispatcher is completed by its first call; a second thread that asks for one
    of its attributes meanwhile (a user's threads, or a data loader's, running one model)
    waits and then gets it, instead of an AttributeError."""
    import threading

    from firefly.kernels._jit import kernel

    for trial in range(3):

        def add_one(a):
            for i in range(a.size):
                a[i] += 1.0

        add_one.__qualname__ = f"add_one_{trial}"
        fresh, barrier, errors = kernel(add_one), threading.Barrier(2, timeout=30), []
        arrays = [np.zeros(3), np.zeros(3)]
        threads = [
            threading.Thread(target=_call_at_once, args=(barrier, fresh, a, errors)) for a in arrays
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert all((a == 1.0).all() for a in arrays)
