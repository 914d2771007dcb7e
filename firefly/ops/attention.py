"""``scaled_dot_product_attention``: softmax(q k^T * scale + mask) v as one fused op, with
tiled flash-style kernels (``firefly.kernels.attention``) that never hold a (Tq, Tk) matrix."""

import math
import numbers

import numba
import numpy as np

from firefly import random
from firefly.kernels import attention as K
from firefly.kernels.linalg import SINGLE_THREAD_GEMM
from firefly.ops import samples
from firefly.ops.base import Op
from firefly.ops.families import select, sum_to_shape
from firefly.ops.registry import register

# Tiles: square-ish GEMMs of at most SINGLE_THREAD_GEMM multiply-adds, which OpenBLAS runs on
# one thread (the threads are the workers) and, at 64 x 64 x 64, near its peak rate; narrower
# heads take wider key tiles.
MAX_BLOCK = 128
MIN_BLOCK_Q = 16


def _blocks(tq, tk, width):
    block_k = MAX_BLOCK if width <= 32 else MAX_BLOCK // 2
    block_q = min(MAX_BLOCK, max(MIN_BLOCK_Q, SINGLE_THREAD_GEMM // (block_k * max(width, 1))))
    return max(1, min(tq, block_q)), max(1, min(tk, block_k))


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
    return layout, tuple(reversed(strides))


def _check_probability(p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(
            f"scaled_dot_product_attention: dropout_p must be a probability in [0, 1], got {p!r}"
        )
    return float(p)


def dropout_scales(key, shape, dropout_p):
    """The factor dropout multiplies each probability by, for scores of ``shape`` (batch +
    (Tq, Tk)): 1 / (1 - p) where kept, 0 where dropped; the kernels' mask for ``key``."""
    counters = np.arange(math.prod(shape), dtype=np.uint64).reshape(shape)
    kept = K.dropout_uniform(np.uint64(key), counters) >= dropout_p
    return np.where(kept, 1.0 / (1.0 - dropout_p) if dropout_p < 1.0 else 0.0, 0.0)


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
        dropout_p = _check_probability(dropout_p)
        # 2-D inputs get a batch of one, so that the kernels always see (slices, rows, cols).
        kernel_batch = batch or (1,)
        n = math.prod(kernel_batch)
        has_bias = bias.ndim > 0
        bias3, bias_strides = _mask_layout(
            ctx, "attn_mask", bias if has_bias else bias.reshape(1, 1), batch, tq, tk, arrays
        )
        bias_strides = bias_strides or (0,)
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
            keep3, keep_strides = np.ones((1, 1, 1), dtype=np.bool_), (0,) * len(batch)
        keep_strides = keep_strides or (0,)
        if dropout_p > 0.0:
            source = random.generator() if seed is None else np.random.default_rng(seed)
            dropout_key = source.integers(0, 2**63 - 1, size=1, dtype=np.int64)
        else:
            dropout_key = np.zeros(1, dtype=np.int64)
        q3 = query.reshape(n, tq, e)
        k3 = key.reshape(n, tk, e)
        v3 = value.reshape(n, tk, ev)
        out = np.empty((n, tq, ev), dtype=query.dtype)
        lse = np.empty((n, tq), dtype=query.dtype)
        block_q, block_k = _blocks(tq, tk, max(e, ev))
        workers = max(1, min(n, numba.get_num_threads()))
        ctx.layout = (
            kernel_batch,
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
        ctx.bool_mask_shape = bool_mask.shape if has_keep else None
        if out.size and tq and tk:
            scratch = np.empty((workers, block_q * (block_k + ev + 3) + e * tk), dtype=query.dtype)
            lanes = np.empty((workers, K.LANES), dtype=query.dtype)
            cls.forward_kernel(q3, k3, v3, *ctx.layout, lse, lanes, scratch, out)
        else:  # no query, no key or an empty value: nothing to attend, torch's zeros
            out[...] = 0.0
            lse[...] = np.inf
        ctx.save_for_backward(q3, k3, v3, out, lse)
        return out.reshape(batch + (tq, ev))

    @classmethod
    def backward(cls, ctx, grad):
        q3, k3, v3, out, lse = ctx.saved_tensors
        n, tq, e = q3.shape
        tk, ev = v3.shape[1:]
        layout = ctx.layout
        bias3 = layout[1]
        q_shape, k_shape, v_shape, bias_shape = ctx.shapes
        need_dbias = ctx.needs_input_grad[3] and len(bias_shape) > 0
        dq, dk, dv = np.empty_like(q3), np.empty_like(k3), np.empty_like(v3)
        dbias = np.empty(bias3.shape if need_dbias else (1, 1, 1), dtype=q3.dtype)
        if out.size and tq and tk:
            block_q, block_k = layout[-2:]
            workers = max(1, min(n, numba.get_num_threads()))
            dbias_parts = np.empty((workers,) + dbias.shape, dtype=q3.dtype)
            scratch = np.empty(
                (
                    workers,
                    2 * block_q * block_k
                    + block_q * (e + 1)
                    + block_k * max(e, ev)
                    + (e + ev) * tk,
                ),
                dtype=q3.dtype,
            )
            cls.backward_kernel(
                q3,
                k3,
                v3,
                *layout,
                out,
                lse,
                grad.reshape(out.shape),
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
        needs = ctx.needs_input_grad
        return (
            dq.reshape(q_shape) if needs[0] else None,
            dk.reshape(k_shape) if needs[1] else None,
            dv.reshape(v_shape) if needs[2] else None,
            (dbias.reshape(bias_shape) if need_dbias else np.zeros((), q3.dtype))
            if needs[3]
            else None,
        )

    @classmethod
    def backward_graph(cls, ctx, grad, inputs, out):
        """The fused backward's formulas as recorded ops, the probabilities recomputed from
        the inputs: dv = P'^T g, dS = P * (g v^T z - D), dq = dS k * scale, dk = dS^T q *
        scale, dbias = dS summed to the bias's shape; P' = P * z is P after dropout (z the
        dropout factors) and D the row sums of P * g v^T z."""
        query, key, value, bias = inputs
        probs = cls.probabilities(ctx, query, key, bias)
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
        needs = ctx.needs_input_grad
        return (
            (dscores @ key) * scale if needs[0] else None,
            (dscores.transpose(-1, -2) @ query) * scale if needs[1] else None,
            dropped.transpose(-1, -2) @ grad if needs[2] else None,
            sum_to_shape(dscores, bias.shape) if needs[3] else None,
        )

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
