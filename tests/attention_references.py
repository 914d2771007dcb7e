"""NumPy float64 references for the attention ops, shared by tests/test_attention.py and the
op battery in tests/test_ops.py (through conftest's NUMPY_REFERENCES), and the steps for the
random compositions there, for both attention ops."""

import numpy as np

import firefly
import firefly.nn.functional as F
from firefly.ops.attention import dropout_scales


def reference(q, k, v, bias=None, keep=None, causal=False, scale=None, factors=None, grad=None):
    """Attention in float64 with NumPy, as torch defines it: (out, and with ``grad`` the
    gradients dq, dk, dv, dbias (dbias at the scores' full shape)). ``factors`` multiply the
    probabilities after the softmax (dropout)."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ np.swapaxes(k, -1, -2) * scale
    if bias is not None:
        scores = scores + bias
    masked = np.isneginf(scores)
    if keep is not None:
        masked = masked | ~np.broadcast_to(keep, scores.shape)
    if causal:
        masked = masked | np.triu(np.ones(scores.shape[-2:], dtype=bool), 1)
    dead = masked.all(axis=-1, keepdims=True)
    scores = np.where(masked, -np.inf, scores)
    scores = np.where(dead, 0.0, scores)
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs = probs / probs.sum(axis=-1, keepdims=True) * ~dead
    factors = np.ones_like(probs) if factors is None else factors
    out = (probs * factors) @ v
    if grad is None:
        return out
    dprobs = grad @ np.swapaxes(v, -1, -2) * factors
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))
    dq = dscores @ k * scale
    dk = np.swapaxes(dscores, -1, -2) @ q * scale
    dv = np.swapaxes(probs * factors, -1, -2) @ grad
    return out, (dq, dk, dv, dscores)


def op_reference(arrays, attrs):
    """``check_op``'s reference: the op's attributes mapped onto ``reference``."""
    q, k, v, bias = arrays
    factors = None
    if attrs.get("dropout_p", 0.0) > 0.0:
        key = np.random.default_rng(attrs["seed"]).integers(0, 2**63 - 1, size=1, dtype=np.int64)
        scores_shape = q.shape[:-1] + (k.shape[-2],)
        factors = dropout_scales(key[0], scores_shape, attrs["dropout_p"])
    return reference(
        q,
        k,
        v,
        bias=bias if bias.ndim else None,
        keep=attrs.get("bool_mask"),
        causal=attrs.get("is_causal", False),
        scale=attrs.get("scale"),
        factors=factors,
    )


def packed_op_reference(arrays, attrs):
    """``check_op``'s reference for ``packed_self_attention``: qkv split in three, each viewed
    as (..., heads, T, head size), ``reference``, and the heads put back side by side."""
    (qkv,) = arrays
    heads = attrs.get("num_heads", 1)
    *lead, t, width = qkv.shape
    q, k, v = (
        np.swapaxes(part.reshape(*lead, t, heads, width // (3 * heads)), -2, -3)
        for part in np.split(np.asarray(qkv, dtype=np.float64), 3, axis=-1)
    )
    factors = None
    if attrs.get("dropout_p", 0.0) > 0.0:
        key = np.random.default_rng(attrs["seed"]).integers(0, 2**63 - 1, size=1, dtype=np.int64)
        factors = dropout_scales(key[0], q.shape[:-1] + (t,), attrs["dropout_p"])
    out = reference(
        q, k, v, causal=attrs.get("is_causal", False), scale=attrs.get("scale"), factors=factors
    )
    return np.swapaxes(out, -2, -3).reshape(*lead, t, width // 3)


ATTENTION_REFERENCES = {
    "scaled_dot_product_attention": op_reference,
    "packed_self_attention": packed_op_reference,
}

# A step that maps (x: (2, 3), v: (3,), w: (3, 3)) to a new (2, 3) tensor, as in test_ops.py:
# x's rows are two queries attending to keys x @ w and values x + v.
ATTENTION_COMPOSITION_STEPS = {
    "scaled_dot_product_attention": lambda x, v, w: F.scaled_dot_product_attention(
        x.reshape(1, 2, 3), (x @ w).reshape(1, 2, 3), (x + v).reshape(1, 2, 3)
    ).reshape(2, 3),
    # The same two queries, their keys and values packed side by side: (2, 9), one head.
    "packed_self_attention": lambda x, v, w: F.packed_self_attention(
        firefly.cat([x, x @ w, x + v], dim=-1), 1
    ),
}
