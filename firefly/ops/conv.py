"""Convolutions over NCHW images (and NCL sequences), torch's weight layout
``(out_channels, in_channels / groups, kH, kW)``.

``apply("conv2d", x, weight, bias, stride=1, padding=0, dilation=1, groups=1)``: bias is always
an input (``firefly.nn.functional.conv2d`` passes zeros when there is none); stride, padding
and dilation are ints or pairs, and padding may also be ``"same"`` or ``"valid"``. An input
without the batch dimension, (C, H, W), gives an output without it, as in torch.
"""

from typing import NamedTuple

import numpy as np

from firefly.kernels import conv as K
from firefly.kernels import microkernel
from firefly.kernels._blas import can_limit_blas_threads, single_threaded_blas
from firefly.kernels._jit import thread_count
from firefly.ops.base import Context, Op
from firefly.ops.registry import register
from firefly.ops.scratch import POOL


def pair(op_name, arg, value, minimum, size=2):
    """``value`` (an int or a sequence of ``size`` ints, each >= ``minimum``) as a tuple."""
    items = (value,) * size if isinstance(value, (int, np.integer)) else value
    if (
        not isinstance(items, (tuple, list))
        or len(items) != size
        or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items)
    ):
        raise TypeError(f"{op_name}: {arg} must be an int or a tuple of {size} ints, got {value!r}")
    if any(v < minimum for v in items):
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{op_name}: {arg} must be {kind}, got {value!r}")
    return tuple(int(v) for v in items)


def conv_padding(op_name, padding, kernel, dilation, stride, size=2):
    """(before, total) padding per spatial dimension; "same" puts any odd extra after, as torch."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * size, (0,) * size
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op_name}: padding='same' needs stride 1, got stride {stride}")
            total = tuple(d * (k - 1) for d, k in zip(dilation, kernel))
            return tuple(t // 2 for t in total), total
        raise ValueError(
            f"{op_name}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}"
        )
    before = pair(op_name, "padding", padding, 0, size)
    return before, tuple(2 * p for p in before)


def conv_geometry(ctx, x, weight, bias, stride, padding, dilation, groups, spatial):
    """Validate a convolution's inputs; return (stride, padding before, total padding,
    dilation, output size), one entry per spatial dimension."""
    name = ctx.op.name
    if x.ndim not in (spatial + 1, spatial + 2):
        raise ctx.error(
            f"input must be {spatial + 2}-D (N, C, {'L' if spatial == 1 else 'H, W'}) or "
            f"{spatial + 1}-D without the batch dimension",
            x,
            weight,
            bias,
        )
    if weight.ndim != spatial + 2:
        raise ctx.error(
            f"weight must be {spatial + 2}-D (out_channels, in_channels/groups, "
            f"{'kL' if spatial == 1 else 'kH, kW'})",
            x,
            weight,
            bias,
        )
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{name}: groups must be a positive int, got {groups!r}")
    stride = pair(name, "stride", stride, 1, spatial)
    dilation = pair(name, "dilation", dilation, 1, spatial)
    kernel = weight.shape[2:]
    before, total = conv_padding(name, padding, kernel, dilation, stride, spatial)
    channels = x.shape[-spatial - 1]
    out_channels = weight.shape[0]
    if channels != weight.shape[1] * groups:
        raise ctx.error(
            f"the input has {channels} channels but weight expects in_channels/groups = "
            f"{weight.shape[1]} with groups={groups}, i.e. {weight.shape[1] * groups}",
            x,
            weight,
            bias,
        )
    if out_channels % groups:
        raise ctx.error(
            f"out_channels {out_channels} is not divisible by groups={groups}", x, weight, bias
        )
    if bias.shape != (out_channels,):
        raise ctx.error(f"bias must have shape ({out_channels},)", x, weight, bias)
    out_size = []
    for size, k, d, s, t in zip(x.shape[-spatial:], kernel, dilation, stride, total):
        extent = d * (k - 1) + 1
        if k == 0 or extent > size + t:
            raise ctx.error(
                f"the kernel (extent {extent} with dilation {d}) is larger than the padded "
                f"input ({size} + padding {t}); pad the input or use a smaller kernel",
                x,
                weight,
                bias,
            )
        out_size.append((size + t - extent) // s + 1)
    return stride, before, total, dilation, tuple(out_size)


def column_layout(stride, kernel_width, group_channels, out_width, padded_width):
    """The column layout (see firefly.kernels.conv) that a convolution uses: "positions"
    (position-major), or taps-major "wide" or "exact". Measured fwd+bwd, float32,
    single-threaded, batch 16 to 64:

    - wide needs stride 1, and is taken over exact with at most a fifth more columns: the exact
      gather won at 8x8 with 3x3 kernels (a quarter to a third more columns wide), the wide
      contiguous copies at 28x28 with 5x5 (a sixth more).
    - positions copies runs of KW * Cg values: at runs of 3 to 12 (1 to 4 channels at 3x3, 1
      at 5x5) the taps-major copies (one tap of a whole image each) won by up to 40% or tied;
      at runs of 20 to 96, positions won by 3 to 20% (8x8 and 16x16 images, 28x28 with 5x5),
      except against wide with at most a tenth more columns (28x28 padded by 1, 3x3), which
      won by 2 to 7% from 8 to 64 channels.
    """
    wide = stride == (1, 1) and 5 * padded_width <= 6 * out_width
    if kernel_width * group_channels >= 16 and not (wide and 10 * padded_width <= 11 * out_width):
        return "positions"
    return "wide" if wide else "exact"


class ColumnPlan(NamedTuple):
    """How a convolution of x4 (N, C, H, W) by w4 (O, Cg, KH, KW) runs through columns: the
    layout (see column_layout), the kernels' geometry arguments and the scratch shapes."""

    layout: str
    by_position: bool
    out_size: tuple
    # stride, padding before, dilation and the layout's arguments, flattened: taps-major's
    # padded width and wide flag, position-major's thread count (the samples' shares)
    geometry: tuple
    planes: tuple
    product: tuple
    cols: tuple


def column_plan(x4_shape, w4_shape, stride, before, total, dilation, out_size):
    N, C, H, W = x4_shape
    O, Cg, KH, KW = w4_shape
    groups = C // Cg
    Hp, Wp = H + total[0], W + total[1]
    layout = column_layout(stride, KW, Cg, out_size[1], Wp)
    geometry = (*stride, *before, *dilation)
    if layout == "positions":
        positions = N * out_size[0] * out_size[1]
        return ColumnPlan(
            layout,
            True,
            out_size,
            geometry + (blas_kernel_threads(N),),
            (N, Hp, Wp * C),
            (positions, O // groups),
            (groups, positions, Cg * KH * KW),
        )
    wide = layout == "wide"
    columns = N * out_size[0] * (Wp if wide else out_size[1])
    return ColumnPlan(
        layout,
        False,
        out_size,
        geometry + (Wp, wide),
        (N, C, Hp * Wp + (dilation[1] * (KW - 1) if wide else 0)),
        (O // groups, columns),
        (groups, Cg * KH * KW, columns),
    )


def columns_forward(kernels, x4, w4, bias, plan):
    """The convolution through im2col with ``kernels`` (an op's conv forward kernels: [0]
    taps-major, [1] position-major): its output (N, O, OH, OW) and the columns, which
    columns_backward reads."""
    planes = POOL.take(plan.planes, x4.dtype)
    product = POOL.take(plan.product, x4.dtype)
    cols = POOL.lease(plan.cols, x4.dtype)
    out = np.empty((x4.shape[0], w4.shape[0]) + plan.out_size, dtype=x4.dtype)
    with single_threaded_blas():  # BLAS on one thread: see the note above TILE_MIN_POSITIONS
        kernels[plan.by_position](x4, w4, bias, *plan.geometry, planes, cols, product, out)
    POOL.give(planes)
    POOL.give(product)
    return out, cols


def columns_backward(kernels, grad4, w4, cols, plan, need_dx, need_dweight, dx, dweight, dbias):
    """The convolution's gradients through ``kernels`` (an op's conv backward kernels, indexed
    as columns_forward's) from grad4 (N, O, OH, OW) and the forward's columns (only their shape
    when not ``need_dweight``): dweight, dbias (grad4 summed per channel) and, with
    ``need_dx``, dx (N, C, H, W) by col2im."""
    O = w4.shape[0]
    if plan.by_position:  # cols (groups, positions, taps)
        groups, positions, _ = cols.shape
        g2 = POOL.take((groups, positions, O // groups), grad4.dtype)
        dcols = POOL.take(cols.shape if need_dx else (0, 0, 0), grad4.dtype)
    else:  # cols (groups, taps, columns); dcols holds one group's at a time
        _, taps, columns = cols.shape
        g2 = POOL.take((O, columns), grad4.dtype)
        dcols = POOL.take((taps if need_dx else 0, columns), grad4.dtype)
    planes = POOL.take(plan.planes if need_dx else (0,) * len(plan.planes), grad4.dtype)
    with single_threaded_blas():  # BLAS on one thread: see the note above TILE_MIN_POSITIONS
        kernels[plan.by_position](
            grad4,
            w4,
            cols,
            *plan.geometry,
            need_dx,
            need_dweight,
            g2,
            dcols,
            planes,
            dweight,
            dbias,
            dx,
        )
    for scratch in (g2, dcols, planes):
        POOL.give(scratch)


# The whole-batch layouts (images under TILE_MIN_POSITIONS) run their GEMMs with BLAS on one
# thread. Their products are small ((4096 x 144) x (144 x 32) in the digits CNN), and on the
# shared 2-core machine OpenBLAS's second thread waited for a core: a digits CNN epoch
# (benchmarks/bench_training.py, default threads, load 7) took 637 ms with BLAS's two threads
# and 358 ms with one, alternated in one process (torch: 2644 ms). The position-major kernels
# use the other cores through Numba instead: each thread takes a block of samples and its rows
# of the GEMMs (plan.geometry's thread count, blas_kernel_threads).
#
# The tiled layout (conv2d_tiles_*) is taken from this many output positions per image.
# Measured fwd+bwd, float32, one thread, process CPU time beside torch in one process (the
# machine was loaded): from 256 positions the tiles won over the whole-batch layouts, by 10-20%
# at (32,32,16,16)->64 3x3 pad 1, (32,64,32,32)->64 and stride 2 (32,32,32,32)->64, by half at
# (64,1,28,28)->6 5x5; at 64 positions (8x8 images: 1->16 and 16->32 channels, pad 1, and
# 16->32 unpadded) the whole-batch layouts were 1.2-2.6x faster than tiles.
TILE_MIN_POSITIONS = 256
# Columns per tile: as many samples as make at least this many, or blocks of a sample's output
# rows of at least this many (256 and 512 measured within noise of each other at the shapes
# above; a whole 32x32 sample per tile, 1088 columns, 10-15% slower; 256 columns stay in L2).
TILE_COLUMNS = 256
# Channels per group from which the wide tiles skip the columns in the forward and the input
# gradient (conv2d_tiles_*'s ``shifted``): one (O, Cg) x (Cg, L) product per tap on shifted
# views of the padded planes instead of one (O, Cg*KH*KW) x (Cg*KH*KW, L) product on copied
# columns. One thread, float32, O = 64, L = 272-1088: the nine shifted products ran at
# 97-110 GFLOP/s at Cg = 32 and 64, the product on columns at 93-97 before the copies; the
# weight gradient's shifted products ran at 58-74, so it keeps its columns. fwd+bwd of
# (32,C,32,32)->2C 3x3 pad 1, one thread, CPU time: shifted 12% faster at C = 16, 1-6% at 8,
# and 4% slower at 4 (products of K = 4).
SHIFTED_MIN_CHANNELS = 8


def blas_kernel_threads(batch):
    """How many threads a kernel that calls BLAS from each of them (run_shares' shares) shares
    ``batch`` samples out over: Numba's thread count, or one where BLAS's thread count cannot
    be limited, which then keeps its own threads."""
    return min(thread_count() if can_limit_blas_threads() else 1, batch)


def tile_plan(batch, out_size, padded_width, stride, group_channels):
    """(tiles run at once, samples per tile, output rows per block, wide, shifted) for the
    tiled layout, or None where the whole-batch layouts (column_layout) measured faster. A tile
    is one sample in blocks of output rows when a sample has twice TILE_COLUMNS columns or
    more, otherwise whole samples, as many as make TILE_COLUMNS (docs/performance.md has the
    measurements). Wide columns (see column_layout) whenever they add at most a fifth: at
    16x16 and 32x32 the exact gather cost more than the wide layout's extra GEMM work (fwd+bwd
    18.6 against 17.6 ms and 144 against 117 ms of CPU time, one thread). At a stride across
    of 2 the wide columns are those of the padded planes split into the stride's phases,
    ceil(Wp / 2) of them per output row, which beat the exact gather at stride 2
    (docs/performance.md, "Convolution, session 34"). Shifted products (no columns in the
    forward and the input gradient) with wide one-sample tiles of at least
    SHIFTED_MIN_CHANNELS channels per group."""
    OH, OW = out_size
    if OH * OW < TILE_MIN_POSITIONS:
        return None
    phase_width = -(-padded_width // stride[1])
    wide = stride[1] <= 2 and 5 * phase_width <= 6 * OW  # the kernels split strides <= 2
    per_row = phase_width if wide else OW
    threads = blas_kernel_threads(batch)
    blocks = OH * per_row // TILE_COLUMNS  # each of at least TILE_COLUMNS, near-equal heights
    if blocks > 1:
        samples, rows = 1, -(-OH // blocks)
    else:
        samples, rows = min(-(-TILE_COLUMNS // (OH * per_row)), -(-batch // threads)), OH
    shifted = wide and samples == 1 and group_channels >= SHIFTED_MIN_CHANNELS
    return threads, samples, rows, wide, shifted


class _ConvNd(Op):
    arity = 3
    # [0] the taps-major layout's kernels, [1] the position-major ones (see column_layout), [2]
    # the 1x1 convolution's, which needs no columns.
    forward_kernel = (
        K.conv2d_taps_forward,
        K.conv2d_positions_forward,
        K.conv2d_pointwise_forward,
        K.conv2d_tiles_forward,
    )
    backward_kernel = (
        K.conv2d_taps_backward,
        K.conv2d_positions_backward,
        K.conv2d_pointwise_backward,
        K.conv2d_tiles_backward,
    )
    spatial = 2

    @staticmethod
    def forward(ctx, x, weight, bias, stride=1, padding=0, dilation=1, groups=1):
        spatial = ctx.op.spatial
        stride, before, total, dilation, out_size = conv_geometry(
            ctx, x, weight, bias, stride, padding, dilation, groups, spatial
        )
        microkernel.load()  # the kernels' products call it
        unbatched = x.ndim == spatial + 1
        x4, w4 = x.reshape((1,) * unbatched + x.shape), weight
        if spatial == 1:  # a sequence is an image of height 1
            x4 = x4.reshape(x4.shape[0], x4.shape[1], 1, x4.shape[2])
            w4 = weight.reshape(weight.shape[0], weight.shape[1], 1, weight.shape[2])
            stride, before, total = (1,) + stride, (0,) + before, (0,) + total
            dilation, out_size = (1,) + dilation, (1,) + out_size
        N, C, H, W = x4.shape
        O, Cg, KH, KW = w4.shape
        ctx.shapes = (x.shape, weight.shape, x4.shape, (N, O) + out_size)
        if KH == KW == 1 and stride == (1, 1) and total == (0, 0):
            x3 = np.ascontiguousarray(x4).reshape(N, C, H * W)
            out = np.empty((N, O, H * W), dtype=x.dtype)
            ctx.op.forward_kernel[2](x3, w4.reshape(O, Cg), bias, blas_kernel_threads(N), out)
            ctx.save_for_backward(w4, x3)
            ctx.layout = "pointwise"
        elif (tiles := tile_plan(N, out_size, W + total[1], stride, Cg)) is not None:
            out = ctx.op._forward_by_tiles(
                ctx, x4, w4, bias, stride, before, total, dilation, tiles
            )
        else:
            plan = column_plan(x4.shape, w4.shape, stride, before, total, dilation, out_size)
            out, cols = columns_forward(ctx.op.forward_kernel, x4, w4, bias, plan)
            ctx.save_for_backward(w4, cols)
            ctx.layout, ctx.plan = plan.layout, plan
        out = out.reshape((N, O) + out_size[2 - spatial :])
        return out[0] if unbatched else out

    @staticmethod
    def _forward_by_tiles(ctx, x4, w4, bias, stride, before, total, dilation, plan):
        """The convolution a tile of samples at a time per thread (conv2d_tiles_forward): its
        output, and on ctx the input and geometry that backward recomputes the columns from."""
        N, C, H, W = x4.shape
        O, _, KH, KW = w4.shape
        OH, OW = ctx.shapes[3][2:]
        threads, samples, rows, wide, shifted = plan
        Hp, Wp = H + total[0], W + total[1]
        if wide:  # the padded planes split into the stride's phases, Hq x Wq each
            phases, Hq, Wq = stride[0] * stride[1], -(-Hp // stride[0]), -(-Wp // stride[1])
            plane = Hq * Wq + dilation[1] * (KW - 1) // stride[1]
        else:
            phases, Wq, plane = 1, Wp, Hp * Wp
        columns = samples * rows * (Wq if wide else OW)
        plane_shape = (threads, samples, phases * C, plane)
        x4 = np.ascontiguousarray(x4)
        planes = POOL.take(plane_shape, x4.dtype)
        cols = POOL.take((threads, 0 if shifted else C * KH * KW, columns), x4.dtype)
        product = POOL.take((threads, O, columns), x4.dtype)
        out = np.empty((N, O, OH, OW), dtype=x4.dtype)
        ctx.op.forward_kernel[3](
            x4,
            w4,
            bias,
            *stride,
            *before,
            *dilation,
            Wq,
            wide,
            rows,
            shifted,
            planes,
            cols,
            product,
            out,
        )
        for scratch in (planes, cols, product):
            POOL.give(scratch)
        ctx.save_for_backward(w4, x4)
        ctx.layout = "tiles"
        ctx.geometry = (stride, before, dilation, Wq, wide, rows, shifted)
        ctx.plane_shape, ctx.tile_columns = plane_shape, columns
        return out

    @staticmethod
    def _backward_by_tiles(ctx, grad, w4, x4, need_dx, dx, dweight, dbias):
        stride, before, dilation, Wq, wide, rows, shifted = ctx.geometry
        threads, columns = ctx.plane_shape[0], ctx.tile_columns
        O, Cg, KH, KW = w4.shape
        taps = x4.shape[1] * KH * KW
        planes = POOL.take(ctx.plane_shape, grad.dtype)
        # shifted: the weight gradient from g2 transposed and the planes, without columns
        cols = POOL.take((threads, 0 if shifted else taps, columns), grad.dtype)
        g2 = POOL.take((threads, O, columns), grad.dtype)
        g2t = POOL.take((threads, columns if shifted else 0, O), grad.dtype)
        dcols = POOL.take((threads, taps if need_dx and not shifted else 0, columns), grad.dtype)
        dplanes = POOL.take(ctx.plane_shape if need_dx else (threads, 0, 0, 0), grad.dtype)
        dw_tiles = POOL.take((threads, Cg * KH * KW, O), grad.dtype)
        ctx.op.backward_kernel[3](
            np.ascontiguousarray(grad).reshape(ctx.shapes[3]),
            x4,
            w4,
            *stride,
            *before,
            *dilation,
            Wq,
            wide,
            rows,
            shifted,
            need_dx,
            planes,
            cols,
            g2,
            g2t,
            dcols,
            dplanes,
            dw_tiles,
            dweight,
            dbias,
            dx,
        )
        for scratch in (planes, cols, g2, g2t, dcols, dplanes, dw_tiles):
            POOL.give(scratch)

    @staticmethod
    def decomposition(x, weight, bias, stride=1, padding=0, dilation=1, groups=1):
        # Patches of x taken at precomputed positions (the padding from one zero appended),
        # and one batched product per group.
        from firefly.ops import apply

        op = Conv1d if weight.ndim == 3 else Conv2d
        spatial = op.spatial
        stride, before, _, dilation, out_size = conv_geometry(
            Context(op, ()),
            x.numpy(),
            weight.numpy(),
            bias.numpy(),
            stride,
            padding,
            dilation,
            groups,
            spatial,
        )
        unbatched = x.ndim == spatial + 1
        lift = (1,) * (2 - spatial)  # a sequence is an image of height 1
        x4 = x.reshape((1,) * unbatched + x.shape[:-spatial] + lift + x.shape[-spatial:])
        w4 = weight.reshape(weight.shape[:2] + lift + weight.shape[2:])
        stride, dilation, out_size = (lift + t for t in (stride, dilation, out_size))
        before = (0,) * (2 - spatial) + before
        N, C, H, W = x4.shape
        channels_out, Cg, KH, KW = w4.shape
        n, g, oh, ow, c, kh, kw = np.ix_(
            *(np.arange(d) for d in (N, groups, *out_size, Cg, KH, KW))
        )
        ih = oh * stride[0] - before[0] + kh * dilation[0]
        iw = ow * stride[1] - before[1] + kw * dilation[1]
        inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        flat = ((n * C + g * Cg + c) * H + ih) * W + iw
        positions = np.where(inside, flat, N * C * H * W).astype(np.int64)
        padded = apply("cat", x4.reshape(-1), type(x)(np.zeros(1, dtype=x.dtype)), dim=0)
        taps = Cg * KH * KW
        cols = apply("take", padded, index=positions).reshape(N, groups, -1, taps)
        kernels = w4.reshape(groups, channels_out // groups, taps).transpose(-1, -2)
        out = (cols @ kernels).transpose(-1, -2).reshape((N, channels_out) + out_size)
        out = (out + bias.reshape(1, channels_out, 1, 1)).reshape(
            (N, channels_out) + out_size[2 - spatial :]
        )
        return out[0] if unbatched else out

    @staticmethod
    def backward(ctx, grad):
        microkernel.load()
        w4, saved = ctx.saved_tensors
        x_shape, w_shape, x4_shape, out4_shape = ctx.shapes
        need_dx = ctx.needs_input_grad[0]
        dx = np.empty(x4_shape if need_dx else (1, 1, 1, 1), dtype=grad.dtype)
        dweight = np.empty(w4.shape, dtype=grad.dtype)
        dbias = np.empty(w4.shape[0], dtype=grad.dtype)
        if ctx.layout == "pointwise":  # saved: the input as (N, C, H * W)
            N, O = out4_shape[:2]
            ctx.op.backward_kernel[2](
                np.ascontiguousarray(grad).reshape(N, O, saved.shape[2]),
                saved,
                w4.reshape(w4.shape[:2]),
                need_dx,
                ctx.needs_input_grad[1],
                blas_kernel_threads(N),
                dweight.reshape(w4.shape[:2]),
                dbias,
                dx.reshape(saved.shape if need_dx else (1, 1, 1)),
            )
        elif ctx.layout == "tiles":  # saved: the input (N, C, H, W)
            ctx.op._backward_by_tiles(ctx, grad, w4, saved, need_dx, dx, dweight, dbias)
        else:
            columns_backward(
                ctx.op.backward_kernel,
                grad.reshape(out4_shape),
                w4,
                saved,
                ctx.plan,
                need_dx,
                ctx.needs_input_grad[1],
                dx,
                dweight,
                dbias,
            )
        return (
            (dx.reshape(x_shape) if need_dx else None),
            (dweight.reshape(w_shape) if ctx.needs_input_grad[1] else None),
            (dbias if ctx.needs_input_grad[2] else None),
        )

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        # The battery's shape seeds the sizes; groups, stride, padding and dilation are drawn.
        dims = [int(d) for d in shape] + [2, 3, 2, 3]
        groups = int(rng.integers(1, 3))
        # A quarter of the samples copy tap runs of KW * Cg >= 16 (8 channels per group, a kernel
        # at least 2 wide), which on images this small take the position-major column layout; a
        # quarter are 1x1 convolutions; a quarter have TILE_MIN_POSITIONS output positions or
        # more and take the tiled layout; the others take the taps-major layout (column_layout).
        layout = int(rng.integers(4))  # 0 position-major, 1 taps-major, 2 pointwise, 3 tiled
        long_runs = layout == 0
        channels, out_channels = (
            groups * (8 if long_runs else min(dims[0], 2)),
            groups * min(dims[1], 2),
        )
        if layout == 3:  # large images: one channel per group keeps the battery's checks quick
            channels = out_channels = groups
        kernel = tuple(
            int(rng.integers(2 if long_runs and i == cls.spatial - 1 else 1, 4))
            for i in range(cls.spatial)
        )
        dilation = tuple(int(rng.integers(1, 3)) for _ in range(cls.spatial))
        padding = tuple(int(rng.integers(0, 2)) for _ in range(cls.spatial))
        stride = tuple(int(rng.integers(1, 3)) for _ in range(cls.spatial))
        if layout == 2:  # a 1x1 convolution, which needs no columns
            kernel, padding, stride = (1,) * cls.spatial, (0,) * cls.spatial, (1,) * cls.spatial
        size = tuple(
            max(d * (k - 1) + 1, 2 + dims[2 + i]) for i, (d, k) in enumerate(zip(dilation, kernel))
        )
        if layout == 3:  # each output side at least TILE_MIN_POSITIONS ** (1 / spatial)
            side = int(np.ceil(TILE_MIN_POSITIONS ** (1 / cls.spatial)))
            size = tuple(
                d * (k - 1) + 1 + s * (side - 1) for d, k, s in zip(dilation, kernel, stride)
            )
        x = rng.uniform(-2.0, 2.0, size=(min(dims[0], 2), channels) + size)
        weight = rng.uniform(-1.0, 1.0, size=(out_channels, channels // groups) + kernel)
        bias = rng.uniform(-1.0, 1.0, size=out_channels)
        attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        return (x.astype(dtype), weight.astype(dtype), bias.astype(dtype)), attrs


@register
class Conv2d(_ConvNd):
    name = "conv2d"
    spatial = 2


@register
class Conv1d(_ConvNd):
    name = "conv1d"
    spatial = 1


def conv_transpose_geometry(
    ctx, x, weight, bias, stride, padding, output_padding, groups, dilation, spatial
):
    """Validate a transposed convolution's inputs; return (stride, padding, dilation, output
    size), one entry per spatial dimension. Its output size is the input size of the
    convolution whose input gradient it is: (in - 1) * stride - 2 * padding
    + dilation * (kernel - 1) + output_padding + 1."""
    name = ctx.op.name
    dims = "L" if spatial == 1 else "H, W"
    if x.ndim not in (spatial + 1, spatial + 2):
        raise ctx.error(
            f"input must be {spatial + 2}-D (N, C, {dims}) or {spatial + 1}-D without the batch "
            "dimension",
            x,
            weight,
            bias,
        )
    if weight.ndim != spatial + 2:
        raise ctx.error(
            f"weight must be {spatial + 2}-D (in_channels, out_channels/groups, "
            f"{'kL' if spatial == 1 else 'kH, kW'})",
            x,
            weight,
            bias,
        )
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{name}: groups must be a positive int, got {groups!r}")
    stride = pair(name, "stride", stride, 1, spatial)
    padding = pair(name, "padding", padding, 0, spatial)
    output_padding = pair(name, "output_padding", output_padding, 0, spatial)
    dilation = pair(name, "dilation", dilation, 1, spatial)
    if any(o >= s for o, s in zip(output_padding, stride)):
        raise ValueError(
            f"{name}: output_padding {output_padding} must be smaller than stride {stride}"
        )
    channels = x.shape[-spatial - 1]
    if channels != weight.shape[0] or weight.shape[0] % groups:
        raise ctx.error(
            f"the input has {channels} channels but weight expects in_channels = "
            f"{weight.shape[0]}, divisible by groups={groups}",
            x,
            weight,
            bias,
        )
    out_channels = weight.shape[1] * groups
    if bias.shape != (out_channels,):
        raise ctx.error(f"bias must have shape ({out_channels},)", x, weight, bias)
    out_size = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + o + 1
        for n, s, p, d, k, o in zip(
            x.shape[-spatial:], stride, padding, dilation, weight.shape[2:], output_padding
        )
    )
    if min(x.shape[-spatial:]) < 1 or min(weight.shape[2:]) < 1 or min(out_size) < 1:
        raise ctx.error(
            f"the output size {out_size} would be empty (padding {padding} too large for the "
            "kernel and input)",
            x,
            weight,
            bias,
        )
    return stride, padding, dilation, out_size


class _ConvTransposeNd(Op):
    """``apply("conv_transpose2d", x, weight, bias, stride=1, padding=0, output_padding=0,
    groups=1, dilation=1)``, torch's weight layout (in_channels, out_channels / groups, kH, kW).

    A transposed convolution is the input gradient of the convolution by the same weight: the
    forward runs the conv kernels' backward (dx only), and the backward their forward (the
    input's gradient is the convolution of the output's gradient, whose columns then give the
    weight's gradient through the conv backward kernel, dweight only). The conv's O is this
    op's in_channels, and its input channels this op's out_channels."""

    arity = 3
    # [0..2] the conv backward kernels, indexed as conv's ([0] taps-major, [1] position-major,
    # [2] 1x1), run for dx only; [3] adds the bias.
    forward_kernel = (
        K.conv2d_taps_backward,
        K.conv2d_positions_backward,
        K.conv2d_pointwise_backward,
        K.add_channel_bias,
    )
    # [0..2] the conv forward kernels, [3..5] the conv backward ones (for dweight only), [6] the
    # bias gradient.
    backward_kernel = (
        K.conv2d_taps_forward,
        K.conv2d_positions_forward,
        K.conv2d_pointwise_forward,
        K.conv2d_taps_backward,
        K.conv2d_positions_backward,
        K.conv2d_pointwise_backward,
        K.channel_sums,
    )
    spatial = 2

    @staticmethod
    def forward(ctx, x, weight, bias, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        spatial = ctx.op.spatial
        stride, padding, dilation, out_size = conv_transpose_geometry(
            ctx, x, weight, bias, stride, padding, output_padding, groups, dilation, spatial
        )
        microkernel.load()  # the kernels' products call it
        unbatched = x.ndim == spatial + 1
        x4, w4 = x.reshape((1,) * unbatched + x.shape), weight
        if spatial == 1:  # a sequence is an image of height 1
            x4 = x4.reshape(x4.shape[0], x4.shape[1], 1, x4.shape[2])
            w4 = weight.reshape(weight.shape[0], weight.shape[1], 1, weight.shape[2])
            stride, padding, dilation = (1,) + stride, (0,) + padding, (1,) + dilation
            out_size = (1,) + out_size
        N, Cin, H, W = x4.shape
        Cg, KH, KW = w4.shape[1:]
        out4 = np.empty((N, Cg * groups) + out_size, dtype=x.dtype)
        dbias = np.empty(Cin, dtype=x.dtype)  # the kernels' sum of x per channel, unused
        unused_dweight = np.empty(w4.shape, dtype=x.dtype)  # not written without need_dweight
        if KH == KW == 1 and stride == (1, 1) and padding == (0, 0):
            x3 = np.ascontiguousarray(x4).reshape(N, Cin, H * W)
            ctx.op.forward_kernel[2](
                x3,
                np.empty((0, Cg * groups, 0), dtype=x.dtype),  # only its channel count is read
                w4.reshape(Cin, Cg),
                True,
                False,
                blas_kernel_threads(N),
                unused_dweight.reshape(Cin, Cg),
                dbias,
                out4.reshape(N, Cg * groups, H * W),
            )
            ctx.plan = None
        else:
            total = tuple(2 * p for p in padding)
            plan = column_plan(out4.shape, w4.shape, stride, padding, total, dilation, (H, W))
            columns_backward(
                ctx.op.forward_kernel,
                x4,
                w4,
                np.empty(plan.cols, dtype=x.dtype),  # only its shape is read
                plan,
                True,
                False,
                out4,
                unused_dweight,
                dbias,
            )
            ctx.plan = plan
        ctx.op.forward_kernel[3](out4.reshape(N, Cg * groups, -1), bias)
        ctx.save_for_backward(x4, w4)
        ctx.shapes = (x.shape, weight.shape, out4.shape)
        out = out4.reshape((N, Cg * groups) + out_size[2 - spatial :])
        return out[0] if unbatched else out

    @staticmethod
    def backward(ctx, grad):
        microkernel.load()
        x4, w4 = ctx.saved_tensors
        x_shape, w_shape, out4_shape = ctx.shapes
        grad4 = np.ascontiguousarray(grad).reshape(out4_shape)
        need_dx, need_dweight = ctx.needs_input_grad[:2]
        Cin = x4.shape[1]
        no_bias = np.zeros(Cin, dtype=grad.dtype)
        dweight = np.empty(w4.shape, dtype=grad.dtype)
        unused_sum = np.empty(Cin, dtype=grad.dtype)
        dbias = np.empty(grad4.shape[1], dtype=grad.dtype)
        if ctx.needs_input_grad[2]:
            ctx.op.backward_kernel[6](grad4.reshape(grad4.shape[0], grad4.shape[1], -1), dbias)
        no_dx = np.empty((0,) * 4, dtype=grad.dtype)
        if ctx.plan is None:  # 1x1, stride 1, no padding: products without columns
            N, Cout, P = grad4.shape[0], grad4.shape[1], x4.shape[2] * x4.shape[3]
            g3 = grad4.reshape(N, Cout, P)
            dx = np.empty((N, Cin, P), dtype=grad.dtype)
            ctx.op.backward_kernel[2](g3, w4.reshape(Cin, -1), no_bias, blas_kernel_threads(N), dx)
            if need_dweight:
                ctx.op.backward_kernel[5](
                    np.ascontiguousarray(x4).reshape(N, Cin, P),
                    g3,
                    w4.reshape(Cin, -1),
                    False,
                    True,
                    blas_kernel_threads(N),
                    dweight.reshape(Cin, -1),
                    unused_sum,
                    no_dx.reshape(0, 0, 0),
                )
        else:
            plan = ctx.plan
            dx, cols = columns_forward(ctx.op.backward_kernel, grad4, w4, no_bias, plan)
            if need_dweight:
                columns_backward(
                    ctx.op.backward_kernel[3:],
                    x4,
                    w4,
                    cols,
                    plan,
                    False,
                    True,
                    no_dx,
                    dweight,
                    unused_sum,
                )
        return (
            dx.reshape(x_shape) if need_dx else None,
            dweight.reshape(w_shape) if need_dweight else None,
            dbias if ctx.needs_input_grad[2] else None,
        )

    @staticmethod
    def decomposition(x, weight, bias, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        # Per group, every input position's product with the kernel (weight^T x), added at the
        # output positions it reaches (those cropped by the padding into one spare slot).
        from firefly.ops import apply

        op = ConvTranspose1d if weight.ndim == 3 else ConvTranspose2d
        spatial = op.spatial
        stride, padding, dilation, out_size = conv_transpose_geometry(
            Context(op, ()),
            x.numpy(),
            weight.numpy(),
            bias.numpy(),
            stride,
            padding,
            output_padding,
            groups,
            dilation,
            spatial,
        )
        unbatched = x.ndim == spatial + 1
        lift = (1,) * (2 - spatial)
        x4 = x.reshape((1,) * unbatched + x.shape[:-spatial] + lift + x.shape[-spatial:])
        w4 = weight.reshape(weight.shape[:2] + lift + weight.shape[2:])
        stride, dilation, out_size = (lift + t for t in (stride, dilation, out_size))
        padding = (0,) * (2 - spatial) + padding
        N, Cin, H, W = x4.shape
        _, Cg, KH, KW = w4.shape
        OH, OW = out_size
        Cout = Cg * groups
        n, g, c, kh, kw, ih, iw = np.ix_(*(np.arange(d) for d in (N, groups, Cg, KH, KW, H, W)))
        oh = ih * stride[0] - padding[0] + kh * dilation[0]
        ow = iw * stride[1] - padding[1] + kw * dilation[1]
        inside = (oh >= 0) & (oh < OH) & (ow >= 0) & (ow < OW)
        flat = ((n * Cout + g * Cg + c) * OH + oh) * OW + ow
        size = N * Cout * OH * OW
        positions = np.where(inside, flat, size).astype(np.int64)
        xg = x4.reshape(N, groups, Cin // groups, H * W)
        wg = w4.reshape(groups, Cin // groups, Cg * KH * KW).transpose(-1, -2)
        products = (wg @ xg).reshape(-1)  # (N, groups, Cg * KH * KW, H * W)
        scattered = apply("add_at", products, index=positions.reshape(-1), size=size + 1)
        out = scattered[:size].reshape(N, Cout, OH, OW) + bias.reshape(1, Cout, 1, 1)
        out = out.reshape((N, Cout) + out_size[2 - spatial :])
        return out[0] if unbatched else out

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        # As conv's: a third each of position-major columns (8 output channels per group and a
        # kernel at least 2 wide), taps-major columns, and 1x1 products without columns.
        dims = [int(d) for d in shape] + [2, 3, 2, 3]
        groups = int(rng.integers(1, 3))
        layout = int(rng.integers(3))
        long_runs = layout == 0
        out_channels = groups * (8 if long_runs else min(dims[0], 2))
        in_channels = groups * min(dims[1], 2)
        kernel = tuple(
            int(rng.integers(2 if long_runs and i == cls.spatial - 1 else 1, 4))
            for i in range(cls.spatial)
        )
        dilation = tuple(int(rng.integers(1, 3)) for _ in range(cls.spatial))
        stride = tuple(int(rng.integers(1, 3)) for _ in range(cls.spatial))
        padding = tuple(int(rng.integers(0, 2)) for _ in range(cls.spatial))
        output_padding = tuple(int(rng.integers(0, s)) for s in stride)
        if layout == 2:
            kernel, padding, stride = (1,) * cls.spatial, (0,) * cls.spatial, (1,) * cls.spatial
            output_padding = (0,) * cls.spatial
        size = tuple(1 + dims[2 + i] for i in range(cls.spatial))
        # At most the padding that leaves one output position: (n - 1) s - 2 p + d (k - 1) + o
        # + 1 >= 1 (a 1-wide kernel on 2 inputs with padding 1 has none, which forward refuses).
        padding = tuple(
            min(p, ((n - 1) * s + d * (k - 1) + o) // 2)
            for p, n, s, d, k, o in zip(padding, size, stride, dilation, kernel, output_padding)
        )
        x = rng.uniform(-2.0, 2.0, size=(min(dims[0], 2), in_channels) + size)
        weight = rng.uniform(-1.0, 1.0, size=(in_channels, out_channels // groups) + kernel)
        bias = rng.uniform(-1.0, 1.0, size=out_channels)
        attrs = dict(
            stride=stride,
            padding=padding,
            output_padding=output_padding,
            groups=groups,
            dilation=dilation,
        )
        return (x.astype(dtype), weight.astype(dtype), bias.astype(dtype)), attrs


@register
class ConvTranspose2d(_ConvTransposeNd):
    name = "conv_transpose2d"
    spatial = 2


@register
class ConvTranspose1d(_ConvTransposeNd):
    name = "conv_transpose1d"
    spatial = 1
