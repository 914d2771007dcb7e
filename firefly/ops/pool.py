"""Pooling over NCHW images (or CHW without the batch dimension): ``max_pool2d``,
``avg_pool2d``, ``adaptive_avg_pool2d`` and ``adaptive_max_pool2d``, with torch's arguments,
output sizes and gradients.
"""

import numpy as np

from firefly.kernels import pool as K
from firefly.ops.base import Op
from firefly.ops.conv import pair
from firefly.ops.registry import register
from firefly.ops.shape import add_at_positions


def pool_output_size(size, kernel, pad, stride, dilation, ceil_mode):
    """torch's pooling_output_shape: floor (or ceil) of the window count, where a ceil-mode
    window must start inside the input or its left padding."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _window_matrix(spans, size):
    """(windows, size): 1 where an input position lies in a window's [a, b)."""
    matrix = np.zeros((len(spans), size))
    for o, (a, b) in enumerate(spans):
        matrix[o, a:b] = 1.0
    return matrix


def _avg_spans(out_size, kernel, stride, pad, size):
    """avg_pool2d's windows along one axis, as the kernel's ``_avg_span``: the window matrix,
    each window's length clipped to the padded input, and inside the input."""
    padded, spans = [], []
    for o in range(out_size):
        lo = o * stride - pad
        hi = min(lo + kernel, size + pad)
        spans.append((max(lo, 0), min(hi, size)))
        padded.append(hi - lo)
    inside = [b - a for a, b in spans]
    return _window_matrix(spans, size), np.array(padded, float), np.array(inside, float)


def _spread(grad, rows, cols, count):
    """The gradient of a pooling whose output cell averages rows x cols windows with
    ``count`` as divisor: rows.T @ (grad / count) @ cols, by recorded ops."""
    const = type(grad)
    return (
        const(rows.T.astype(grad.dtype))
        @ (grad * (1.0 / count).astype(grad.dtype))
        @ const(cols.astype(grad.dtype))
    )


def _planes(ctx, x):
    if x.ndim not in (3, 4):
        raise ctx.error("input must be 4-D (N, C, H, W) or 3-D (C, H, W)", x)
    return x.reshape(-1, x.shape[-2], x.shape[-1])


def adaptive_output_size(ctx, x, output_size):
    """An adaptive pooling's (OH, OW): ``output_size`` is an int, None or a pair whose None
    entries keep the input's size."""
    name = ctx.op.name
    sizes = (
        (output_size,) * 2
        if output_size is None or isinstance(output_size, (int, np.integer))
        else output_size
    )
    if not isinstance(sizes, (tuple, list)) or len(sizes) != 2:
        raise TypeError(f"{name}: output_size must be an int, None or a pair, got {output_size!r}")
    out_size = tuple(
        int(x.shape[-2 + i]) if s is None else pair(name, "output_size", s, 1, 1)[0]
        for i, s in enumerate(sizes)
    )
    if min(x.shape[-2:]) < 1:
        raise ctx.error("input height and width must be positive", x)
    return out_size


def pool_geometry(ctx, x, kernel_size, stride, padding, dilation, ceil_mode):
    name = ctx.op.name
    kernel = pair(name, "kernel_size", kernel_size, 1)
    stride = (
        kernel
        if stride is None or stride == () or stride == []
        else pair(name, "stride", stride, 1)
    )
    padding = pair(name, "padding", padding, 0)
    dilation = pair(name, "dilation", dilation, 1)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"{name}: padding {padding} must be at most half the kernel size {kernel}")
    out_size = tuple(
        pool_output_size(s, k, p, st, d, bool(ceil_mode))
        for s, k, p, st, d in zip(x.shape[-2:], kernel, padding, stride, dilation)
    )
    if min(out_size) < 1:
        raise ctx.error(
            f"the window (kernel {kernel}, dilation {dilation}) does not fit the padded "
            f"input (padding {padding}): the output would be {out_size}; use a smaller "
            "kernel or more padding",
            x,
        )
    return kernel, stride, padding, dilation, out_size


def _sample_image(rng, shape, dtype, min_size):
    dims = [int(d) for d in shape] + [2, 2, 3, 3]
    size = tuple(min_size + dims[2 + i] for i in range(2))
    x = rng.uniform(-2.0, 2.0, size=(min(dims[0], 2), min(dims[1], 3)) + size)
    return x.astype(dtype)


def _sample_window(rng):
    """Random kernel_size, stride and padding (at most half the kernel) attributes."""
    kernel = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    return dict(
        kernel_size=kernel,
        stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))),
        padding=(
            int(rng.integers(0, kernel[0] // 2 + 1)),
            int(rng.integers(0, kernel[1] // 2 + 1)),
        ),
    )


def _indices_sink(ctx, x, indices_out):
    """``indices_out``, the list to which a max pooling appends its int64 argmax (what
    ``return_indices=True`` returns), or None; checked before the kernel runs."""
    if indices_out is not None and not isinstance(indices_out, list):
        raise ctx.error(
            f"indices_out must be a list or None, got {type(indices_out).__name__}",
            x,
            kind=TypeError,
        )
    return indices_out


def _give_indices(indices_out, argmax, shape):
    """Hand the argmax, flat positions in each (H, W) plane as torch's indices, to the caller.
    It is the array backward reads, so an in-place write to it is caught as torch catches one
    to its saved indices."""
    if indices_out is not None:
        indices_out.append(argmax.reshape(shape))


@register
class MaxPool2d(Op):
    """``max_pool2d(x, kernel_size=..., ...)``; ``indices_out=[]`` (a list) receives the int64
    positions of the maxima in each input plane, as torch's ``return_indices=True``."""

    name = "max_pool2d"
    forward_kernel, backward_kernel = K.max_pool2d_forward, K.max_pool2d_backward

    @staticmethod
    def forward(
        ctx,
        x,
        kernel_size=2,
        stride=None,
        padding=0,
        dilation=1,
        ceil_mode=False,
        indices_out=None,
    ):
        planes = _planes(ctx, x)
        kernel, stride, padding, dilation, out_size = pool_geometry(
            ctx, x, kernel_size, stride, padding, dilation, ceil_mode
        )
        indices_out = _indices_sink(ctx, x, indices_out)
        out = np.empty((planes.shape[0],) + out_size, dtype=x.dtype)
        argmax = np.empty(out.shape, dtype=np.int64)
        ctx.op.forward_kernel(planes, *kernel, *stride, *padding, *dilation, argmax, out)
        ctx.save_for_backward(argmax)
        ctx.x_shape = x.shape
        _give_indices(indices_out, argmax, x.shape[:-2] + out_size)
        return out.reshape(x.shape[:-2] + out_size)

    @staticmethod
    def backward(ctx, grad):
        (argmax,) = ctx.saved_tensors
        dx = np.empty(ctx.x_shape, dtype=grad.dtype)
        ctx.op.backward_kernel(
            grad.reshape(argmax.shape), argmax, dx.reshape(argmax.shape[0], *ctx.x_shape[-2:])
        )
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        # Each window's gradient goes to its maximum: add_at the forward's argmax positions.
        (argmax,) = ctx.saved_tensors
        plane = ctx.x_shape[-2] * ctx.x_shape[-1]
        positions = argmax + (np.arange(argmax.shape[0]) * plane)[:, None, None]
        return add_at_positions(grad.reshape(argmax.shape), positions, ctx.x_shape)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        attrs = _sample_window(rng)
        attrs.update(dilation=(int(rng.integers(1, 3)), 1), ceil_mode=bool(rng.random() < 0.5))
        # Distinct values a fair distance apart: finite differences must not swap a window's
        # maximum.
        x = _sample_image(rng, shape, np.float64, 5)
        x = (rng.permutation(x.size).reshape(x.shape) * 0.1 + 0.01 * x).astype(dtype)
        return (x,), attrs


@register
class AvgPool2d(Op):
    name = "avg_pool2d"
    forward_kernel, backward_kernel = K.avg_pool2d_forward, K.avg_pool2d_backward

    @staticmethod
    def forward(
        ctx,
        x,
        kernel_size=2,
        stride=None,
        padding=0,
        ceil_mode=False,
        count_include_pad=True,
        divisor_override=None,
    ):
        planes = _planes(ctx, x)
        kernel, stride, padding, _, out_size = pool_geometry(
            ctx, x, kernel_size, stride, padding, 1, ceil_mode
        )
        if divisor_override is not None and (
            isinstance(divisor_override, bool)
            or not isinstance(divisor_override, (int, np.integer))
            or divisor_override < 1
        ):
            raise ValueError(
                "avg_pool2d: divisor_override must be a positive int or None, "
                f"got {divisor_override!r}"
            )
        divisor = int(divisor_override or 0)
        out = np.empty((planes.shape[0],) + out_size, dtype=x.dtype)
        ctx.op.forward_kernel(
            planes, *kernel, *stride, *padding, bool(count_include_pad), divisor, out
        )
        ctx.geometry = (kernel, stride, padding, bool(count_include_pad), divisor)
        ctx.x_shape = x.shape
        return out.reshape(x.shape[:-2] + out_size)

    @staticmethod
    def backward(ctx, grad):
        kernel, stride, padding, count_include_pad, divisor = ctx.geometry
        dx = np.empty(ctx.x_shape, dtype=grad.dtype)
        planes = dx.reshape(-1, *ctx.x_shape[-2:])
        ctx.op.backward_kernel(
            grad.reshape(planes.shape[0], *grad.shape[-2:]),
            *kernel,
            *stride,
            *padding,
            count_include_pad,
            divisor,
            planes,
        )
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        kernel, stride, padding, count_include_pad, divisor = ctx.geometry
        spans = [
            _avg_spans(o, k, s, p, size)
            for o, k, s, p, size in zip(grad.shape[-2:], kernel, stride, padding, ctx.x_shape[-2:])
        ]
        (rows, row_padded, row_inside), (cols, col_padded, col_inside) = spans
        if divisor:
            count = np.full((len(row_padded), len(col_padded)), float(divisor))
        elif count_include_pad:
            count = np.outer(row_padded, col_padded)
        else:
            count = np.outer(row_inside, col_inside)
        return _spread(grad, rows, cols, count)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        attrs = _sample_window(rng)
        attrs.update(ceil_mode=bool(rng.random() < 0.5), count_include_pad=bool(rng.random() < 0.5))
        return (_sample_image(rng, shape, dtype, 3),), attrs


@register
class AdaptiveAvgPool2d(Op):
    name = "adaptive_avg_pool2d"
    forward_kernel, backward_kernel = K.adaptive_avg_pool2d_forward, K.adaptive_avg_pool2d_backward

    @staticmethod
    def forward(ctx, x, output_size=1):
        planes = _planes(ctx, x)
        out_size = adaptive_output_size(ctx, x, output_size)
        out = np.empty((planes.shape[0],) + out_size, dtype=x.dtype)
        ctx.op.forward_kernel(planes, out)
        ctx.x_shape = x.shape
        return out.reshape(x.shape[:-2] + out_size)

    @staticmethod
    def backward(ctx, grad):
        dx = np.empty(ctx.x_shape, dtype=grad.dtype)
        planes = dx.reshape(-1, *ctx.x_shape[-2:])
        ctx.op.backward_kernel(grad.reshape(planes.shape[0], *grad.shape[-2:]), planes)
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        rows, cols = (
            _window_matrix([(o * size // n, -(-(o + 1) * size // n)) for o in range(n)], size)
            for n, size in zip(grad.shape[-2:], ctx.x_shape[-2:])
        )
        return _spread(grad, rows, cols, np.outer(rows.sum(axis=1), cols.sum(axis=1)))

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        output_size = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        return (_sample_image(rng, shape, dtype, 2),), {"output_size": output_size}


@register
class AdaptiveMaxPool2d(Op):
    """``adaptive_max_pool2d(x, output_size=...)``: the max over adaptive_avg_pool2d's windows;
    ``indices_out`` as max_pool2d's. Backward sends each window's gradient to its maximum,
    with max_pool2d's kernel."""

    name = "adaptive_max_pool2d"
    forward_kernel, backward_kernel = K.adaptive_max_pool2d_forward, K.max_pool2d_backward

    @staticmethod
    def forward(ctx, x, output_size=1, indices_out=None):
        planes = _planes(ctx, x)
        out_size = adaptive_output_size(ctx, x, output_size)
        indices_out = _indices_sink(ctx, x, indices_out)
        out = np.empty((planes.shape[0],) + out_size, dtype=x.dtype)
        argmax = np.empty(out.shape, dtype=np.int64)
        ctx.op.forward_kernel(planes, argmax, out)
        ctx.save_for_backward(argmax)
        ctx.x_shape = x.shape
        _give_indices(indices_out, argmax, x.shape[:-2] + out_size)
        return out.reshape(x.shape[:-2] + out_size)

    backward = staticmethod(MaxPool2d.backward)
    backward_graph = staticmethod(MaxPool2d.backward_graph)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        output_size = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        # Distinct values a fair distance apart, as for max_pool2d.
        x = _sample_image(rng, shape, np.float64, 2)
        x = (rng.permutation(x.size).reshape(x.shape) * 0.1 + 0.01 * x).astype(dtype)
        return (x,), {"output_size": output_size}


@register
class MaxUnpool2d(Op):
    """``max_unpool2d(x, indices=..., output_size=(OH, OW))``: each input plane's values written
    at ``indices`` (int64 of x's shape, flat positions in an (OH, OW) plane, as max_pool2d's
    ``return_indices`` gives them) into zeros. Differentiable in the values: backward reads the
    output gradient at the indices, as torch's."""

    name = "max_unpool2d"
    forward_kernel, backward_kernel = K.max_unpool_forward, K.max_unpool_backward

    @classmethod
    def forward(cls, ctx, x, indices=None, output_size=None):
        planes = _planes(ctx, x)
        if not isinstance(indices, np.ndarray) or indices.dtype != np.int64:
            raise ctx.error(
                f"indices must be an int64 array, got {type(indices).__name__} "
                f"{getattr(indices, 'dtype', '')}",
                x,
                kind=TypeError,
            )
        if indices.shape != x.shape:
            raise ctx.error(f"indices of shape {indices.shape} must have the input's shape", x)
        if (
            not isinstance(output_size, (tuple, list))
            or len(output_size) != 2
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) for s in output_size)
            or min(output_size) < 1
        ):
            raise ctx.error(f"output_size must be two positive ints, got {output_size!r}", x)
        out_size = tuple(int(s) for s in output_size)
        plane = out_size[0] * out_size[1]
        if indices.size and (indices.min() < 0 or indices.max() >= plane):
            bad = indices[(indices < 0) | (indices >= plane)].reshape(-1)[0]
            raise ctx.error(
                f"index {int(bad)} is outside the output plane {out_size} ({plane} positions)",
                x,
                kind=IndexError,
            )
        positions = np.ascontiguousarray(indices).reshape(planes.shape[0], -1)
        out = np.empty((planes.shape[0], plane), dtype=x.dtype)
        cls.forward_kernel(planes.reshape(planes.shape[0], -1), positions, out)
        ctx.positions, ctx.x_shape = positions, x.shape
        return out.reshape(x.shape[:-2] + out_size)

    @classmethod
    def backward(cls, ctx, grad):
        positions = ctx.positions
        dx = np.empty(ctx.x_shape, dtype=grad.dtype)
        cls.backward_kernel(
            grad.reshape(positions.shape[0], -1), positions, dx.reshape(positions.shape)
        )
        return dx

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        from firefly.ops import apply

        plane = grad.shape[-2] * grad.shape[-1]
        offsets = (np.arange(ctx.positions.shape[0]) * plane)[:, None]
        return apply("take", grad.reshape(-1), index=(ctx.positions + offsets).reshape(ctx.x_shape))

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        x = _sample_image(rng, shape, dtype, 1)
        out_size = tuple(int(s) + int(rng.integers(0, 3)) for s in x.shape[-2:])
        # Distinct indices in each plane: with repeats, torch's gradient (read at every index)
        # is not the derivative of the forward (which keeps the last write).
        plane = out_size[0] * out_size[1]
        count = x.shape[-2] * x.shape[-1]
        indices = np.stack(
            [rng.permutation(plane)[:count] for _ in range(x.shape[0] * x.shape[1])]
        ).reshape(x.shape)
        return (x,), {"indices": indices.astype(np.int64), "output_size": out_size}
