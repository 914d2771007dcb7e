"""firefly.kernels.cblas: the kernels' gemm against NumPy's matmul, for every operand layout it
takes (rows contiguous, transposed views, neither), accumulation, empty dimensions, and the
NumPy fallback that runs when NumPy has no CBLAS of its own (in a subprocess, which binds it)."""

import json

import numba
import numpy as np
import pytest

from firefly.kernels import cblas
from firefly.kernels._jit import kernel


# A firefly kernel, not a plain njit: it then comes from the kernel cache on later runs, and its
# stamp follows cblas.py (numba.njit's cache would not see an edit of cblas.py and could run a
# stale gemm).
@kernel
def _gemm_kernel(a, b, out, beta):
    cblas.gemm(a, b, out, beta)


@pytest.fixture(scope="module")
def any_layout_gemm():
    """``_gemm_kernel`` compiled once per dtype, for operands of any layout ('A'), and then no
    more: every call converts its operands to that signature. gemm reads the strides at run
    time, so the layouts below take all of its paths through these two compiles (compiled for
    each layout, the file made 18: 2 dtypes x 3 x 3, most of its time on an empty cache). The
    kernels that call gemm compile it for their own layouts, and their tests check those. Set up
    again in the same process (pytest-xdist may send a worker back to this file), it finds the
    compiles done."""
    if _gemm_kernel._can_compile:
        for dtype in (numba.float32, numba.float64):
            operand = numba.types.Array(dtype, 2, "A")
            signature = (operand, operand, numba.types.Array(dtype, 2, "C"), numba.float64)
            _gemm_kernel.compile(signature)
        _gemm_kernel.disable_compile()
    return _gemm_kernel


def _layouts(matrix):
    """The matrix as rows, as the transpose of a contiguous array, and with neither its rows nor
    its columns contiguous."""
    spaced = np.zeros((2 * matrix.shape[0], 2 * matrix.shape[1]), matrix.dtype)
    spaced[::2, ::2] = matrix
    return {
        "rows": np.ascontiguousarray(matrix),
        "transposed": np.ascontiguousarray(matrix.T).T,
        "strided": spaced[::2, ::2],
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 4, 5), (1, 4, 5), (3, 1, 5), (3, 4, 1), (20, 7, 33)])
@pytest.mark.parametrize("beta", [0.0, 1.0, -0.5])
def test_gemm_matches_numpy(any_layout_gemm, dtype, shape, beta):
    m, k, n = shape
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    start = rng.standard_normal((m, n)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for a_name, left in _layouts(a).items():
        for b_name, right in _layouts(b).items():
            out = start.copy()
            any_layout_gemm(left, right, out, beta)
            expected = a.astype(np.float64) @ b + beta * start
            np.testing.assert_allclose(out, expected, rtol=tol, atol=tol, err_msg=a_name + b_name)


def test_gemm_overwrites_with_beta_zero(any_layout_gemm):
    """beta 0 ignores what ``out`` held, NaN included, as BLAS does."""
    a, b = np.ones((2, 3)), np.ones((3, 4))
    out = np.full((2, 4), np.nan)
    any_layout_gemm(a, b, out, 0.0)
    np.testing.assert_array_equal(out, np.full((2, 4), 3.0))


@pytest.mark.parametrize("shape", [(0, 3, 2), (2, 3, 0), (2, 0, 3)])
def test_gemm_empty_dimensions(any_layout_gemm, shape):
    m, k, n = shape
    out = np.full((m, n), 2.0)
    any_layout_gemm(np.ones((m, k)), np.ones((k, n)), out, 0.5)
    np.testing.assert_array_equal(out, np.full((m, n), 1.0))  # k = 0: out is only scaled


def test_numpy_blas_is_bound_where_numpy_has_one(any_layout_gemm):
    """NumPy's wheels ship an ILP64 OpenBLAS with the CBLAS interface; where it is found the
    kernels use it, and the fallback has not run."""
    if cblas._numpy_cblas(np.float64) is None:
        pytest.skip("this NumPy's BLAS has no ILP64 CBLAS; the fallback test covers it")
    assert cblas.numpy_blas_bound
    any_layout_gemm(np.ones((2, 2)), np.ones((2, 2)), np.empty((2, 2)), 0.0)
    assert cblas.fallback_calls == [0]


LSTM_RUN = """
import numpy as np
from firefly import ops
from firefly.tensor import Tensor

def lstm_run():
    \"\"\"An LSTM layer's output and the gradients of all its inputs, in float64.\"\"\"
    arrays, _ = ops.get("lstm_layer").sample_inputs(np.random.default_rng(0), (3, 2), np.float64)
    inputs = [Tensor(a, requires_grad=True) for a in arrays]
    out = ops.apply("lstm_layer", *inputs, lengths=None, reverse=False)
    weights = np.linspace(-1.0, 1.0, out.numel()).reshape(out.shape)
    (out * Tensor(weights)).sum().backward()
    return {"out": out.numpy().tolist(), "grads": [t.grad.numpy().tolist() for t in inputs]}
"""

FALLBACK_SCRIPT = (
    """
import json
from firefly.kernels import cblas
assert not cblas.bind(use_numpy_blas=False)
"""
    + LSTM_RUN
    + """
result = lstm_run()
print(json.dumps(dict(result, calls=cblas.fallback_calls[0])))
"""
)


def test_fallback_matches_numpy_blas(run_python):
    """A process that binds the NumPy fallback gets the LSTM layer's output and gradients that
    this process gets, and the fallback did the products."""
    child = run_python("-c", FALLBACK_SCRIPT)
    assert child.returncode == 0, child.stderr
    theirs = json.loads(child.stdout.strip().splitlines()[-1])
    assert theirs["calls"] > 0
    namespace = {}
    exec(LSTM_RUN, namespace)
    ours = namespace["lstm_run"]()
    np.testing.assert_allclose(theirs["out"], ours["out"], rtol=1e-12, atol=1e-12)
    for their_grad, our_grad in zip(theirs["grads"], ours["grads"], strict=True):
        np.testing.assert_allclose(their_grad, our_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_recurrent_kernels_agree_across_blas_thread_counts(kind):
    """The kernels pass gemm temporaries (the transposed weights' copy) and arrays at their last
    use; BLAS must read them before Numba frees them. Freed early, their memory was reused while
    a two-threaded BLAS still read it, and the GRU's outputs changed with the thread count."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from firefly.kernels import recurrent

    steps, batch, size, gates = 35, 20, 200, {"gru": 3, "lstm": 4}[kind]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps * batch, size)).astype(np.float32)
    h0 = rng.uniform(-1.0, 1.0, (batch, size)).astype(np.float32)
    w_ih, w_hh = (rng.uniform(-0.07, 0.07, (gates * size, size)).astype(np.float32) for _ in "12")
    b_ih, b_hh = (rng.uniform(-0.07, 0.07, gates * size).astype(np.float32) for _ in "12")
    lengths = np.full(batch, steps, np.int64)
    states = (h0, h0.copy()) if kind == "lstm" else (h0,)
    results = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            out = np.empty((steps + len(states), batch, size), np.float32)
            saved = [np.empty((steps, batch, 4 * size), np.float32)]
            if kind == "lstm":
                saved.append(np.empty((steps, batch, size), np.float32))
            forward = getattr(recurrent, f"{kind}_forward")
            forward(x, *states, w_ih, w_hh, b_ih, b_hh, lengths, False, out, *saved)
            grads = [np.empty_like(a) for a in (x, *states, w_ih, w_hh, b_ih)]
            if kind == "gru":
                grads.append(np.empty_like(b_hh))
            backward = getattr(recurrent, f"{kind}_backward")
            backward(np.ones_like(out), x, *states, w_ih, w_hh, lengths, False, out, *saved, *grads)
            results.append([out, *grads])
    for one_thread, two_threads in zip(*results, strict=True):
        np.testing.assert_allclose(two_threads, one_thread, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(384, 128), (7, 33), (1, 5), (0, 4)])
def test_transpose_into_is_the_transpose(dtype, shape):
    source = np.random.default_rng(0).normal(size=shape).astype(dtype)
    target = np.full(shape[::-1], np.nan, dtype)
    cblas.transpose_into(source, target)
    np.testing.assert_array_equal(target, source.T)


def test_transpose_into_copies_views_too_and_refuses_a_target_that_does_not_fit():
    source = np.arange(48, dtype=np.float32).reshape(6, 8)[:, ::2]  # not contiguous
    target = np.empty((4, 6), np.float32)
    cblas.transpose_into(source, target)
    np.testing.assert_array_equal(target, source.T)
    with pytest.raises(ValueError, match=r"transpose_into: target \(6, 4\) float32"):
        cblas.transpose_into(source, np.empty((6, 4), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        cblas.transpose_into(source, np.empty((4, 6), np.float64))
