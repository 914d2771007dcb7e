"""Scaled dot-product attention, forward plus backward in float32, firefly's fused op beside
torch's ``F.scaled_dot_product_attention`` on the CPU, at one thread and at the default count:

- (12, 4, 64, 32) causal: a char-GPT block's heads (batch 12, 4 heads, context 64);
- (8, 8, 256, 64) with a key padding mask (the last 56 keys of every sequence masked).

    pytest benchmarks/bench_attention.py --benchmark-enable -s

Before timing, each case checks that firefly and torch agree on the output and the three
gradients. Module teardown prints firefly/torch ratios (min and median) per case and thread
count (``-s`` shows it). Plain test runs (``--benchmark-disable``) run each timed call once.
"""

import numba
import numpy as np
import pytest

import firefly.nn.functional as F
from firefly.tensor import Tensor

torch = pytest.importorskip("torch")

# name -> (q/k/v shape, causal, masked keys at the end of each sequence)
CASES = {
    "12x4x64x32-causal": ((12, 4, 64, 32), True, 0),
    "8x8x256x64-padding": ((8, 8, 256, 64), False, 56),
}
THREADS = sorted({1, numba.config.NUMBA_NUM_THREADS})
_timings = {}  # (group, implementation) -> (min, median) seconds


@pytest.fixture(params=THREADS, ids=lambda t: f"{t}thread")
def threads(request):
    """Numba, both BLAS libraries and torch limited to ``request.param`` threads."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(request.param)
    torch.set_num_threads(request.param)
    with threadpoolctl.threadpool_limits(request.param, user_api="blas"):
        yield request.param
    numba.set_num_threads(before[0])
    torch.set_num_threads(before[1])


def attention_pass(name, implementation):
    """One forward plus backward; returns the output and the three gradients as arrays."""
    shape, causal, padding = CASES[name]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape).astype(np.float32) for _ in range(3)]
    mask = None
    if padding:
        mask = np.ones((shape[0], 1, 1, shape[2]), dtype=bool)
        mask[..., shape[2] - padding :] = False
    grad = np.ones(shape, dtype=np.float32)
    if implementation == "torch":
        leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
        torch_mask = None if mask is None else torch.tensor(mask)
        torch_grad = torch.tensor(grad)

        def run():
            for t in leaves:
                t.grad = None
            out = torch.nn.functional.scaled_dot_product_attention(
                *leaves, attn_mask=torch_mask, is_causal=causal
            )
            out.backward(torch_grad)
            return [out.detach().numpy()] + [t.grad.numpy() for t in leaves]

        return run
    leaves = [Tensor(a, requires_grad=True) for a in arrays]

    def run():
        for t in leaves:
            t.grad = None
        out = F.scaled_dot_product_attention(*leaves, attn_mask=mask, is_causal=causal)
        out.backward(grad)
        return [out.numpy()] + [t.grad.numpy() for t in leaves]

    return run


def _record(benchmark, key):
    if benchmark.stats is not None:  # None when benchmarks are disabled
        _timings[key] = (benchmark.stats.stats.min, benchmark.stats.stats.median)


@pytest.mark.parametrize("implementation", ["firefly", "torch"])
@pytest.mark.parametrize("name", list(CASES))
def test_attention_forward_backward(benchmark, table, threads, name, implementation):
    group = f"sdpa-{name}-fwd+bwd-{threads}thread"
    benchmark.group = group
    ours, theirs = attention_pass(name, "firefly"), attention_pass(name, "torch")
    for mine, reference in zip(ours(), theirs()):
        np.testing.assert_allclose(mine, reference, rtol=1e-3, atol=1e-3)
    benchmark(ours if implementation == "firefly" else theirs)
    _record(benchmark, (group, implementation))


@pytest.fixture(scope="module")
def table():
    """After the module: firefly/torch time ratios (min, median) per case and thread count."""
    yield
    if not _timings:
        return
    lines = [
        f"{'case':22} {'thr':>3} {'firefly ms':>10} {'torch ms':>9} {'ratio min':>9} {'median':>6}"
    ]
    for threads in THREADS:
        for name in CASES:
            group = f"sdpa-{name}-fwd+bwd-{threads}thread"
            ours, theirs = _timings.get((group, "firefly")), _timings.get((group, "torch"))
            if ours is None or theirs is None:
                continue
            lines.append(
                f"{name:22} {threads:>3} {ours[0] * 1e3:>10.3f} {theirs[0] * 1e3:>9.3f} "
                f"{ours[0] / theirs[0]:>9.2f} {ours[1] / theirs[1]:>6.2f}"
            )
    print("\n" + "\n".join(lines))
