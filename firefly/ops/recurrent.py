"""Recurrent layers as ops: ``rnn_layer``, ``lstm_layer`` and ``gru_layer`` each run a whole
sequence through one layer in one direction, forward and backward in one kernel each
(``firefly.kernels.recurrent``).

Inputs, in torch's layouts: ``x`` (T, B, I) time-major, the initial state(s) (B, H), then
``w_ih`` (G * H, I), ``w_hh`` (G * H, H), ``b_ih`` and ``b_hh`` (G * H,) with G = 1, 4 (i, f,
g, o) or 3 (r, z, n). Attributes: ``lengths`` (None, or B ints in 0..T: sequence b is active at
the steps t < lengths[b], its state passes through the others and its output there is zero) and
``reverse`` (run t = T-1 .. 0). ``rnn_layer`` also takes ``nonlinearity`` ("tanh" or "relu").

The output is one array: (T + 1, B, H), the T outputs and the final hidden state, or for the
LSTM (T + 2, B, H), with the final cell state last. ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU``
slice it. The second-order path is the recurrence written with firefly ops (``decomposition``).
"""

import numpy as np

from firefly.kernels import recurrent as K
from firefly.ops.base import Op
from firefly.ops.registry import register

NONLINEARITIES = ("tanh", "relu")


def _check_lengths(ctx, lengths, steps, batch, x):
    """``lengths`` as an int64 array of B values in 0..T (all T when None)."""
    if lengths is None:
        return np.full(batch, steps, dtype=np.int64)
    values = np.asarray(lengths)
    if values.shape != (batch,) or (values.size and values.dtype.kind not in "iu"):
        raise ctx.error(f"lengths must be {batch} integers (one per sequence), got {lengths!r}", x)
    if values.size and (values.min() < 0 or values.max() > steps):
        raise ctx.error(f"lengths must lie in 0..{steps} (the steps of x), got {lengths!r}", x)
    return values.astype(np.int64)


class _RecurrentLayer(Op):
    """What the three layer ops share: the input checks, and the sample inputs."""

    gates = 1  # G: the rows of w_ih per hidden unit
    states = 1  # initial states: h0, or h0 and c0

    @classmethod
    def check(cls, ctx, x, states, w_ih, w_hh, b_ih, b_hh, lengths, reverse):
        """Validates the shapes; returns (T, B, H, lengths as int64)."""
        arrays = (x, *states, w_ih, w_hh, b_ih, b_hh)
        if x.ndim != 3:
            raise ctx.error("x must be (steps, batch, input_size)", *arrays)
        steps, batch, input_size = x.shape
        if w_ih.ndim != 2 or w_ih.shape[0] % cls.gates or w_ih.shape[0] == 0:
            raise ctx.error(f"w_ih must be ({cls.gates} * hidden_size, input_size)", *arrays)
        hidden = w_ih.shape[0] // cls.gates
        expected = {
            "w_ih": (cls.gates * hidden, input_size),
            "w_hh": (cls.gates * hidden, hidden),
            "b_ih": (cls.gates * hidden,),
            "b_hh": (cls.gates * hidden,),
        }
        for (label, shape), a in zip(expected.items(), (w_ih, w_hh, b_ih, b_hh)):
            if a.shape != shape:
                raise ctx.error(f"{label} must be {shape} for input size {input_size}", *arrays)
        for label, state in zip(("h0", "c0"), states):
            if state.shape != (batch, hidden):
                raise ctx.error(f"{label} must be (batch, hidden) = {(batch, hidden)}", *arrays)
        if steps == 0:
            raise ctx.error("x has no steps", *arrays)
        if not isinstance(reverse, (bool, np.bool_)):
            raise ctx.error(f"reverse must be a bool, got {reverse!r}", x)
        return steps, batch, hidden, _check_lengths(ctx, lengths, steps, batch, x)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        # Small sizes from the battery's shape (the op's own rank is fixed): steps from 1 to 5.
        dims = [int(d) for d in shape] + [2, 3, 2]
        steps, batch, input_size, hidden = len(shape) + 1, dims[0], dims[1], min(dims[2], 3)
        x = rng.uniform(-1.5, 1.5, size=(steps, batch, input_size))
        bound = 1.0 / np.sqrt(hidden)
        states = [rng.uniform(-1.0, 1.0, size=(batch, hidden)) for _ in range(cls.states)]
        weights = [
            rng.uniform(-bound, bound, size=s) * 2.0
            for s in (
                (cls.gates * hidden, input_size),
                (cls.gates * hidden, hidden),
                (cls.gates * hidden,),
                (cls.gates * hidden,),
            )
        ]
        attrs = {"reverse": bool(rng.random() < 0.5)}
        if rng.random() < 0.5:
            attrs["lengths"] = tuple(int(n) for n in rng.integers(0, steps + 1, size=batch))
        arrays = (x, *states, *weights)
        return tuple(a.astype(dtype) for a in arrays), attrs


def _step_masks(x, lengths, steps, batch, dtype):
    """Per step, None where every sequence is active, else the (B, 1) float mask of the active
    ones (constants: the decomposition multiplies by them)."""
    if lengths is None or all(int(n) == steps for n in lengths):
        return [None] * steps
    active = np.arange(steps)[:, None] < np.asarray(lengths)[None, :]
    return [type(x)(active[t].astype(dtype).reshape(batch, 1)) for t in range(steps)]


def _unroll(x, states, w_ih, w_hh, b_ih, b_hh, lengths, reverse, cell):
    """The recurrence with firefly ops, one step after another: ``cell(projected_t, h, c)``
    gives the new (h, c) from the input projection of step t. Returns the output array as the
    fused op lays it out."""
    steps, batch, input_size = x.shape
    projected = (x.reshape(steps * batch, input_size) @ w_ih.T + b_ih).reshape(
        steps, batch, w_ih.shape[0]
    )
    masks = _step_masks(x, lengths, steps, batch, x.dtype)
    outputs = [None] * steps
    state = list(states)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        new = cell(projected[t], state, w_hh, b_hh)
        if masks[t] is None:
            state = list(new)
            outputs[t] = new[0]
        else:
            keep = 1.0 - masks[t]
            state = [n * masks[t] + old * keep for n, old in zip(new, state)]
            outputs[t] = new[0] * masks[t]
    return _stacked(outputs + state)


def _stacked(tensors):
    """The tensors joined along a new first dimension, by the ``cat`` op in a balanced tree
    (``firefly.stack`` sits above the ops in the import graph)."""
    from firefly.ops import apply

    parts = [t.unsqueeze(0) for t in tensors]
    while len(parts) > 1:
        paired = [apply("cat", a, b, dim=0) for a, b in zip(parts[0::2], parts[1::2])]
        parts = paired + ([parts[-1]] if len(parts) % 2 else [])
    return parts[0]


@register
class RNNLayer(_RecurrentLayer):
    """``apply("rnn_layer", x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False,
    nonlinearity="tanh")``: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)."""

    name = "rnn_layer"
    arity = 6
    forward_kernel, backward_kernel = K.rnn_forward, K.rnn_backward

    @classmethod
    def forward(
        cls, ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False, nonlinearity="tanh"
    ):
        if nonlinearity not in NONLINEARITIES:
            raise ctx.error(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}", x)
        steps, batch, hidden, counts = cls.check(
            ctx, x, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, reverse
        )
        x2 = x.reshape(steps * batch, x.shape[2])
        relu = nonlinearity == "relu"
        out = np.empty((steps + 1, batch, hidden), dtype=x.dtype)
        cls.forward_kernel(x2, h0, w_ih, w_hh, b_ih, b_hh, counts, bool(reverse), relu, out)
        ctx.save_for_backward(x2, h0, w_ih, w_hh, out)
        ctx.run = (counts, bool(reverse), relu)
        return out

    @classmethod
    def backward(cls, ctx, grad):
        x2, h0, w_ih, w_hh, out = ctx.saved_tensors
        dx, dh0 = np.empty_like(x2), np.empty_like(h0)
        dw_ih, dw_hh, db = (
            np.empty_like(w_ih),
            np.empty_like(w_hh),
            np.empty(w_ih.shape[0], x2.dtype),
        )
        counts, reverse, relu = ctx.run
        cls.backward_kernel(
            np.ascontiguousarray(grad), x2, h0, w_ih, w_hh, counts, reverse, relu, out,
            dx, dh0, dw_ih, dw_hh, db,
        )  # fmt: skip
        steps, batch = out.shape[0] - 1, h0.shape[0]
        grads = (dx.reshape(steps, batch, -1), dh0, dw_ih, dw_hh, db, db.copy())
        return tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad))

    @staticmethod
    def decomposition(
        x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False, nonlinearity="tanh"
    ):
        def cell(projected, state, w_hh, b_hh):
            pre = projected + state[0] @ w_hh.T + b_hh
            return [pre.relu() if nonlinearity == "relu" else pre.tanh()]

        return _unroll(x, [h0], w_ih, w_hh, b_ih, b_hh, lengths, reverse, cell)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        arrays, attrs = super().sample_inputs(rng, shape, dtype)
        attrs["nonlinearity"] = NONLINEARITIES[int(rng.integers(0, 2))]
        return arrays, attrs


@register
class LSTMLayer(_RecurrentLayer):
    """``apply("lstm_layer", x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None,
    reverse=False)``: torch's LSTM cell (gates i, f, g, o) over the sequence."""

    name = "lstm_layer"
    arity = 7
    gates = 4
    states = 2
    forward_kernel, backward_kernel = K.lstm_forward, K.lstm_backward

    @classmethod
    def forward(cls, ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
        steps, batch, hidden, counts = cls.check(
            ctx, x, (h0, c0), w_ih, w_hh, b_ih, b_hh, lengths, reverse
        )
        x2 = x.reshape(steps * batch, x.shape[2])
        out = np.empty((steps + 2, batch, hidden), dtype=x.dtype)
        gates = np.empty((steps, batch, 4 * hidden), dtype=x.dtype)
        cells = np.empty((steps, batch, hidden), dtype=x.dtype)
        cls.forward_kernel(
            x2, h0, c0, w_ih, w_hh, b_ih, b_hh, counts, bool(reverse), out, gates, cells
        )
        ctx.save_for_backward(x2, h0, c0, w_ih, w_hh, out, gates, cells)
        ctx.run = (counts, bool(reverse))
        return out

    @classmethod
    def backward(cls, ctx, grad):
        x2, h0, c0, w_ih, w_hh, out, gates, cells = ctx.saved_tensors
        dx, dh0, dc0 = np.empty_like(x2), np.empty_like(h0), np.empty_like(c0)
        dw_ih, dw_hh, db = (
            np.empty_like(w_ih),
            np.empty_like(w_hh),
            np.empty(w_ih.shape[0], x2.dtype),
        )
        counts, reverse = ctx.run
        cls.backward_kernel(
            np.ascontiguousarray(grad), x2, h0, c0, w_ih, w_hh, counts, reverse, out, gates, cells,
            dx, dh0, dc0, dw_ih, dw_hh, db,
        )  # fmt: skip
        steps, batch = out.shape[0] - 2, h0.shape[0]
        grads = (dx.reshape(steps, batch, -1), dh0, dc0, dw_ih, dw_hh, db, db.copy())
        return tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad))

    @staticmethod
    def decomposition(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
        hidden = h0.shape[1]

        def cell(projected, state, w_hh, b_hh):
            h, c = state
            pre = projected + h @ w_hh.T + b_hh
            i = pre[:, :hidden].sigmoid()
            f = pre[:, hidden : 2 * hidden].sigmoid()
            g = pre[:, 2 * hidden : 3 * hidden].tanh()
            o = pre[:, 3 * hidden :].sigmoid()
            c = f * c + i * g
            return [o * c.tanh(), c]

        return _unroll(x, [h0, c0], w_ih, w_hh, b_ih, b_hh, lengths, reverse, cell)


@register
class GRULayer(_RecurrentLayer):
    """``apply("gru_layer", x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False)``:
    torch's GRU cell (gates r, z, n; r multiplies W_hn h + b_hn) over the sequence."""

    name = "gru_layer"
    arity = 6
    gates = 3
    forward_kernel, backward_kernel = K.gru_forward, K.gru_backward

    @classmethod
    def forward(cls, ctx, x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
        steps, batch, hidden, counts = cls.check(
            ctx, x, (h0,), w_ih, w_hh, b_ih, b_hh, lengths, reverse
        )
        x2 = x.reshape(steps * batch, x.shape[2])
        out = np.empty((steps + 1, batch, hidden), dtype=x.dtype)
        gates = np.empty((steps, batch, 4 * hidden), dtype=x.dtype)
        cls.forward_kernel(x2, h0, w_ih, w_hh, b_ih, b_hh, counts, bool(reverse), out, gates)
        ctx.save_for_backward(x2, h0, w_ih, w_hh, out, gates)
        ctx.run = (counts, bool(reverse))
        return out

    @classmethod
    def backward(cls, ctx, grad):
        x2, h0, w_ih, w_hh, out, gates = ctx.saved_tensors
        dx, dh0 = np.empty_like(x2), np.empty_like(h0)
        dw_ih, dw_hh = np.empty_like(w_ih), np.empty_like(w_hh)
        db_ih, db_hh = np.empty(w_ih.shape[0], x2.dtype), np.empty(w_ih.shape[0], x2.dtype)
        counts, reverse = ctx.run
        cls.backward_kernel(
            np.ascontiguousarray(grad), x2, h0, w_ih, w_hh, counts, reverse, out, gates,
            dx, dh0, dw_ih, dw_hh, db_ih, db_hh,
        )  # fmt: skip
        steps, batch = out.shape[0] - 1, h0.shape[0]
        grads = (dx.reshape(steps, batch, -1), dh0, dw_ih, dw_hh, db_ih, db_hh)
        return tuple(g if need else None for g, need in zip(grads, ctx.needs_input_grad))

    @staticmethod
    def decomposition(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=None, reverse=False):
        hidden = h0.shape[1]

        def cell(projected, state, w_hh, b_hh):
            (h,) = state
            recurrent = h @ w_hh.T + b_hh
            r = (projected[:, :hidden] + recurrent[:, :hidden]).sigmoid()
            z = (projected[:, hidden : 2 * hidden] + recurrent[:, hidden : 2 * hidden]).sigmoid()
            n = (projected[:, 2 * hidden :] + r * recurrent[:, 2 * hidden :]).tanh()
            return [(1.0 - z) * n + z * h]

        return _unroll(x, [h0], w_ih, w_hh, b_ih, b_hh, lengths, reverse, cell)
