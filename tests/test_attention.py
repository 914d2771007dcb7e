"""F.scaled_dot_product_attention: the fused op against a NumPy float64 reference (forward and
the gradients of its formulas), central differences, torch as an oracle, dropout's
reproducibility and replay under firefly.compile, bad input, and the memory the op holds."""

import tracemalloc
import warnings

import numba
import numpy as np
import pytest
from attention_references import op_reference, reference

import firefly
import firefly.nn.functional as F
from firefly import nn, ops
from firefly.kernels import attention as K
from firefly.kernels._jit import run_shares
from firefly.ops.attention import _blocks, dropout_scales
from firefly.tensor import Tensor
from firefly.testing import check_op, gradcheck

OP = "scaled_dot_product_attention"


# ----------------------------------------------------------------------------- NumPy reference
def sum_to(g, shape):
    """``g`` summed over the dimensions that ``shape`` broadcasts over."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, d in enumerate(shape) if d == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True)


def random_inputs(rng, batch, tq, tk, e, ev, dtype=np.float64):
    q = rng.standard_normal(batch + (tq, e)).astype(dtype)
    k = rng.standard_normal(batch + (tk, e)).astype(dtype)
    v = rng.standard_normal(batch + (tk, ev)).astype(dtype)
    grad = rng.standard_normal(batch + (tq, ev)).astype(dtype)
    return q, k, v, grad


def firefly_run(q, k, v, grad, attn_mask=None, **kwargs):
    leaves = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    mask = attn_mask
    if isinstance(attn_mask, np.ndarray) and attn_mask.dtype.kind == "f":
        mask = Tensor(attn_mask, requires_grad=True)
    out = F.scaled_dot_product_attention(*leaves, attn_mask=mask, **kwargs)
    out.backward(grad)
    grads = [t.grad.numpy() for t in leaves]
    if isinstance(mask, Tensor) and mask.dtype.kind == "f":
        grads.append(mask.grad.numpy())
    return out.numpy(), grads


# name -> (batch, Tq, Tk, E, Ev, mask maker (rng, batch, tq, tk) or None, causal, scale)
CASES = {
    "plain": ((2, 3), 5, 7, 4, 3, None, False, None),
    "causal-square": ((2, 3), 9, 9, 4, 4, None, True, None),
    "causal-more-queries": ((1, 2), 9, 4, 3, 2, None, True, None),
    "causal-more-keys": ((1, 2), 4, 9, 3, 2, None, True, 0.7),
    "bool-padding": (
        (2, 3),
        6,
        8,
        4,
        4,
        lambda r, b, q, k: r.random((b[0], 1, 1, k)) < 0.7,
        False,
        None,
    ),
    "bool-full-rows-masked": (
        (2, 2),
        6,
        5,
        3,
        3,
        lambda r, b, q, k: np.where(np.arange(q)[:, None] % 2 == 0, r.random((q, k)) < 0.6, False),
        False,
        None,
    ),
    "float-per-head": (
        (2, 3),
        5,
        6,
        4,
        3,
        lambda r, b, q, k: r.standard_normal((b[1], q, k)),
        False,
        0.5,
    ),
    "float-per-row": (
        (2, 3),
        5,
        6,
        4,
        3,
        lambda r, b, q, k: r.standard_normal((q, 1)),
        False,
        None,
    ),
    "float-neg-inf": (
        (2,),
        5,
        6,
        4,
        3,
        lambda r, b, q, k: np.where(r.random((q, k)) < 0.4, -np.inf, r.standard_normal((q, k))),
        False,
        None,
    ),
    "three-d": ((3,), 8, 8, 5, 5, None, False, None),
    "two-d": ((), 8, 6, 5, 4, None, False, None),
}


def case_inputs(name, seed=0):
    batch, tq, tk, e, ev, make_mask, causal, scale = CASES[name]
    rng = np.random.default_rng(seed)
    q, k, v, grad = random_inputs(rng, batch, tq, tk, e, ev)
    mask = None if make_mask is None else make_mask(rng, batch, tq, tk)
    return q, k, v, grad, mask, causal, scale


def reference_for(q, k, v, grad, mask, causal, scale):
    bias = mask if mask is not None and mask.dtype.kind == "f" else None
    keep = mask if mask is not None and mask.dtype == np.bool_ else None
    out, (dq, dk, dv, dscores) = reference(q, k, v, bias, keep, causal, scale, grad=grad)
    grads = [dq, dk, dv] + ([sum_to(dscores, bias.shape)] if bias is not None else [])
    return out, grads


# ----------------------------------------------------------------------------- without torch
def test_check_op_battery():
    for seed in range(3):
        assert check_op(OP, reference=op_reference, seed=seed)


@pytest.mark.parametrize("name", list(CASES))
def test_forward_and_gradients_match_numpy(name):
    q, k, v, grad, mask, causal, scale = case_inputs(name)
    out, grads = firefly_run(q, k, v, grad, attn_mask=mask, is_causal=causal, scale=scale)
    expected_out, expected_grads = reference_for(q, k, v, grad, mask, causal, scale)
    np.testing.assert_allclose(out, expected_out, rtol=0, atol=1e-12)
    assert len(grads) == len(expected_grads)
    for got, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("tq,tk", [(1, 1), (1, 300), (300, 1), (129, 257), (300, 300)])
@pytest.mark.parametrize("causal", [False, True])
def test_long_sequences_match_numpy(tq, tk, causal):
    """Lengths across several query and key tiles, where the running maximum and sum carry
    from tile to tile."""
    rng = np.random.default_rng(tq + tk)
    q, k, v, grad = random_inputs(rng, (2,), tq, tk, 8, 6)
    q *= 3.0  # sharp rows: the running maximum changes from tile to tile
    out, grads = firefly_run(q, k, v, grad, is_causal=causal)
    expected_out, expected_grads = reference(q, k, v, causal=causal, grad=grad)
    np.testing.assert_allclose(out, expected_out, rtol=0, atol=1e-11)
    for got, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-11)


def test_fully_masked_rows_give_zeros():
    rng = np.random.default_rng(1)
    q, k, v, grad = random_inputs(rng, (2, 2), 4, 5, 3, 3)
    keep = np.ones((4, 5), dtype=bool)
    keep[1] = False
    bias = np.zeros((4, 5))
    bias[2] = -np.inf
    for mask, row in ((keep, 1), (Tensor(keep, dtype=np.bool_), 1), (bias, 2)):
        out, grads = firefly_run(q, k, v, grad, attn_mask=mask)
        assert all(np.all(np.isfinite(a)) for a in [out] + grads)
        np.testing.assert_array_equal(out[..., row, :], 0.0)
        np.testing.assert_array_equal(grads[0][..., row, :], 0.0)
        assert np.any(out[..., row + 1, :] != 0.0)


@pytest.mark.parametrize("tq,tk,width", [(64, 64, 32), (64, 70, 32), (100, 100, 64)])
def test_causal_tiles_are_square_and_one_tile_splits_in_two(tq, tk, width):
    """A causal mask's key tiles are as wide as its query tiles are tall, and a single 64 x 64
    x 32 tile runs as two of 32, the first half of the rows against the first half of the keys
    alone (with a mask or dropout; without, the transposed tiles below take every key up to
    the diagonal): the results are the reference's."""
    block_q, block_k = _blocks(tq, tk, width, True)
    assert block_q == block_k < max(tq, tk)
    rng = np.random.default_rng(tq * tk)
    q, k, v, grad = random_inputs(rng, (2, 2), tq, tk, width, width)
    q *= 3.0
    out, grads = firefly_run(q, k, v, grad, is_causal=True)
    expected_out, expected_grads = reference(q, k, v, causal=True, grad=grad)
    np.testing.assert_allclose(out, expected_out, rtol=0, atol=1e-11)
    for got, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-11)


@pytest.mark.parametrize(
    "tq,tk,width,causal,blocks",
    [
        (200, 50, 32, False, (64, 50)),  # query tiles against one tile of every key
        (70, 300, 32, False, (64, 128)),  # key tiles: the forward's sums rescaled
        (160, 160, 64, True, (32, 32)),  # causal key tiles up to the diagonal
        (96, 96, 32, True, (64, 96)),  # causal tiles of every key, ending at the diagonal
    ],
)
def test_transposed_tiles_match_numpy(tq, tk, width, causal, blocks):
    """Without mask or dropout the kernels take each key tile's scores transposed (K Q^T), and
    a key tile spans every key while its product stays small: the results are the
    reference's, whichever tiles the shape gets."""
    assert _blocks(tq, tk, width, causal, columnwise=True) == blocks
    rng = np.random.default_rng(tq + tk)
    q, k, v, grad = random_inputs(rng, (2, 2), tq, tk, width, width)
    q *= 3.0
    out, grads = firefly_run(q, k, v, grad, is_causal=causal)
    expected_out, expected_grads = reference(q, k, v, causal=causal, grad=grad)
    np.testing.assert_allclose(out, expected_out, rtol=0, atol=1e-11)
    for got, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-11)


@pytest.mark.parametrize("causal", [False, True])
def test_negative_scale_matches_numpy(causal):
    """A scale of either sign: the forward's transposed tiles need it positive (the largest
    raw score is then the largest scaled one), the backward's do not (the log-sum-exp is
    known), so a negative scale runs the row tiles forward and the transposed ones backward."""
    rng = np.random.default_rng(7)
    q, k, v, grad = random_inputs(rng, (2, 3), 40, 40, 8, 8)
    out, grads = firefly_run(q, k, v, grad, is_causal=causal, scale=-0.6)
    expected_out, expected_grads = reference(q, k, v, causal=causal, scale=-0.6, grad=grad)
    np.testing.assert_allclose(out, expected_out, rtol=0, atol=1e-11)
    for got, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-11)


@pytest.mark.parametrize("causal", [False, True])
def test_key_padding_masks_leave_out_trailing_keys(causal):
    """A keep mask that broadcasts over the rows: the keys after each sequence's last kept one
    are left out of the tiles. Sequences of every key, of keys ending inside the second key
    tile (128 keys each), ending on a tile's edge, with a masked key inside, and of none."""
    rng = np.random.default_rng(4)
    q, k, v, grad = random_inputs(rng, (5, 2), 140, 140, 4, 3)
    keep = np.zeros((5, 1, 1, 140), dtype=bool)
    for b, length in enumerate((140, 131, 128, 60, 0)):
        keep[b, ..., :length] = True
    keep[3, ..., 7] = False
    leaves = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    result = ops.apply(OP, *leaves, np.zeros(()), bool_mask=keep, is_causal=causal)
    result.backward(grad)
    out, grads = result.numpy(), [t.grad.numpy() for t in leaves]
    expected_out, expected_grads = reference_for(q, k, v, grad, keep, causal, None)
    np.testing.assert_allclose(out, expected_out, rtol=0, atol=1e-12)
    for got, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(out[4], 0.0)
    np.testing.assert_array_equal(grads[1][3, :, 60:], 0.0)


def test_gradcheck_with_masks_and_dropout():
    rng = np.random.default_rng(2)
    q, k, v, _ = random_inputs(rng, (2, 2), 5, 4, 3, 2)
    bias = rng.standard_normal((2, 1, 5, 4))
    keep = rng.random((5, 4)) < 0.7
    for attrs in (
        {},
        {"bool_mask": keep, "scale": 0.8},
        {"is_causal": True},
        {"dropout_p": 0.4, "seed": 7, "bool_mask": keep},
    ):
        assert gradcheck(OP, q, k, v, bias, attrs=attrs)


def test_second_order_gradients():
    """create_graph=True goes through the op: the gradient of a gradient penalty."""
    rng = np.random.default_rng(3)
    q, k, v, _ = random_inputs(rng, (2,), 4, 5, 3, 3)

    def penalty(q_, k_, v_):
        leaves = [Tensor(a, requires_grad=True) for a in (q_, k_, v_)]
        out = F.scaled_dot_product_attention(*leaves, is_causal=True)
        (gq,) = firefly.autograd.grad((out * out).sum(), [leaves[0]], create_graph=True)
        return (gq * gq).sum(), leaves

    total, leaves = penalty(q, k, v)
    total.backward()
    eps = 1e-6
    for index in [(0, 1, 2), (1, 3, 0)]:
        shifted = [q.copy(), q.copy()]
        shifted[0][index] += eps
        shifted[1][index] -= eps
        numeric = (penalty(shifted[0], k, v)[0].item() - penalty(shifted[1], k, v)[0].item()) / (
            2 * eps
        )
        assert abs(leaves[0].grad.numpy()[index] - numeric) < 1e-6 * max(1.0, abs(numeric))


def test_float32_stays_float32_and_close():
    rng = np.random.default_rng(4)
    q, k, v, grad = random_inputs(rng, (2, 2), 70, 150, 16, 8, dtype=np.float32)
    out, grads = firefly_run(q, k, v, grad, is_causal=True)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    expected_out, expected_grads = reference(q, k, v, causal=True, grad=grad.astype(np.float64))
    np.testing.assert_allclose(out, expected_out, rtol=1e-4, atol=1e-5)
    for got, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- dropout
def test_dropout_is_reproducible_from_the_seed():
    rng = np.random.default_rng(5)
    q, k, v, _ = random_inputs(rng, (2, 2), 6, 6, 4, 4)

    def run(seed):
        firefly.manual_seed(seed)
        return F.scaled_dot_product_attention(
            Tensor(q), Tensor(k), Tensor(v), dropout_p=0.5
        ).numpy()

    first, again, other = run(0), run(0), run(1)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    plain = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v)).numpy()
    assert not np.allclose(first, plain)


def test_dropout_keeps_the_expectation():
    """Averaged over many masks, dropout's output approaches the output without it (each kept
    probability is scaled by 1 / (1 - p))."""
    rng = np.random.default_rng(6)
    q, k, v, _ = random_inputs(rng, (1,), 4, 16, 4, 3)
    plain = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v)).numpy()
    firefly.manual_seed(0)
    draws = [
        F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), dropout_p=0.3).numpy()
        for _ in range(2000)
    ]
    np.testing.assert_allclose(np.mean(draws, axis=0), plain, atol=0.05)


def test_dropout_mask_is_the_documented_hash():
    """The kernels' mask equals ``dropout_scales`` for the key drawn from the seed: the
    forward and all gradients match the NumPy reference with those factors."""
    rng = np.random.default_rng(7)
    q, k, v, grad = random_inputs(rng, (2, 3), 9, 140, 4, 3)
    leaves = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    out = ops.apply(OP, *leaves, 0.0, dropout_p=0.25, seed=11, is_causal=True)
    out.backward(grad)
    key = np.random.default_rng(11).integers(0, 2**63 - 1, size=1, dtype=np.int64)[0]
    factors = dropout_scales(key, (2, 3, 9, 140), 0.25)
    assert 0.15 < (factors == 0).mean() < 0.35
    expected_out, expected_grads = reference(q, k, v, causal=True, factors=factors, grad=grad)
    np.testing.assert_allclose(out.numpy(), expected_out, rtol=0, atol=1e-12)
    for leaf, expected in zip(leaves, expected_grads):
        np.testing.assert_allclose(leaf.grad.numpy(), expected, rtol=0, atol=1e-12)


def test_dropout_replays_under_compile():
    rng = np.random.default_rng(8)
    params = [nn.Parameter(rng.standard_normal((2, 2, 8, 4))) for _ in range(3)]
    mask = Tensor(rng.random((2, 1, 1, 8)) < 0.8, dtype=np.bool_)
    x = Tensor(np.ones(4))

    def step(x, mask):
        for p in params:
            p.grad = None
        q, k, v = params
        out = F.scaled_dot_product_attention(q * x, k, v, attn_mask=mask, dropout_p=0.3)
        loss = (out * out).sum()
        loss.backward()
        return loss

    firefly.manual_seed(3)
    expected = []
    for _ in range(6):
        expected.append((step(x, mask).item(), [p.grad.numpy().copy() for p in params]))
    compiled = firefly.compile(step)
    firefly.manual_seed(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        got = [
            (compiled(x, mask).item(), [p.grad.numpy().copy() for p in params]) for _ in range(6)
        ]
    assert not caught and compiled.status()["plans"] == 1
    assert len({loss for loss, _ in expected}) == 6  # a new mask every step
    for (loss, grads), (want, want_grads) in zip(got, expected):
        assert loss == want
        for g, w in zip(grads, want_grads):
            np.testing.assert_array_equal(g, w)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "shapes,kwargs,kind,words",
    [
        (((2, 3, 4), (2, 3, 5), (2, 3, 5)), {}, ValueError, "head size"),
        (((2, 3, 4), (3, 3, 4), (3, 3, 4)), {}, ValueError, "batch dimensions"),
        (((2, 3, 4), (2, 5, 4), (2, 6, 4)), {}, ValueError, "same length"),
        (((2, 3, 4), (2, 5, 4, 1), (2, 5, 4)), {}, ValueError, "number of dimensions"),
        (((4,), (4,), (4,)), {}, ValueError, "at least 2"),
        (
            ((2, 3, 4), (2, 5, 4), (2, 5, 4)),
            {"attn_mask": np.ones((4, 5), bool)},
            ValueError,
            "(4, 5)",
        ),
        (
            ((2, 3, 4), (2, 5, 4), (2, 5, 4)),
            {"attn_mask": np.ones((3, 5), np.int64)},
            TypeError,
            "int64",
        ),
        (
            ((2, 3, 4), (2, 5, 4), (2, 5, 4)),
            {"attn_mask": np.ones((3, 5), bool), "is_causal": True},
            ValueError,
            "not both",
        ),
        (((2, 3, 4), (2, 5, 4), (2, 5, 4)), {"dropout_p": 1.5}, ValueError, "dropout_p"),
    ],
)
def test_bad_input_is_named(shapes, kwargs, kind, words):
    arrays = [np.zeros(s) for s in shapes]
    with pytest.raises(kind) as info:
        F.scaled_dot_product_attention(*arrays, **kwargs)
    message = str(info.value)
    assert words in message
    if kind is ValueError and "dropout_p" not in kwargs and "is_causal" not in kwargs:
        assert str(shapes[0]) in message or str(tuple(shapes[0])) in message


# ----------------------------------------------------------------------------- memory
def test_extra_memory_is_linear_in_the_length():
    """At T = 2048, d = 64 the forward allocates its output, the log-sum-exp and per-thread
    tiles, and the backward its three gradients and per-thread tiles: no (T, T) matrix. The
    scores of one head alone would be 16x the size of q."""
    rng = np.random.default_rng(9)
    q, k, v, grad = random_inputs(rng, (1, 2), 2048, 2048, 64, 64, dtype=np.float32)
    leaves = [Tensor(a, requires_grad=True) for a in (q, k, v)]
    # compiled (or loaded from the cache) outside the measurement
    F.scaled_dot_product_attention(*leaves, is_causal=True).backward(grad)
    tracemalloc.start()
    try:
        out = F.scaled_dot_product_attention(*leaves, is_causal=True)
        forward_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out.backward(grad)
        backward_peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    gradients = q.nbytes + k.nbytes + v.nbytes
    assert forward_peak <= 4 * q.nbytes, forward_peak / q.nbytes
    assert backward_peak - gradients <= 4 * q.nbytes, (backward_peak - gradients) / q.nbytes


# ----------------------------------------------------------------------------- torch as oracle
def torch_run(q, k, v, grad, attn_mask=None, **kwargs):
    torch = pytest.importorskip("torch")
    leaves = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
    mask = None
    if attn_mask is not None:
        mask = torch.tensor(attn_mask, requires_grad=attn_mask.dtype.kind == "f")
    out = torch.nn.functional.scaled_dot_product_attention(*leaves, attn_mask=mask, **kwargs)
    out.backward(torch.tensor(grad))
    grads = [t.grad.numpy() for t in leaves]
    if mask is not None and mask.requires_grad:
        grads.append(mask.grad.numpy())
    return out.detach().numpy(), grads


def assert_matches_torch(q, k, v, grad, mask=None, **kwargs):
    out, grads = firefly_run(q, k, v, grad, attn_mask=mask, **kwargs)
    expected_out, expected_grads = torch_run(q, k, v, grad, attn_mask=mask, **kwargs)
    np.testing.assert_allclose(out, expected_out, rtol=0, atol=1e-10)
    assert len(grads) == len(expected_grads)
    for got, expected in zip(grads, expected_grads):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", list(CASES))
def test_cases_match_torch(name):
    q, k, v, grad, mask, causal, scale = case_inputs(name, seed=1)
    assert_matches_torch(q, k, v, grad, mask, is_causal=causal, scale=scale)


@pytest.mark.parametrize("t", [1, 2, 31, 64, 65, 128, 200, 300])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "bool", "float"])
def test_lengths_match_torch(t, mask_kind):
    rng = np.random.default_rng(t)
    tk = max(1, t - t // 3)  # Tq != Tk from 2 on
    q, k, v, grad = random_inputs(rng, (2, 2), t, tk, 16, 8)
    mask, causal = None, mask_kind == "causal"
    if mask_kind == "bool":
        mask = rng.random((2, 1, 1, tk)) < 0.8
        mask[0, 0, 0, 0] = True
    elif mask_kind == "float":
        mask = rng.standard_normal((1, 2, t, tk))
    assert_matches_torch(q, k, v, grad, mask, is_causal=causal, scale=0.3 if t % 2 else None)


# ----------------------------------------------------------------------------- MultiheadAttention
def mha_inputs(rng, shape_of, e, kdim, vdim, tq, tk, self_attention):
    q = rng.standard_normal(shape_of(tq, e))
    if self_attention:
        return q, q, q
    return q, rng.standard_normal(shape_of(tk, kdim)), rng.standard_normal(shape_of(tk, vdim))


MHA_CASES = {
    # name -> constructor kwargs, forward kwargs, (masks: key padding, attn mask kind), flags
    "defaults": ({}, {}, (False, None), {}),
    "batch-first": ({"batch_first": True}, {}, (False, None), {}),
    "kdim-vdim": ({"kdim": 5, "vdim": 7}, {}, (False, None), {}),
    "kdim-vdim-batch-first-fused": (
        {"kdim": 5, "vdim": 7, "batch_first": True},
        {"need_weights": False},
        (True, "bool"),
        {},
    ),
    "fused-masks": ({}, {"need_weights": False}, (True, "bool"), {}),
    "float-mask-per-head-weights": ({}, {"average_attn_weights": False}, (True, "float3"), {}),
    "float-mask-batch-first": ({"batch_first": True}, {}, (False, "float"), {}),
    "no-bias": ({"bias": False}, {}, (True, None), {}),
    "unbatched": ({}, {}, (True, "bool"), {"unbatched": True}),
    "unbatched-fused": ({}, {"need_weights": False}, (False, "float"), {"unbatched": True}),
    "self-causal-fused": (
        {},
        {"need_weights": False, "is_causal": True},
        (False, "causal"),
        {"self": True},
    ),
    "self-causal-weights": (
        {"batch_first": True},
        {"is_causal": True},
        (False, "causal"),
        {"self": True},
    ),
}


def mha_case(name, seed=0):
    """(module kwargs, forward kwargs, inputs, masks) for a case; masks never cover a row."""
    ctor, fwd, (padding, mask_kind), flags = MHA_CASES[name]
    rng = np.random.default_rng(seed)
    e, heads, n, tq = 8, 2, 3, 5
    tk = tq if flags.get("self") else 6
    unbatched, batch_first = flags.get("unbatched", False), ctor.get("batch_first", False)

    def shape_of(t, d):
        return (t, d) if unbatched else ((n, t, d) if batch_first else (t, n, d))

    inputs = mha_inputs(
        rng, shape_of, e, ctor.get("kdim", e), ctor.get("vdim", e), tq, tk, flags.get("self")
    )
    kpm = None
    if padding:
        kpm = rng.random((tk,) if unbatched else (n, tk)) < 0.3
        kpm[..., 0] = False
    attn_mask = {
        None: None,
        "bool": np.hstack([np.zeros((tq, 1), bool), rng.random((tq, tk - 1)) < 0.3]),
        "float": rng.standard_normal((tq, tk)),
        "float3": rng.standard_normal((n * heads, tq, tk)),
        "causal": np.triu(np.ones((tq, tk), bool), 1),
    }[mask_kind]
    return dict(embed_dim=e, num_heads=heads, **ctor), fwd, inputs, kpm, attn_mask


def mha_reference(params, ctor, fwd, inputs, kpm, attn_mask):
    """torch's MultiheadAttention in NumPy float64: projections, per-head attention with the
    masks merged as float biases, the output projection; returns (output, weights or None)."""
    e, heads = ctor["embed_dim"], ctor["num_heads"]
    q, k, v = inputs
    unbatched = q.ndim == 2
    if unbatched:
        q, k, v = q[:, None], k[:, None], v[:, None]
        kpm = None if kpm is None else kpm[None]
    elif ctor.get("batch_first"):
        q, k, v = (np.swapaxes(x, 0, 1) for x in (q, k, v))
    if "in_proj_weight" in params:
        wq, wk, wv = np.split(params["in_proj_weight"], 3)
    else:
        wq, wk, wv = params["q_proj_weight"], params["k_proj_weight"], params["v_proj_weight"]
    bq, bk, bv = np.split(params.get("in_proj_bias", np.zeros(3 * e)), 3)
    d = e // heads

    def heads_of(x, w, b):  # (T, N, features) -> (N, H, T, d)
        y = x @ w.T + b
        return y.reshape(y.shape[0], y.shape[1], heads, d).transpose(1, 2, 0, 3)

    qh, kh, vh = heads_of(q, wq, bq), heads_of(k, wk, bk), heads_of(v, wv, bv)
    n, tq, tk = qh.shape[0], qh.shape[2], kh.shape[2]
    bias = np.zeros((1, 1, tq, tk))
    if attn_mask is not None:
        m = np.where(attn_mask, -np.inf, 0.0) if attn_mask.dtype == bool else attn_mask
        bias = bias + (m.reshape(n, heads, tq, tk) if m.ndim == 3 else m)
    if kpm is not None:
        bias = bias + np.where(kpm, -np.inf, 0.0)[:, None, None, :]
    scores = qh @ np.swapaxes(kh, -1, -2) / np.sqrt(d) + bias
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    out = (weights @ vh).transpose(2, 0, 1, 3).reshape(tq, n, e)
    out = out @ params["out_proj.weight"].T + params.get("out_proj.bias", 0.0)
    if fwd.get("average_attn_weights", True):
        weights = weights.mean(axis=1)
    if unbatched:
        out, weights = out[:, 0], weights[0]
    elif ctor.get("batch_first"):
        out = np.swapaxes(out, 0, 1)
    return out, (weights if fwd.get("need_weights", True) else None)


def firefly_mha(ctor, fwd, inputs, kpm, attn_mask, state, grad):
    module = nn.MultiheadAttention(**ctor, dtype=np.float64)
    module.load_state_dict(state)
    leaves = [Tensor(x, requires_grad=True) for x in inputs[:1]]
    if inputs[1] is inputs[0]:
        tensors = leaves * 3
    else:
        leaves += [Tensor(x, requires_grad=True) for x in inputs[1:]]
        tensors = leaves
    out, weights = module(*tensors, key_padding_mask=kpm, attn_mask=attn_mask, **fwd)
    out.backward(grad)
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    grads.update({f"input{i}": t.grad.numpy() for i, t in enumerate(leaves)})
    return out.numpy(), None if weights is None else weights.numpy(), grads


@pytest.mark.parametrize("name", list(MHA_CASES))
def test_multihead_attention_matches_numpy(name):
    ctor, fwd, inputs, kpm, attn_mask = mha_case(name)
    firefly.manual_seed(0)
    module = nn.MultiheadAttention(**ctor, dtype=np.float64)
    params = {k: np.array(v) for k, v in module.state_dict().items()}
    rng = np.random.default_rng(1)
    for key in params:  # nonzero biases, so that they are exercised
        params[key] = params[key] + 0.1 * rng.standard_normal(params[key].shape)
    expected_out, expected_weights = mha_reference(params, ctor, fwd, inputs, kpm, attn_mask)
    out, weights, _ = firefly_mha(
        ctor, fwd, inputs, kpm, attn_mask, params, np.ones(expected_out.shape)
    )
    np.testing.assert_allclose(out, expected_out, rtol=0, atol=1e-12)
    if expected_weights is None:
        assert weights is None
    else:
        np.testing.assert_allclose(weights, expected_weights, rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
@pytest.mark.parametrize("name", list(MHA_CASES))
def test_multihead_attention_matches_torch(name):
    torch = pytest.importorskip("torch")
    ctor, fwd, inputs, kpm, attn_mask = mha_case(name, seed=2)
    torch.manual_seed(0)
    reference_module = torch.nn.MultiheadAttention(**ctor, dtype=torch.float64)
    with torch.no_grad():  # nonzero biases, so that they are exercised
        for p in reference_module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    state = {k: v.numpy() for k, v in reference_module.state_dict().items()}
    leaves = [torch.tensor(x, requires_grad=True) for x in inputs[:1]]
    if inputs[1] is inputs[0]:
        tensors = leaves * 3
    else:
        leaves += [torch.tensor(x, requires_grad=True) for x in inputs[1:]]
        tensors = leaves
    expected_out, expected_weights = reference_module(
        *tensors,
        key_padding_mask=None if kpm is None else torch.tensor(kpm),
        attn_mask=None if attn_mask is None else torch.tensor(attn_mask),
        **fwd,
    )
    grad = np.random.default_rng(3).standard_normal(tuple(expected_out.shape))
    expected_out.backward(torch.tensor(grad))
    out, weights, grads = firefly_mha(ctor, fwd, inputs, kpm, attn_mask, state, grad)
    np.testing.assert_allclose(out, expected_out.detach().numpy(), rtol=0, atol=1e-9)
    if expected_weights is None:
        assert weights is None
    else:
        np.testing.assert_allclose(weights, expected_weights.detach().numpy(), rtol=0, atol=1e-9)
    expected_grads = {n: p.grad.numpy() for n, p in reference_module.named_parameters()}
    expected_grads.update({f"input{i}": t.grad.numpy() for i, t in enumerate(leaves)})
    assert set(grads) == set(expected_grads)
    for key, g in grads.items():
        np.testing.assert_allclose(g, expected_grads[key], rtol=0, atol=1e-9, err_msg=key)


def test_multihead_attention_parameters_and_init():
    torch = pytest.importorskip("torch")
    for kwargs in ({}, {"kdim": 5, "vdim": 7}, {"bias": False}):
        ours = nn.MultiheadAttention(16, 4, **kwargs)
        theirs = torch.nn.MultiheadAttention(16, 4, **kwargs)
        ours_state, their_state = ours.state_dict(), theirs.state_dict()
        assert list(ours_state) == list(their_state)
        for key in ours_state:
            assert ours_state[key].shape == tuple(their_state[key].shape), key
    firefly.manual_seed(0)
    module = nn.MultiheadAttention(64, 4)
    bound = np.sqrt(6.0 / (64 + 3 * 64))  # Xavier-uniform over the packed (192, 64) weight
    w = module.in_proj_weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    np.testing.assert_array_equal(module.in_proj_bias.numpy(), 0.0)
    np.testing.assert_array_equal(module.out_proj.bias.numpy(), 0.0)
    assert module.in_proj_weight.dtype == np.float32


def test_multihead_attention_dropout_only_in_training():
    firefly.manual_seed(0)
    module = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32))
    module.eval()
    a, _ = module(x, x, x, need_weights=False)
    b, _ = module(x, x, x, need_weights=False)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    module.train()
    c, _ = module(x, x, x, need_weights=False)
    d, w = module(x, x, x)
    assert not np.allclose(a.numpy(), c.numpy())
    assert (w.numpy() == 0).any() or not np.allclose(w.numpy().sum(-1), 1.0)


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda: nn.MultiheadAttention(10, 3), "divisible"),
        (lambda: nn.MultiheadAttention(8, 2, add_bias_kv=True), "add_bias_kv"),
    ],
)
def test_multihead_attention_bad_construction(make, words):
    with pytest.raises((ValueError, NotImplementedError), match=words):
        make()


def test_multihead_attention_bad_input_names_shapes():
    module = nn.MultiheadAttention(8, 2)
    x = np.zeros((5, 3, 8))
    with pytest.raises(ValueError, match=r"\(5, 3, 7\)"):
        module(x, x, np.zeros((5, 3, 7)))
    with pytest.raises(ValueError, match=r"\(4, 6\)"):
        module(x, x, x, attn_mask=np.zeros((4, 6), bool))
    with pytest.raises(ValueError, match=r"\(3, 5\)"):
        module(x, x, x, key_padding_mask=np.zeros((5, 3), bool))
    with pytest.raises(TypeError, match="int64"):
        module(x, x, x, attn_mask=np.zeros((5, 5), np.int64))
    with pytest.raises(ValueError, match="is_causal"):
        module(x, x, x, is_causal=True)


# ------------------------------------------------------------------------- packed_self_attention
PACKED = "packed_self_attention"


def unpacked(qkv, heads, **kwargs):
    """torch's lines that packed_self_attention stands for, in firefly or torch: split qkv,
    heads before rows, attention, heads side by side again."""
    *lead, t, width = qkv.shape
    lead = tuple(lead)
    pieces = [
        p.reshape(lead + (t, heads, width // (3 * heads))).transpose(-3, -2)
        for p in qkv.split(width // 3, dim=-1)
    ]
    out = F.scaled_dot_product_attention(*pieces, **kwargs) if isinstance(qkv, Tensor) else None
    if out is None:
        out = pytest.importorskip("torch").nn.functional.scaled_dot_product_attention(
            *pieces, **kwargs
        )
    return out.transpose(-3, -2).reshape(lead + (t, width // 3))


@pytest.mark.parametrize(
    "shape,heads,kwargs",
    [
        ((2, 9, 3 * 2 * 4), 2, {"is_causal": True}),
        ((3, 65, 3 * 4 * 8), 4, {}),
        ((7, 3 * 3), 3, {"scale": 0.7}),
        ((2, 2, 130, 3 * 2 * 16), 2, {"is_causal": True}),
    ],
)
def test_packed_self_attention_matches_torch(shape, heads, kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(20)
    qkv = rng.standard_normal(shape)
    leaf = Tensor(qkv, requires_grad=True)
    out = F.packed_self_attention(leaf, heads, **kwargs)
    grad = rng.standard_normal(out.shape)
    out.backward(grad)
    t_leaf = torch.tensor(qkv, requires_grad=True)
    t_out = unpacked(t_leaf, heads, **kwargs)
    t_out.backward(torch.tensor(grad))
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=0, atol=1e-10)


def test_packed_self_attention_equals_the_unpacked_ops_with_dropout():
    """With dropout, the packed op draws one key as the unpacked one does: the same generator
    state gives the same output and gradient (the same kernels, reading other layouts)."""
    rng = np.random.default_rng(21)
    qkv = rng.standard_normal((2, 12, 3 * 2 * 4))
    grad = rng.standard_normal((2, 12, 8))
    results = []
    for packed in (True, False):
        firefly.manual_seed(5)
        leaf = Tensor(qkv, requires_grad=True)
        if packed:
            out = F.packed_self_attention(leaf, 2, dropout_p=0.3, is_causal=True)
        else:
            out = unpacked(leaf, 2, dropout_p=0.3, is_causal=True)
        out.backward(grad)
        results.append((out.numpy(), leaf.grad.numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_packed_self_attention_check_op_and_gradients():
    assert check_op(PACKED)
    rng = np.random.default_rng(22)
    qkv = rng.standard_normal((2, 5, 3 * 2 * 3))
    for attrs in ({"num_heads": 2}, {"num_heads": 2, "is_causal": True, "scale": 0.6}):
        assert gradcheck(PACKED, qkv, attrs=attrs)
    # A fixed seed: the finite differences rerun the op and need the same mask.
    assert gradcheck(PACKED, qkv, attrs={"num_heads": 3, "dropout_p": 0.3, "seed": 4})


def test_packed_self_attention_second_order_with_dropout():
    """create_graph=True through the op with dropout: the differentiable backward uses the
    forward's mask, so the gradient of a gradient penalty matches central differences."""
    rng = np.random.default_rng(23)
    qkv = rng.standard_normal((1, 4, 3 * 2 * 2))

    def penalty(x):
        leaf = Tensor(x, requires_grad=True)
        out = ops.apply(PACKED, leaf, num_heads=2, is_causal=True, dropout_p=0.4, seed=9)
        (g,) = firefly.autograd.grad((out * out).sum(), [leaf], create_graph=True)
        return (g * g).sum(), leaf

    total, leaf = penalty(qkv)
    total.backward()
    eps = 1e-6
    for index in [(0, 1, 2), (0, 3, 7), (0, 2, 10)]:
        up, down = qkv.copy(), qkv.copy()
        up[index] += eps
        down[index] -= eps
        numeric = (penalty(up)[0].item() - penalty(down)[0].item()) / (2 * eps)
        assert abs(leaf.grad.numpy()[index] - numeric) < 1e-6 * max(1.0, abs(numeric))


def test_packed_self_attention_replays_under_compile():
    rng = np.random.default_rng(24)
    proj = nn.Linear(8, 24).double()
    x = Tensor(rng.standard_normal((2, 6, 8)))

    def step(x):
        proj.zero_grad()
        loss = (F.packed_self_attention(proj(x), 2, is_causal=True) ** 2).sum()
        loss.backward()
        return loss

    expected = [(step(x).item(), proj.weight.grad.numpy().copy()) for _ in range(3)]
    compiled = firefly.compile(step)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        got = [(compiled(x).item(), proj.weight.grad.numpy().copy()) for _ in range(4)]
    assert not caught and compiled.status()["plans"] == 1
    for loss, grad in got:
        assert loss == expected[0][0]
        np.testing.assert_array_equal(grad, expected[0][1])


@pytest.mark.parametrize(
    "shape,kwargs,kind,words",
    [
        ((4, 10), {"num_heads": 2}, ValueError, "divisible by 3 \\* num_heads = 6"),
        ((12,), {"num_heads": 1}, ValueError, "qkv must be"),
        ((4, 12), {"num_heads": 2.0}, TypeError, "num_heads must be an int"),
        ((4, 12), {"num_heads": 0}, ValueError, "num_heads 0"),
        ((4, 12), {"num_heads": 2, "dropout_p": 1.5}, ValueError, "dropout_p"),
    ],
)
def test_packed_self_attention_bad_input_is_named(shape, kwargs, kind, words):
    with pytest.raises(kind, match=words) as caught:
        F.packed_self_attention(Tensor(np.zeros(shape)), **kwargs)
    assert "packed_self_attention" in str(caught.value)


def _on_one_then_two_shares(monkeypatch, run, limit_blas=False):
    """``run()``'s results with one Numba thread and then two, the attention kernels' slices
    shared out over the threads at any size; checks that the second run's kernels ran as two
    shares, with BLAS limited to one thread around them or not as ``limit_blas`` says."""
    results = []
    before = numba.get_num_threads()
    monkeypatch.setattr(K, "PARALLEL_MIN_ATTENTION", 0)
    shares = []

    def counted(kernel, threads, *args, **options):
        shares.append(threads)
        assert options == {"limit_blas": limit_blas}
        run_shares(kernel, threads, *args, **options)

    monkeypatch.setattr(K, "run_shares", counted)
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            results.append(run())
        finally:
            numba.set_num_threads(before)
    assert shares == [1, 1, 2, 2]  # forward and backward, on one thread and then two
    return results


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two Numba threads")
@pytest.mark.parametrize("lead,heads", [((3,), 1), ((5,), 2), ((2, 3), 3)])
def test_packed_self_attention_shares_split_rows_exactly(monkeypatch, lead, heads):
    """Two shares, each a contiguous run of slices that may end inside a batch element (its
    heads' columns of one row then go to both shares): the same output and gradient bit for bit
    as one share."""
    rng = np.random.default_rng(25)
    qkv = rng.standard_normal(lead + (9, 3 * heads * 4))
    grad = rng.standard_normal(lead + (9, heads * 4))

    def run():
        leaf = Tensor(qkv, requires_grad=True)
        out = F.packed_self_attention(leaf, heads, is_causal=True)
        out.backward(grad)
        return out.numpy(), leaf.grad.numpy()

    results = _on_one_then_two_shares(monkeypatch, run)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two Numba threads")
def test_sdpa_two_shares_match_one(monkeypatch):
    """SDPA's slices over two shares (three slices: runs of one and two) with a bias that
    broadcasts over the heads, whose gradient is summed from per-share parts: one share's
    results (the bias gradient up to the order of that sum)."""
    rng = np.random.default_rng(26)
    q, k, v, grad = random_inputs(rng, (3,), 7, 6, 4, 5)
    bias = rng.standard_normal((1, 7, 6))

    def run():
        leaves = [Tensor(a, requires_grad=True) for a in (q, k, v, bias)]
        out = F.scaled_dot_product_attention(*leaves[:3], attn_mask=leaves[3])
        out.backward(grad)
        return [out.numpy()] + [leaf.grad.numpy() for leaf in leaves]

    results = _on_one_then_two_shares(monkeypatch, run)
    for one, two in zip(results[0][:4], results[1][:4]):
        np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(results[0][4], results[1][4], rtol=0, atol=1e-14)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two Numba threads")
def test_sdpa_wide_heads_limit_blas_around_two_shares(monkeypatch):
    """Heads wider than 256: a tile's products can exceed SINGLE_THREAD_GEMM, which OpenBLAS
    would thread, so the shares run with BLAS limited to one thread; two shares give one
    share's results, and NumPy's. (No causal mask: its square tiles, 16 x 16 here, stay
    below the limit.)"""
    rng = np.random.default_rng(27)
    q, k, v, grad = random_inputs(rng, (2,), 16, 64, 260, 3)

    def run():
        leaves = [Tensor(a, requires_grad=True) for a in (q, k, v)]
        out = F.scaled_dot_product_attention(*leaves)
        out.backward(grad)
        return [out.numpy()] + [leaf.grad.numpy() for leaf in leaves]

    results = _on_one_then_two_shares(monkeypatch, run, limit_blas=True)
    out, (dq, dk, dv, _) = reference(q, k, v, causal=False, grad=grad)
    for one, two, want in zip(results[0], results[1], (out, dq, dk, dv)):
        np.testing.assert_allclose(two, one, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(two, want, rtol=1e-10, atol=1e-10)
