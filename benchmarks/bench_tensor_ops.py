"""The selecting and rearranging Tensor ops of issue 21 beside torch and NumPy, float32, on the
shapes a small GPT touches: the causal mask, top-k sampling, attention scores by einsum, and
the gathers (index_select, sort, roll).

    pytest benchmarks/bench_tensor_ops.py --benchmark-enable --benchmark-columns=min,median

Each firefly row runs the op as users do, through the Tensor API, forward only. Every benchmark
checks its result against NumPy, so that plain test runs execute each once as a correctness
test.
"""

import numpy as np
import pytest

from firefly import Tensor

try:
    import torch
except ImportError:  # torch is an optional comparison
    torch = None

IMPLS = ["firefly", "numpy", "torch"]
RNG = np.random.default_rng(0)
SCORES = RNG.standard_normal((8, 4, 128, 128)).astype(np.float32)  # (batch, heads, T, T)
CAUSAL = np.tril(np.ones((128, 128), bool))
LOGITS = RNG.standard_normal((64, 4096)).astype(np.float32)  # (batch, vocab)
Q = RNG.standard_normal((8, 4, 128, 32)).astype(np.float32)
K = RNG.standard_normal((8, 4, 128, 32)).astype(np.float32)
ROWS = RNG.integers(0, 4096, size=512)


def topk_numpy(x, k):
    part = np.argpartition(-x, k, axis=-1)[:, :k]
    values = np.take_along_axis(x, part, -1)
    return -np.sort(-values, axis=-1)


# name: (firefly, NumPy, torch, inputs)
CASES = {
    "masked_fill causal": (
        lambda x, m: x.masked_fill(~m, float("-inf")),
        lambda x, m: np.where(m, x, np.float32(-np.inf)),
        lambda x, m: x.masked_fill(~m, float("-inf")),
        (SCORES, CAUSAL),
    ),
    "tril": (lambda x: x.tril(), np.tril, lambda x: x.tril(), (SCORES,)),
    "topk k=50": (
        lambda x: x.topk(50).values,
        lambda x: topk_numpy(x, 50),
        lambda x: x.topk(50).values,
        (LOGITS,),
    ),
    "sort": (
        lambda x: x.sort(-1).values,
        lambda x: np.sort(x, -1),
        lambda x: x.sort(-1).values,
        (LOGITS,),
    ),
    "einsum attention scores": (
        lambda q, k: firefly_einsum("bhqd,bhkd->bhqk", q, k),
        lambda q, k: np.matmul(q, np.swapaxes(k, -1, -2)),
        lambda q, k: torch.einsum("bhqd,bhkd->bhqk", q, k),
        (Q, K),
    ),
    "index_select rows": (
        lambda x, i: x.index_select(1, i),
        lambda x, i: np.take(x, i, axis=1),
        lambda x, i: x.index_select(1, i),
        (LOGITS, ROWS),
    ),
    "roll": (
        lambda x: x.roll(3, -1),
        lambda x: np.roll(x, 3, -1),
        lambda x: x.roll(3, -1),
        (LOGITS,),
    ),
}


def firefly_einsum(equation, *operands):
    import firefly

    return firefly.einsum(equation, *operands)


def as_numpy(result):
    if isinstance(result, Tensor):
        return result.numpy()
    if torch is not None and isinstance(result, torch.Tensor):
        return result.numpy()
    return np.asarray(result)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_tensor_op_forward(benchmark, name, impl):
    if impl == "torch" and torch is None:
        pytest.skip("needs torch for the comparison: pip install torch==2.13.0")
    ours, numpy_fn, torch_fn, arrays = CASES[name]
    if impl == "firefly":
        args = [
            Tensor(a) if a.dtype.kind == "f" or a.dtype == bool else Tensor(a, dtype="int64")
            for a in arrays
        ]
        fn = lambda: ours(*args)  # noqa: E731
    elif impl == "numpy":
        fn = lambda: numpy_fn(*arrays)  # noqa: E731
    else:
        args = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        fn = lambda: torch_fn(*args)  # noqa: E731
    benchmark.group = name
    fn()
    np.testing.assert_allclose(as_numpy(benchmark(fn)), numpy_fn(*arrays), rtol=1e-5, atol=1e-5)
