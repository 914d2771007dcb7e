"""Recurrent layers, forward plus backward in float32, firefly beside PyTorch eager on the CPU,
at the sizes of torch's word-language-model example: 2 layers of 200, input 200, 35 steps,
batch 20 (``nn.LSTM``, ``nn.GRU`` and ``nn.RNN``), at the default thread count and at one thread.

    pytest benchmarks/bench_recurrent.py --benchmark-enable

Before timing, each case checks that firefly and torch, loaded with the same state_dict, agree
on the output and the input's gradient. After the module, a table gives each case's
firefly/torch ratio (min and median). Plain test runs (``--benchmark-disable``) run each timed
call once.
"""

import numba
import numpy as np
import pytest

from firefly import nn
from firefly.tensor import Tensor

torch = pytest.importorskip("torch")

STEPS, BATCH, INPUT, HIDDEN, LAYERS = 35, 20, 200, 200, 2
KINDS = ("LSTM", "GRU", "RNN")
THREADS = sorted({1, numba.config.NUMBA_NUM_THREADS})
_timings = {}  # (group, implementation) -> (min, median) seconds


@pytest.fixture(params=THREADS, ids=lambda t: f"{t}thread")
def threads(request):
    """Numba, both BLAS libraries and torch limited to ``request.param`` threads."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    # SciPy's BLAS (Numba's np.dot) loads on the first kernel that uses it; loaded now, so that
    # the limit below covers it too and not only NumPy's.
    pytest.importorskip("scipy.linalg.cython_blas")
    before = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(request.param)
    torch.set_num_threads(request.param)
    with threadpoolctl.threadpool_limits(request.param, user_api="blas"):
        yield request.param
    numba.set_num_threads(before[0])
    torch.set_num_threads(before[1])


def training_pass(kind, implementation):
    """A function running forward and backward (the output's sum) from a fixed input; both
    libraries' layers hold the same weights (torch's default init, seed 0)."""
    torch.manual_seed(0)
    reference = getattr(torch.nn, kind)(INPUT, HIDDEN, LAYERS)
    x = np.random.default_rng(0).standard_normal((STEPS, BATCH, INPUT)).astype(np.float32)
    if implementation == "torch":
        leaf = torch.tensor(x, requires_grad=True)
        layer = reference
    else:
        leaf = Tensor(x, requires_grad=True)
        layer = getattr(nn, kind)(INPUT, HIDDEN, LAYERS)
        layer.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})
    params = list(layer.parameters())

    def run():
        leaf.grad = None
        for p in params:
            p.grad = None
        out, _ = layer(leaf)
        out.sum().backward()
        return out, leaf.grad

    return run


def _record(benchmark, key):
    if benchmark.stats is not None:  # None when benchmarks are disabled
        _timings[key] = (benchmark.stats.stats.min, benchmark.stats.stats.median)


@pytest.mark.parametrize("implementation", ["firefly", "torch"])
@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_forward_backward(benchmark, table, threads, kind, implementation):
    group = f"{kind}-{LAYERS}x{HIDDEN}-T{STEPS}-B{BATCH}-fwd+bwd-{threads}thread"
    benchmark.group = group
    ours, theirs = training_pass(kind, "firefly"), training_pass(kind, "torch")
    (out, grad), (t_out, t_grad) = ours(), theirs()
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grad.numpy(), t_grad.numpy(), rtol=1e-3, atol=1e-4)
    benchmark(ours if implementation == "firefly" else theirs)
    _record(benchmark, (group, implementation))


@pytest.fixture(scope="module")
def table():
    """After the module: each case's firefly and torch times and their ratio."""
    yield
    if not _timings:
        return
    lines = [f"{'case':44} {'firefly ms':>10} {'torch ms':>9} {'ratio min':>9} {'median':>6}"]
    for threads in THREADS:
        for kind in KINDS:
            group = f"{kind}-{LAYERS}x{HIDDEN}-T{STEPS}-B{BATCH}-fwd+bwd-{threads}thread"
            ours, theirs = _timings.get((group, "firefly")), _timings.get((group, "torch"))
            if ours is None or theirs is None:
                continue
            lines.append(
                f"{group:44} {ours[0] * 1e3:>10.2f} {theirs[0] * 1e3:>9.2f} "
                f"{ours[0] / theirs[0]:>9.2f} {ours[1] / theirs[1]:>6.2f}"
            )
    print("\n" + "\n".join(lines))
