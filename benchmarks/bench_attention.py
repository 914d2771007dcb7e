"""Scaled dot-product attention, forward plus backward in float32, firefly's fused op beside
torch's ``F.scaled_dot_product_attention`` on the CPU, at one thread and at the default count:

- (12, 4, 64, 32) causal: a char-GPT block's heads (batch 12, 4 heads, context 64);
- (8, 8, 256, 64) with a key padding mask (the last 56 keys of every sequence masked);
- char_gpt's attention as it runs there, causal, forward alone and forward plus backward:
  ``F.packed_self_attention`` on the (12, 64, 384) projection with 4 heads ("firefly"), beside
  firefly's SDPA on contiguous (12, 4, 64, 32) heads ("firefly-sdpa"), torch's SDPA on the
  same contiguous heads ("torch-sdpa") and nanoGPT's torch path ("torch": split, view,
  transpose, SDPA, transpose back, contiguous). Ratios are to "torch".

    pytest benchmarks/bench_attention.py --benchmark-enable -s

Before timing, each case checks that firefly and torch agree on the output and the
gradients. Module teardown prints firefly/torch ratios (min and median) per case and thread
count (``-s`` shows it). Plain test runs (``--benchmark-disable``) run each timed call once.
"""

import numba
import numpy as np
import pytest

import firefly.nn.functional as F
from firefly.kernels._blas import preload_scipy_blas
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
    preload_scipy_blas()  # loaded, so that the limit reaches the BLAS that Numba's np.dot calls
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


# char_gpt's attention: batch, context, channels, heads.
PACKED = (12, 64, 128, 4)
PACKED_IMPLEMENTATIONS = ["firefly", "firefly-sdpa", "torch", "torch-sdpa"]


def packed_pass(implementation, backward):
    """One causal self-attention forward (and backward) at char_gpt's shape; returns the
    output (batch, context, channels) and, with ``backward``, the projection's gradient."""
    batch, t, c, heads = PACKED
    rng = np.random.default_rng(1)
    qkv = rng.standard_normal((batch, t, 3 * c)).astype(np.float32)
    grad = rng.standard_normal((batch, t, c)).astype(np.float32)
    lib = torch if implementation.startswith("torch") else None
    if lib is None:
        x, g = Tensor(qkv, requires_grad=backward), Tensor(grad)
    else:
        x, g = torch.tensor(qkv, requires_grad=backward), torch.tensor(grad)

    def split_heads(y):
        return y.reshape(batch, t, heads, c // heads).swapaxes(1, 2)

    # The "-sdpa" variants run attention on contiguous heads made outside the timed call.
    make = Tensor if lib is None else torch.tensor
    heads_of = [
        make(np.ascontiguousarray(split_heads(piece)), requires_grad=backward)
        for piece in np.split(qkv, 3, axis=-1)
    ]
    grad_heads = make(np.ascontiguousarray(split_heads(grad)))

    def run():
        if implementation == "firefly":
            x.grad = None
            out = F.packed_self_attention(x, heads, is_causal=True)
            upstream, leaves = g, [x]
        elif implementation == "torch":
            x.grad = None
            q, k, v = (split_heads(piece) for piece in x.split(c, dim=-1))
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            out = out.transpose(1, 2).contiguous().view(batch, t, c)
            upstream, leaves = g, [x]
        else:
            for h in heads_of:
                h.grad = None
            sdpa = (
                F.scaled_dot_product_attention
                if lib is None
                else lib.nn.functional.scaled_dot_product_attention
            )
            out = sdpa(*heads_of, is_causal=True)
            upstream, leaves = grad_heads, heads_of
        if backward:
            out.backward(upstream)
        if len(leaves) == 1:
            return [out.detach().numpy()] + ([leaves[0].grad.numpy()] if backward else [])

        def merge(heads_array):  # (batch, heads, t, d) back to the projection's layout
            return heads_array.transpose(0, 2, 1, 3).reshape(batch, t, c)

        if not backward:
            return [merge(out.detach().numpy())]
        grads = [merge(h.grad.numpy()) for h in leaves]
        return [merge(out.detach().numpy()), np.concatenate(grads, axis=-1)]

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


@pytest.mark.parametrize("implementation", PACKED_IMPLEMENTATIONS)
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_packed_self_attention(benchmark, table, threads, backward, implementation):
    group = f"packed-12x64x384-causal-{'fwd+bwd' if backward else 'fwd'}-{threads}thread"
    benchmark.group = group
    timed = packed_pass(implementation, backward)
    reference = packed_pass("torch", backward)()
    for mine, want in zip(timed(), reference):
        np.testing.assert_allclose(mine, want, rtol=1e-3, atol=1e-3)
    benchmark(timed)
    _record(benchmark, (group, implementation))


@pytest.fixture(scope="module")
def table():
    """After the module: firefly/torch time ratios (min, median) per case and thread count."""
    yield
    if not _timings:
        return
    lines = [f"{'group':40} {'implementation':14} {'ms min':>8} {'/torch min':>10} {'median':>6}"]
    groups = dict.fromkeys(group for group, _ in _timings)
    for group in groups:
        theirs = _timings.get((group, "torch"))
        for (where, implementation), ours in _timings.items():
            if where != group:
                continue
            ratio = (
                ""
                if theirs is None
                else f"{ours[0] / theirs[0]:>10.2f} {ours[1] / theirs[1]:>6.2f}"
            )
            lines.append(f"{group:40} {implementation:14} {ours[0] * 1e3:>8.3f} {ratio}")
    print("\n" + "\n".join(lines))
