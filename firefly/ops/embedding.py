"""``embedding``: rows of a (num_embeddings, embedding_dim) weight picked by integer indices."""

import numpy as np

from firefly.kernels import embedding as K
from firefly.ops.base import Op
from firefly.ops.families import select
from firefly.ops.registry import register


@register
class Embedding(Op):
    """``apply("embedding", weight, indices=..., padding_idx=None)``: output ``indices.shape +
    (embedding_dim,)``. Indices are an attribute (integers get no gradient); the gradient of a
    row that several indices pick accumulates, and the ``padding_idx`` row gets none."""

    name = "embedding"
    forward_kernel, backward_kernel = K.embedding_forward, K.embedding_backward

    @staticmethod
    def forward(ctx, weight, indices=None, padding_idx=None):
        if indices is None:
            raise TypeError("embedding: missing indices=, an integer array of rows to pick")
        indices = np.asarray(getattr(indices, "_data", indices))
        if weight.ndim != 2:
            raise ctx.error("weight must be 2-D (num_embeddings, embedding_dim)", weight)
        if indices.dtype.kind not in "iu":
            raise ctx.error(
                f"indices must be integers, got dtype {indices.dtype}; convert them with "
                ".astype(np.int64)",
                weight,
                indices,
                kind=TypeError,
            )
        rows = weight.shape[0]
        if indices.size and (indices.min() < 0 or indices.max() >= rows):
            bad = int(indices.min()) if indices.min() < 0 else int(indices.max())
            raise ctx.error(
                f"index {bad} is out of range for {rows} embeddings (valid: 0 to {rows - 1})",
                weight,
                indices,
                kind=IndexError,
            )
        if padding_idx is not None:
            if (
                isinstance(padding_idx, bool)
                or not isinstance(padding_idx, (int, np.integer))
                or not -rows <= padding_idx < rows
            ):
                raise ValueError(
                    f"embedding: padding_idx must be an int in [{-rows}, {rows}), "
                    f"got {padding_idx!r}"
                )
            padding_idx = int(padding_idx) % rows
        flat = np.ascontiguousarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((flat.size, weight.shape[1]), dtype=weight.dtype)
        ctx.op.forward_kernel(weight, flat, out)
        ctx.save_for_backward(flat)
        ctx.weight_shape, ctx.padding_idx = weight.shape, -1 if padding_idx is None else padding_idx
        return out.reshape(indices.shape + (weight.shape[1],))

    @staticmethod
    def decomposition(weight, indices=None, padding_idx=None):
        from firefly.ops import apply

        indices = np.asarray(getattr(indices, "_data", indices), dtype=np.int64)
        dim = weight.shape[1]
        positions = indices[..., None] * dim + np.arange(dim)
        rows = apply("take", weight, index=positions)
        if padding_idx is None:
            return rows
        # The padding row gets no gradient: its picks enter as constants.
        padding = indices[..., None] == int(padding_idx) % weight.shape[0]
        return select(np.broadcast_to(~padding, rows.shape), rows, rows.detach())

    @staticmethod
    def backward(ctx, grad):
        (flat,) = ctx.saved_tensors
        dweight = np.empty(ctx.weight_shape, dtype=grad.dtype)
        ctx.op.backward_kernel(
            grad.reshape(flat.size, ctx.weight_shape[1]), flat, ctx.padding_idx, dweight
        )
        return dweight

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        dims = tuple(int(d) for d in shape)
        rows, dim = (dims[0] if dims else 3) + 1, dims[1] if len(dims) > 1 else 2
        weight = rng.uniform(-2.0, 2.0, size=(rows + 1, dim)).astype(dtype)
        indices = rng.integers(0, rows, size=dims[2:] or (4,))  # repeats exercise the scatter-add
        # The padding row is never picked here: its forward value is used but its gradient is
        # zero by definition, which finite differences cannot confirm.
        padding_idx = rows if rng.random() < 0.5 else None
        return (weight,), {"indices": indices, "padding_idx": padding_idx}
