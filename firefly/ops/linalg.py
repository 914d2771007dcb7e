"""Matrix products: ``matmul`` with np.matmul semantics, and the fused ``linear`` layer op."""

import math

import numpy as np

from firefly.kernels import linalg as K
from firefly.kernels.reduce import sum_forward
from firefly.kernels.shape import gather_strided
from firefly.ops import samples
from firefly.ops.base import Op
from firefly.ops.families import as_shape, sum_to_shape
from firefly.ops.registry import register
from firefly.ops.shapes import materialize, reduce_to_shape


def _batch_shape(a_batch, b_batch):
    """The broadcast of two batch shapes; equal ones (every 2-D product) skip NumPy's general
    rule, which costs more than a small product's kernel."""
    return a_batch if a_batch == b_batch else np.broadcast_shapes(a_batch, b_batch)


@register
class MatMul(Op):
    """np.matmul: 1-D operands are promoted and the added dimension removed afterwards; batch
    dimensions broadcast. Forward gathers an operand whose batch broadcasts only partly;
    backward sums each gradient back over the batch dimensions its input broadcast."""

    name = "matmul"
    arity = 2
    forward_kernel = (K.matmul_forward, gather_strided)
    # The gradients of a batch of GEMMs that OpenBLAS runs on one thread each go one per share
    # on Numba's threads (the first kernel); larger GEMMs' go one after another, each threaded
    # by OpenBLAS (the second), as do those of an input that broadcast (sums over the batch).
    backward_kernel = (K.matmul_backward, K.matmul_backward_in_turn, sum_forward)

    @classmethod
    def forward(cls, ctx, a, b):
        matmul_kernel, gather = cls.forward_kernel
        if a.ndim == 0 or b.ndim == 0:
            raise ctx.error("both operands need at least one dimension (use * to scale)", a, b)
        a2 = a.reshape(1, -1) if a.ndim == 1 else a
        b2 = b.reshape(-1, 1) if b.ndim == 1 else b
        if a2.shape[-1] != b2.shape[-2]:
            raise ctx.error(
                f"inner dimensions differ: {a2.shape[-1]} (last of the first) vs "
                f"{b2.shape[-2]} (second-to-last of the second)",
                a,
                b,
            )
        try:
            batch = _batch_shape(a2.shape[:-2], b2.shape[:-2])
        except ValueError:
            raise ctx.error("batch dimensions are not broadcastable", a, b) from None
        ctx.shapes = (a.shape, b.shape, a2.shape, b2.shape)  # before batch broadcasting
        # The kernel broadcasts a batch of 1; any other partial broadcast is made explicit.
        if a2.shape[:-2] != batch and math.prod(a2.shape[:-2]) != 1:
            a2 = materialize(a2, batch + a2.shape[-2:], gather)
        if b2.shape[:-2] != batch and math.prod(b2.shape[:-2]) != 1:
            b2 = materialize(b2, batch + b2.shape[-2:], gather)
        m, k, n = a2.shape[-2], a2.shape[-1], b2.shape[-1]
        a3 = a2.reshape(math.prod(a2.shape[:-2]), m, k)
        b3 = b2.reshape(math.prod(b2.shape[:-2]), k, n)
        out = np.empty((math.prod(batch), m, n), dtype=a.dtype)
        if k == 0:
            out[...] = 0.0
        elif out.size:
            matmul_kernel(a3, b3, out)
        ctx.save_for_backward(a3, b3)
        ctx.full_shapes = (a2.shape, b2.shape)
        return out.reshape(batch + ((m,) if a.ndim > 1 else ()) + ((n,) if b.ndim > 1 else ()))

    @classmethod
    def backward(cls, ctx, grad):
        batch_kernel, in_turn_kernel, sum_kernel = cls.backward_kernel
        a3, b3 = ctx.saved_tensors
        # The kernel writes every element of both gradients; zeros only where it cannot run.
        runs = bool(grad.size and a3.shape[2])
        allocate = np.empty_like if runs else np.zeros_like
        da, db = allocate(a3), allocate(b3)
        if runs:
            batched = a3.shape[0] == b3.shape[0]
            small = a3.shape[1] * a3.shape[2] * b3.shape[2] <= K.SINGLE_THREAD_GEMM
            (batch_kernel if batched and small else in_turn_kernel)(
                grad.reshape(max(a3.shape[0], b3.shape[0]), a3.shape[1], b3.shape[2]),
                a3,
                b3,
                da,
                db,
            )
        a_shape, b_shape, a2_shape, b2_shape = ctx.shapes
        grads = []
        for g, full, promoted, shape, needed in (
            (da, ctx.full_shapes[0], a2_shape, a_shape, ctx.needs_input_grad[0]),
            (db, ctx.full_shapes[1], b2_shape, b_shape, ctx.needs_input_grad[1]),
        ):
            grads.append(
                reduce_to_shape(g.reshape(full), promoted, sum_kernel).reshape(shape)
                if needed
                else None
            )
        return tuple(grads)

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        a, b = inputs
        a_shape, b_shape, a2_shape, b2_shape = ctx.shapes
        a2, b2 = as_shape(a, a2_shape), as_shape(b, b2_shape)
        batch = _batch_shape(a2_shape[:-2], b2_shape[:-2])
        g2 = as_shape(grad, batch + (a2_shape[-2], b2_shape[-1]))
        need_a, need_b = ctx.needs_input_grad
        if need_a and len(b2_shape) == 2:
            # g2 @ b2.T as one linear op (x @ weight.T + 0, BLAS reading b2 transposed in
            # place): no recorded transpose copying b2 first, in this backward or the next.
            from firefly.ops import apply

            da = apply("linear", g2, b2, g2.new_zeros(b2_shape[0]))
        elif need_a:
            da = g2 @ b2.transpose(-1, -2)
        return (
            as_shape(sum_to_shape(da, a2_shape), a_shape) if need_a else None,
            as_shape(sum_to_shape(a2.transpose(-1, -2) @ g2, b2_shape), b_shape)
            if need_b
            else None,
        )

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        # a is shape[:-1] + (k,); b is (k,), or (k, n) behind batch dims that broadcast with a's.
        k = int(rng.integers(1, 5))
        a_shape = tuple(shape[:-1]) + (k,)
        b_shape = (k,) if rng.random() < 0.25 else (k, int(rng.integers(1, 5)))
        if len(a_shape) >= 4:  # b's batch broadcasts over part of a's: gathered, and summed back
            b_shape = a_shape[-3:-2] + (k, int(rng.integers(1, 5)))
        elif len(b_shape) == 2 and len(a_shape) > 2:
            b_shape = samples.broadcast_partner(rng, a_shape[:-2]) + b_shape
        a = rng.uniform(-2.0, 2.0, size=a_shape).astype(dtype)
        b = rng.uniform(-2.0, 2.0, size=b_shape).astype(dtype)
        return ((a, b) if a.ndim > 1 or b.ndim > 1 or rng.random() < 0.5 else (b, a)), {}


@register
class Linear(Op):
    """``x @ weight.T + bias`` as one op, in torch's layout (that of ``firefly.nn.Linear`` and
    ``F.linear``): weight is (out_features, in_features). Leading dimensions of x are batch
    dimensions."""

    name = "linear"
    arity = 3
    forward_kernel, backward_kernel = K.linear_forward, K.linear_backward

    @classmethod
    def forward(cls, ctx, x, weight, bias):
        if (
            weight.ndim != 2
            or bias.shape != weight.shape[:1]
            or x.ndim == 0
            or x.shape[-1] != weight.shape[1]
        ):
            raise ctx.error(
                "expected x (..., in_features), weight (out_features, in_features) and bias "
                "(out_features,)",
                x,
                weight,
                bias,
            )
        out_features, in_features = weight.shape
        # (batch, in_features), the usual case, needs no reshape either way
        x2 = x if x.ndim == 2 else x.reshape(math.prod(x.shape[:-1]), in_features)
        out = np.empty((x2.shape[0], out_features), dtype=x.dtype)
        if x2.size:
            cls.forward_kernel(x2, weight, bias, out)
        else:  # no rows, or no input features (BLAS is not called on empty operands)
            out[...] = bias
        ctx.saved_tensors = (x2, weight)
        ctx.x_shape = x.shape
        return out if x.ndim == 2 else out.reshape(x.shape[:-1] + (out_features,))

    @classmethod
    def backward(cls, ctx, grad):
        x2, weight = ctx.saved_tensors
        need_dx = ctx.needs_input_grad[0]
        # The kernel leaves dx alone unless need_dx (a first layer's input needs none).
        dx = np.empty(x2.shape if need_dx else (0, x2.shape[1]), dtype=x2.dtype)
        dweight = np.empty(weight.shape, dtype=weight.dtype)
        dbias = np.empty(weight.shape[0], dtype=weight.dtype)
        g2 = grad if grad.ndim == 2 else grad.reshape(x2.shape[0], weight.shape[0])
        if x2.size:
            cls.backward_kernel(g2, x2, weight, need_dx, dx, dweight, dbias)
        else:
            dx[...], dweight[...], dbias[...] = 0.0, 0.0, g2.sum(axis=0)
        return (dx.reshape(ctx.x_shape) if need_dx else None), dweight, dbias

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        # As backward, with the layout's transposes: x (..., in), weight (out, in).
        x, weight, bias = inputs
        x2 = as_shape(x, (-1, weight.shape[1])) if x.ndim != 2 else x
        g2 = as_shape(grad, (-1, weight.shape[0])) if grad.ndim != 2 else grad
        need_x, need_weight, need_bias = ctx.needs_input_grad
        return (
            as_shape(g2 @ weight, x.shape) if need_x else None,
            g2.T @ x2 if need_weight else None,
            g2.sum(axis=0) if need_bias else None,
        )

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x_shape = tuple(shape) if shape else (3,)
        out_features = int(rng.integers(1, 5))
        arrays = (
            rng.uniform(-2.0, 2.0, size=x_shape),
            rng.uniform(-2.0, 2.0, size=(out_features, x_shape[-1])),
            rng.uniform(-2.0, 2.0, size=(out_features,)),
        )
        return tuple(a.astype(dtype) for a in arrays), {}


def svd_parts(packed, m, n, k):
    """(U (..., m, k), S (..., k), Vh (..., k, n)) from the svd op's packed last axis; works on
    ndarrays and on Tensors (as recorded slices)."""
    lead = tuple(packed.shape[:-1])
    return (
        packed[..., : m * k].reshape(lead + (m, k)),
        packed[..., m * k : m * k + k],
        packed[..., m * k + k :].reshape(lead + (k, n)),
    )


@register
class SVD(Op):
    """``svd(A)``: the thin SVD of each matrix A (..., m, n) = U diag(S) Vh, as one array
    (..., m k + k + k n) holding U, S and Vh flattened in turn (``svd_parts`` splits it;
    ``firefly.linalg.svd`` returns the three). k = min(m, n); singular values descend; each
    singular pair's sign makes the largest-magnitude entry of its column of U positive.

    Backward is torch's (svd_backward), defined where the singular values are distinct and,
    for the singular vectors' gradients, non-zero: with repeated singular values the singular
    vectors are not unique and their gradient is undefined, in torch as here. Gradients of
    the singular values alone (norms, ``svdvals``) are U diag(gS) Vh everywhere."""

    name = "svd"
    forward_kernel, backward_kernel = K.svd_forward, K.svd_backward

    @classmethod
    def forward(cls, ctx, x):
        if x.ndim < 2:
            raise ctx.error("A must have at least 2 dimensions (..., m, n)", x)
        if not np.isfinite(x).all():
            raise ctx.error("A must be finite: LAPACK's SVD does not converge on inf or NaN", x)
        *lead, m, n = x.shape
        k = min(m, n)
        batch = math.prod(lead)
        u = np.empty((batch, m, k), dtype=x.dtype)
        s = np.empty((batch, k), dtype=x.dtype)
        vt = np.empty((batch, k, n), dtype=x.dtype)
        cls.forward_kernel(x.reshape(batch, m, n), u, s, vt)
        ctx.save_for_backward(u, s, vt)
        ctx.dims, ctx.x_shape = (m, n, k), x.shape
        packed = np.concatenate([u.reshape(batch, -1), s, vt.reshape(batch, -1)], axis=1)
        return packed.reshape(tuple(lead) + (packed.shape[1],))

    @classmethod
    def backward(cls, ctx, grad):
        u, s, vt = ctx.saved_tensors
        m, n, k = ctx.dims
        parts = svd_parts(grad.reshape(u.shape[0], -1), m, n, k)
        gu, gs, gvt = (np.ascontiguousarray(g) for g in parts)
        da = np.empty((u.shape[0], m, n), dtype=grad.dtype)
        cls.backward_kernel(u, s, vt, gu, gs, gvt, da)
        return da.reshape(ctx.x_shape)

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        # The backward kernel's formula on the recorded factors, so that it differentiates.
        m, n, k = ctx.dims
        (u, s, vt), (gu, gs, gvt) = svd_parts(out, m, n, k), svd_parts(grad, m, n, k)
        eye = type(grad)(np.eye(k, dtype=grad.dtype))
        utgu = u.transpose(-1, -2) @ gu
        vtgv = vt @ gvt.transpose(-1, -2)
        squares = s * s
        # E[i, j] = s_j^2 - s_i^2 off the diagonal, 1 on it (where the skews are 0).
        spread = squares.unsqueeze(-2) - squares.unsqueeze(-1) + eye
        inner = (
            (utgu - utgu.transpose(-1, -2)) * s.unsqueeze(-2)
            + s.unsqueeze(-1) * (vtgv - vtgv.transpose(-1, -2))
        ) / spread + gs.unsqueeze(-1) * eye
        if m > k:
            gu_scaled = gu / s.unsqueeze(-2)
            left = u @ inner + gu_scaled - u @ (u.transpose(-1, -2) @ gu_scaled)
            return left @ vt
        if n > k:
            gvt_scaled = gvt / s.unsqueeze(-1)
            right = inner @ vt + gvt_scaled - (gvt_scaled @ vt.transpose(-1, -2)) @ vt
            return u @ right
        return u @ (inner @ vt)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        # Singular values at least 0.5 apart and from 0: the factors are smooth there, and
        # finite differences see their derivative.
        m = int(shape[-2]) if len(shape) >= 2 else int(rng.integers(1, 4))
        n = int(shape[-1]) if len(shape) >= 1 else int(rng.integers(1, 4))
        lead = tuple(int(d) for d in shape[:-2])[:2]
        k = min(m, n)
        left = np.linalg.qr(rng.normal(size=lead + (m, m)))[0][..., :k]
        right = np.linalg.qr(rng.normal(size=lead + (n, n)))[0][..., :k]
        values = 0.6 + 0.7 * np.arange(k)[::-1] + rng.uniform(0.0, 0.2, size=lead + (k,))
        a = (left * values[..., None, :]) @ right.swapaxes(-1, -2)
        return (a.astype(dtype),), {}
