"""``scaled_dot_product_attention``: softmax(q k^T * scale + mask) v as one fused op, with
tiled flash-style kernels (``firefly.kernels.attention``) that never hold a (Tq, Tk) matrix."""

import math
import numbers

import numpy as np

from firefly import random
from firefly.kernels import attention as K
from firefly.kernels._jit import thread_count
from firefly.kernels.linalg import SINGLE_THREAD_GEMM
from firefly.ops import samples
from firefly.ops.base import Op
from firefly.ops.families import select, sum_to_shape
from firefly.ops.registry import register

# Tiles: GEMMs of at most SINGLE_THREAD_GEMM multiply-adds, which OpenBLAS runs on one thread
# (each thread runs a share) near its peak rate (about 110 GFLOP/s here at 64 x 64 x 64 and
# 32 x 128 x 64 alike). Key tiles of 128 columns for heads up to 64 wide: the row passes'
# fixed cost per row is spread over more columns (the forward at (8, 8, 256, 64) took 8% less
# process time than with 64 x 64 tiles; the backward the same).
MAX_BLOCK = 128
MIN_BLOCK_Q = 16


def _blocks(tq, tk, width, causal, columnwise=False):
    """(block_q, block_k), the tiles' rows and key columns. A causal mask skips the key tiles
    after the diagonal, whole tiles only: its key tiles are as wide as its query tiles are tall
    (wider ones computed and then masked keys past the diagonal: at (8, 8, 256, 64) 32 x 128
    tiles took 1.14x the time of 32 x 32), and a single tile of at least 64 x 64 x 32
    multiply-adds is split in two, whose first half of the rows needs only the first half of
    the keys: three quarters of the products (char_gpt's 64 x 64 x 32: 0.96x the time; smaller
    tiles gained nothing, 48 x 48 x 32 as 24 x 24 took 1.1x). docs/performance.md, "The
    char_gpt step under firefly.compile, session 33", has the table.

    ``columnwise`` (no mask, no dropout: the kernels' transposed tiles, which end at the last
    key a query tile attends rather than at a whole key tile) takes every key in one tile
    when that tile's product stays within SINGLE_THREAD_GEMM: one product and one pass per
    query tile where there were several, and the forward no longer rescales its running
    sums (char_gpt's 32-row query tiles against 32 or 64 keys)."""
    block_k = MAX_BLOCK if width <= 64 else MAX_BLOCK // 2
    block_q = min(MAX_BLOCK, max(MIN_BLOCK_Q, SINGLE_THREAD_GEMM // (block_k * max(width, 1))))
    block_q, block_k = max(1, min(tq, block_q)), max(1, min(tk, block_k))
    if causal:
        block_q = block_k = min(block_q, block_k)
        if block_q >= tq and block_k >= tk and tq * tk * width >= SINGLE_THREAD_GEMM // 2:
            block_q = block_k = (max(tq, tk) + 1) // 2
    if columnwise and block_q * tk * width <= SINGLE_THREAD_GEMM:
        block_k = max(1, tk)
    return block_q, block_k


def _mask_layout(ctx, what, mask, batch, tq, tk, arrays):
    """``mask`` as a 3-D array (slices, rows, columns) and the per-batch-dimension strides
    (0 where it broadcasts) that find a slice's mask; a ValueError naming the shapes unless it
    broadcasts to ``batch + (tq, tk)``."""
    target = batch + (tq, tk)
    if mask.ndim > len(target) or any(
        m not in (1, t) for m, t in zip(mask.shape[::-1], target[::-1])
    ):
        raise ctx.error(
            f"{what} of shape {mask.shape} does not broadcast to the attention scores' shape "
            f"{target} (batch + (query length, key length))",
            *arrays,
        )
    full = (1,) * (len(target) - mask.ndim) + mask.shape
    strides, step = [], 1
    for size in reversed(full[:-2]):
        strides.append(step if size > 1 else 0)
        step *= size
    layout = np.ascontiguousarray(mask).reshape((step,) + full[-2:])
    return layout, _index_array(reversed(strides))


def _index_array(values):
    """A batch shape or mask strides as the kernels take them: an int64 array (at least one
    entry) rather than a tuple, whose type would carry its length and so compile the kernels
    once per number of batch dimensions."""
    array = np.array(list(values), dtype=np.int64)
    return array if array.size else np.zeros(1, dtype=np.int64)


def _check_probability(op, p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout_p must be a probability in [0, 1], got {p!r}")
    return float(p)


def _dropout_key(dropout_p, seed):
    """The key the kernels draw the dropout mask from: from firefly's generator (or ``seed``)
    when there is dropout, else zero."""
    if dropout_p == 0.0:
        return np.zeros(1, dtype=np.int64)
    source = random.generator() if seed is None else np.random.default_rng(seed)
    return source.integers(0, 2**63 - 1, size=1, dtype=np.int64)


def dropout_scales(key, shape, dropout_p):
    """The factor dropout multiplies each probability by, for scores of ``shape`` (batch +
    (Tq, Tk)): 1 / (1 - p) where kept, 0 where dropped; the kernels' mask for ``key``."""
    counters = np.arange(math.prod(shape), dtype=np.uint64).reshape(shape)
    kept = K.dropout_uniform(np.uint64(key), counters) >= dropout_p
    return np.where(kept, 1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0, 0.0)


def _shares(slices, queries, out):
    """How many shares (``run_shares``) an attention kernel deals its slices out in: one per
    Numba thread, each with slices to do; one below ``PARALLEL_MIN_ATTENTION`` elements of
    the queries' array and of the output. The kernels' scratch has a row per share."""
    if max(queries.size, out.size) < K.PARALLEL_MIN_ATTENTION:
        return 1
    return max(1, min(slices, thread_count()))


def run_attention_forward(kernel, ctx, q2, k2, v2, out, lse):
    """Run the attention forward ``kernel`` on 2-D q2, k2 and v2 (rows by columns, with the
    heads, head sizes and first columns ctx.heads gives), writing out (batch * rows, heads *
    head size) and the rows' log-sum-exp, lse (batch * heads, rows); with no query, no key or
    an empty value there is nothing to attend: torch's zeros."""
    slices, tq = lse.shape
    e, ev = ctx.heads[1]
    tk = k2.shape[0] // (slices // ctx.heads[0]) if slices else 0
    if not (out.size and tq and tk):
        out[...] = 0.0
        lse[...] = np.inf
        return
    block_q, block_k = ctx.layout[-2:]
    shares = _shares(slices, q2, out)
    scratch = np.empty((shares, K.forward_scratch_size(block_q, block_k, tk, e, ev)), q2.dtype)
    lanes = np.empty((shares, K.LANES), dtype=q2.dtype)
    kernel(q2, k2, v2, *ctx.heads, *ctx.layout, lse, lanes, scratch, out)


def run_attention_backward(kernel, ctx, q2, k2, v2, out, lse, grad2, dq, dk, dv):
    """Run the attention backward ``kernel`` on the forward's 2-D arrays (q2, k2 and v2 as
    the forward read them; out and grad2 laid out as its out), writing dq, dk and dv (laid out
    as q2, k2 and v2); returns the bias's gradient (3-D, as the bias's layout) when the bias
    is an input that needs one, else None."""
    slices, tq = lse.shape
    e, ev = ctx.heads[1]
    tk = k2.shape[0] // (slices // ctx.heads[0]) if slices else 0
    layout = ctx.layout
    bias3 = layout[1]
    need_dbias = len(ctx.shapes) > 3 and ctx.needs_input_grad[3] and len(ctx.shapes[3]) > 0
    dbias = np.empty(bias3.shape if need_dbias else (1, 1, 1), dtype=q2.dtype)
    if out.size and tq and tk:
        block_q, block_k = layout[-2:]
        shares = _shares(slices, q2, out)
        dbias_parts = np.empty((shares,) + dbias.shape, dtype=q2.dtype)
        scratch = np.empty(
            (shares, K.backward_scratch_size(block_q, block_k, tk, e, ev)), dtype=q2.dtype
        )
        kernel(
            q2,
            k2,
            v2,
            *ctx.heads,
            *layout,
            out,
            lse,
            grad2,
            need_dbias,
            dbias_parts,
            scratch,
            dq,
            dk,
            dv,
            dbias,
        )
    else:
        dq[...], dk[...], dv[...], dbias[...] = 0.0, 0.0, 0.0, 0.0
    return dbias if need_dbias else None


@register
class ScaledDotProductAttention(Op):
    """``apply("scaled_dot_product_attention", query, key, value, bias, bool_mask=None,
    is_causal=False, scale=None, dropout_p=0.0, seed=None)``.

    query (..., Tq, E), key (..., Tk, E) and value (..., Tk, Ev) share their batch dimensions;
    the output is (..., Tq, Ev). ``bias`` is added to the scaled scores (torch's float
    ``attn_mask``; a 0-d 0.0 for none) and broadcasts to (..., Tq, Tk), as does ``bool_mask``
    (True: attend). ``is_causal`` lets query i attend keys 0..i (torch's top-left alignment).
    ``scale`` defaults to 1 / sqrt(E). A row left with no key gives 0, with zero gradients, as
    torch. Dropout zeroes probabilities with ``dropout_p`` and scales the rest by
    1 / (1 - dropout_p); its mask comes from a key drawn from firefly's generator (or from
    ``seed``, an int, for a mask of its own)."""

    name = "scaled_dot_product_attention"
    arity = 4
    forward_kernel, backward_kernel = K.attention_forward, K.attention_backward

    @classmethod
    def forward(
        cls,
        ctx,
        query,
        key,
        value,
        bias,
        bool_mask=None,
        is_causal=False,
        scale=None,
        dropout_p=0.0,
        seed=None,
    ):
        arrays = (query, key, value, bias)
        if query.ndim < 2 or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ctx.error(
                "query (..., Tq, E), key (..., Tk, E) and value (..., Tk, Ev) need the same "
                "number of dimensions, at least 2",
                *arrays,
            )
        batch = query.shape[:-2]
        if key.shape[:-2] != batch or value.shape[:-2] != batch:
            raise ctx.error(
                f"query, key and value must share their batch dimensions, got {batch}, "
                f"{key.shape[:-2]} and {value.shape[:-2]}",
                *arrays,
            )
        if key.shape[-1] != query.shape[-1]:
            raise ctx.error(
                f"query and key must have the same head size (last dimension), got "
                f"{query.shape[-1]} and {key.shape[-1]}",
                *arrays,
            )
        if key.shape[-2] != value.shape[-2]:
            raise ctx.error(
                f"key and value must have the same length (dimension -2), got "
                f"{key.shape[-2]} and {value.shape[-2]}",
                *arrays,
            )
        tq, e = query.shape[-2:]
        tk, ev = value.shape[-2:]
        if scale is None:
            scale = 1.0 / math.sqrt(e) if e else 1.0
        elif isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise TypeError(
                f"scaled_dot_product_attention: scale must be a number or None, got {scale!r}"
            )
        dropout_p = _check_probability(cls.name, dropout_p)
        # 2-D inputs get a batch of one, so that the kernels always see (slices, rows, cols).
        kernel_batch = batch or (1,)
        n = math.prod(kernel_batch)
        has_bias = bias.ndim > 0
        bias3, bias_strides = _mask_layout(
            ctx, "attn_mask", bias if has_bias else bias.reshape(1, 1), batch, tq, tk, arrays
        )
        has_keep = bool_mask is not None
        if has_keep:
            bool_mask = np.asarray(getattr(bool_mask, "_data", bool_mask))
            if bool_mask.dtype != np.bool_:
                raise ctx.error(
                    f"bool_mask must be a bool array, got dtype {bool_mask.dtype} "
                    f"(shape {bool_mask.shape})",
                    *arrays,
                    kind=TypeError,
                )
            keep3, keep_strides = _mask_layout(ctx, "attn_mask", bool_mask, batch, tq, tk, arrays)
        else:
            keep3, keep_strides = np.ones((1, 1, 1), dtype=np.bool_), _index_array([0] * len(batch))
        dropout_key = _dropout_key(dropout_p, seed)
        # One head per slice: its rows are a block of (slices * length, head size) arrays.
        q2, k2, v2 = _rows(query, n * tq), _rows(key, n * tk), _rows(value, n * tk)
        out = np.empty((n * tq, ev), dtype=query.dtype)
        lse = np.empty((n, tq), dtype=query.dtype)
        columnwise = not has_bias and not has_keep and dropout_p == 0.0 and scale > 0
        block_q, block_k = _blocks(tq, tk, max(e, ev), bool(is_causal), columnwise)
        ctx.layout = (
            _index_array(kernel_batch),
            bias3,
            bias_strides,
            has_bias,
            keep3,
            keep_strides,
            has_keep,
            bool(is_causal),
            query.dtype.type(scale),
            dropout_p,
            dropout_key,
            block_q,
            block_k,
        )
        ctx.shapes = (query.shape, key.shape, value.shape, bias.shape)
        ctx.heads = (1, (e, ev), (0, 0, 0))
        ctx.bool_mask_shape = bool_mask.shape if has_keep else None
        run_attention_forward(cls.forward_kernel, ctx, q2, k2, v2, out, lse)
        ctx.save_for_backward(q2, k2, v2, out, lse)
        return out.reshape(batch + (tq, ev))

    @classmethod
    def backward(cls, ctx, grad):
        q2, k2, v2, out, lse = ctx.saved_tensors
        dq, dk, dv = np.empty_like(q2), np.empty_like(k2), np.empty_like(v2)
        dbias = run_attention_backward(
            cls.backward_kernel, ctx, q2, k2, v2, out, lse, _rows(grad, out.shape[0]), dq, dk, dv
        )
        q_shape, k_shape, v_shape, bias_shape = ctx.shapes
        needs = ctx.needs_input_grad
        return (
            dq.reshape(q_shape) if needs[0] else None,
            dk.reshape(k_shape) if needs[1] else None,
            dv.reshape(v_shape) if needs[2] else None,
            (dbias.reshape(bias_shape) if dbias is not None else np.zeros((), q2.dtype))
            if needs[3]
            else None,
        )

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        return attention_gradients(ctx, grad, *inputs, ctx.needs_input_grad)

    @staticmethod
    def probabilities(ctx, query, key, bias):
        """softmax(q k^T * scale + bias) over the keys as recorded ops, with masked scores
        left out and rows that have no key left all 0."""
        _, bias3, _, has_bias, keep3, _, has_keep, causal, scale, *_ = ctx.layout
        scores = (query @ key.transpose(-1, -2)) * float(scale)
        if has_bias:
            scores = scores + bias
        tq, tk = scores.shape[-2:]
        masked = np.zeros(scores.shape, dtype=np.bool_)
        if has_bias:
            masked |= np.isneginf(bias3).reshape(ctx.shapes[3])
        if has_keep:
            masked |= ~keep3.reshape(ctx.bool_mask_shape)
        if causal:
            masked |= np.triu(np.ones((tq, tk), dtype=np.bool_), 1)
        dead = masked.all(axis=-1, keepdims=True)
        fill = np.where(dead, 0.0, -np.inf).astype(scores.dtype)
        kept = select(~masked, scores, np.broadcast_to(fill, scores.shape).copy())
        return kept.softmax(axis=-1) * (~dead).astype(scores.dtype)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        # query (*shape) with at least (rows, head size); keys and values of random lengths.
        q_shape = tuple(int(d) for d in shape) if len(shape) >= 2 else (tuple(shape) + (3, 2))[:2]
        batch, tq = q_shape[:-2], q_shape[-2]
        tk, ev = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        query = samples.uniform(rng, q_shape, dtype)
        key = samples.uniform(rng, batch + (tk, q_shape[-1]), dtype)
        value = samples.uniform(rng, batch + (tk, ev), dtype)
        scores = batch + (tq, tk)
        bias = (
            samples.uniform(rng, samples.broadcast_partner(rng, scores), dtype)
            if rng.random() < 0.6
            else np.zeros((), dtype)
        )
        attrs = {"is_causal": bool(rng.random() < 0.3)}
        if rng.random() < 0.5:  # some rows may lose every key
            attrs["bool_mask"] = rng.random(samples.broadcast_partner(rng, scores)) < 0.7
        if rng.random() < 0.5:
            attrs["scale"] = float(rng.uniform(0.2, 1.5))
        if rng.random() < 0.4:
            # A fixed seed: the battery's finite differences rerun the op and need the same mask.
            attrs.update(dropout_p=0.3, seed=int(rng.integers(0, 2**31)))
        return (query, key, value, bias), attrs


def attention_gradients(ctx, grad, query, key, value, bias, needs):
    """The fused backward's formulas as recorded ops, the probabilities recomputed from the
    inputs: dv = P'^T g, dS = P * (g v^T z - D), dq = dS k * scale, dk = dS^T q * scale,
    dbias = dS summed to the bias's shape; P' = P * z is P after dropout (z the dropout
    factors) and D the row sums of P * g v^T z. One Tensor (or None) per input, as ``needs``
    (four flags) asks."""
    probs = ScaledDotProductAttention.probabilities(ctx, query, key, bias)
    _, _, _, _, _, _, _, _, scale, dropout_p, dropout_key, _, _ = ctx.layout
    scale = float(scale)
    dropped = probs
    factors = None
    if dropout_p > 0.0:
        factors = dropout_scales(dropout_key[0], probs.shape, dropout_p).astype(probs.dtype)
        dropped = probs * factors
    dprobs = grad @ value.transpose(-1, -2)
    if factors is not None:
        dprobs = dprobs * factors
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))
    return (
        (dscores @ key) * scale if needs[0] else None,
        (dscores.transpose(-1, -2) @ query) * scale if needs[1] else None,
        dropped.transpose(-1, -2) @ grad if needs[2] else None,
        sum_to_shape(dscores, bias.shape) if needs[3] else None,
    )


def _as_rows(x):
    """``x`` (..., T, width) as the (positions, width) array the kernels read, a view where
    its memory allows (a projection's output always does)."""
    return _rows(x, math.prod(x.shape[:-1]))


def _rows(x, rows):
    """``x`` (..., width) as a C-contiguous (rows, width) array, a view where it already is
    one: the kernels are compiled for that layout alone (a strided view would compile, and
    run, another variant)."""
    return np.ascontiguousarray(x.reshape(rows, x.shape[-1]))


@register
class PackedSelfAttention(Op):
    """``apply("packed_self_attention", qkv, num_heads=H, is_causal=False, scale=None,
    dropout_p=0.0, seed=None)``: multi-head self-attention on packed projections, as
    ``scaled_dot_product_attention`` computes it.

    qkv (..., T, 3 * H * D) holds the queries, keys and values side by side, the heads side by
    side within each (as one ``nn.Linear(C, 3 * C)`` gives them, C = H * D); the output is
    (..., T, H * D), the heads side by side (the layout the output projection reads). It equals
    splitting qkv in three, viewing each as (..., T, H, D), moving the heads before T, the
    attention, and moving them back: the kernels read and write those layouts in place, so
    none of the six transposed copies (and their gradients) is made. ``is_causal``, ``scale``,
    ``dropout_p`` and ``seed`` are as ``scaled_dot_product_attention``'s."""

    name = "packed_self_attention"
    forward_kernel, backward_kernel = K.attention_forward, K.attention_backward

    @classmethod
    def forward(cls, ctx, qkv, num_heads=1, is_causal=False, scale=None, dropout_p=0.0, seed=None):
        if isinstance(num_heads, bool) or not isinstance(num_heads, numbers.Integral):
            raise ctx.error(f"num_heads must be an int, got {num_heads!r}", qkv, kind=TypeError)
        if qkv.ndim < 2 or num_heads < 1 or qkv.shape[-1] % (3 * num_heads):
            raise ctx.error(
                f"qkv must be (..., T, 3 * num_heads * head size): its last dimension must be "
                f"divisible by 3 * num_heads = {3 * num_heads} (num_heads {num_heads})",
                qkv,
            )
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, numbers.Real)):
            raise TypeError(f"packed_self_attention: scale must be a number or None, got {scale!r}")
        dropout_p = _check_probability(cls.name, dropout_p)
        heads = int(num_heads)
        lead, t = qkv.shape[:-2], qkv.shape[-2]
        batch = math.prod(lead)
        head = qkv.shape[-1] // (3 * heads)
        if scale is None:
            scale = 1.0 / math.sqrt(head) if head else 1.0
        dropout_key = _dropout_key(dropout_p, seed)
        out = np.empty(lead + (t, heads * head), dtype=qkv.dtype)
        lse = np.empty((batch * heads, t), dtype=qkv.dtype)
        columnwise = dropout_p == 0.0 and scale > 0
        block_q, block_k = _blocks(t, t, head, bool(is_causal), columnwise)
        # No mask: a one-element bias and keep that every slice reads (stride 0).
        no_strides = _index_array([0, 0])
        ctx.layout = (
            _index_array([batch, heads]),
            np.zeros((1, 1, 1), dtype=qkv.dtype),
            no_strides,
            False,
            np.ones((1, 1, 1), dtype=np.bool_),
            no_strides,
            False,
            bool(is_causal),
            qkv.dtype.type(scale),
            dropout_p,
            dropout_key,
            block_q,
            block_k,
        )
        ctx.shapes = ((batch, heads, t, head),)
        # q's heads from column 0, k's from C, v's from 2C; the output's from 0.
        width = heads * head
        ctx.heads = (heads, (head, head), (0, width, 2 * width))
        ctx.bool_mask_shape = None
        rows = _as_rows(qkv)
        run_attention_forward(cls.forward_kernel, ctx, rows, rows, rows, _as_rows(out), lse)
        ctx.save_for_backward(qkv, out, lse)
        return out

    @classmethod
    def backward(cls, ctx, grad):
        qkv, out, lse = ctx.saved_tensors
        rows = _as_rows(qkv)
        # C order, so that drows is a view of it; dq, dk and dv tile it: every element is written
        dqkv = np.empty(qkv.shape, qkv.dtype)
        drows = _as_rows(dqkv)
        run_attention_backward(
            cls.backward_kernel,
            ctx,
            rows,
            rows,
            rows,
            _as_rows(out),
            lse,
            _as_rows(grad),
            drows,
            drows,
            drows,
        )
        return dqkv

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        """``attention_gradients`` on the heads as recorded views of qkv and of grad (their
        probabilities, dropout mask included, are the forward's), put back side by side."""
        from firefly.ops import apply

        (qkv,) = inputs
        batch, heads, t, head = ctx.shapes[0]
        lead = qkv.shape[:-2]

        def as_heads(x):
            return x.reshape((batch, t, heads, head)).transpose(1, 2)

        q, k, v = (as_heads(piece) for piece in qkv.split(heads * head, dim=-1))
        grads = attention_gradients(ctx, as_heads(grad), q, k, v, None, (True, True, True, False))
        dq, dk, dv = (g.transpose(1, 2).reshape(lead + (t, heads * head)) for g in grads[:3])
        return apply("cat", apply("cat", dq, dk, dim=-1), dv, dim=-1)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        # qkv (*batch, T, 3 * H * D): the battery's shape gives the batch and T.
        lead = tuple(int(d) for d in shape[:-1]) if len(shape) >= 2 else (3,)
        heads, head = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        attrs = {"num_heads": heads, "is_causal": bool(rng.random() < 0.5)}
        if rng.random() < 0.5:
            attrs["scale"] = float(rng.uniform(0.2, 1.5))
        return (samples.uniform(rng, lead + (3 * heads * head,), dtype),), attrs
