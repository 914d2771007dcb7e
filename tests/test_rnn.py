"""Recurrent layers (RNN, LSTM, GRU, the cells) and nn.utils.rnn against torch in float64 with
torch's state_dict loaded, the layer ops through check_op and gradcheck against central
differences (no torch needed there), and the errors for bad input."""

import itertools

import numpy as np
import pytest

import firefly
from firefly import nn
from firefly.nn.utils import rnn as rnn_utils
from firefly.tensor import Tensor
from firefly.testing import check_op, gradcheck

TOL = 1e-9


# ------------------------------------------------------------------------- NumPy references
def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def np_recurrence(x, states, w_ih, w_hh, b_ih, b_hh, lengths, reverse, cell):
    """The layer ops' output layout from a plain loop: outputs (zero at inactive steps), then
    the final states."""
    steps, batch, _ = x.shape
    lengths = [steps] * batch if lengths is None else list(lengths)
    state = [s.copy() for s in states]
    outputs = np.zeros((steps, batch, states[0].shape[1]))
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        new = cell(x[t] @ w_ih.T + b_ih, [s.copy() for s in state], w_hh, b_hh)
        for b in range(batch):
            if t < lengths[b]:
                for k in range(len(state)):
                    state[k][b] = new[k][b]
                outputs[t, b] = new[0][b]
    return np.concatenate([outputs, np.stack(state)])


def np_rnn_cell(nonlinearity):
    def cell(projected, state, w_hh, b_hh):
        pre = projected + state[0] @ w_hh.T + b_hh
        return [np.maximum(pre, 0.0) if nonlinearity == "relu" else np.tanh(pre)]

    return cell


def np_lstm_cell(projected, state, w_hh, b_hh):
    h, c = state
    H = h.shape[1]
    pre = projected + h @ w_hh.T + b_hh
    i, f, o = _sigmoid(pre[:, :H]), _sigmoid(pre[:, H : 2 * H]), _sigmoid(pre[:, 3 * H :])
    c = f * c + i * np.tanh(pre[:, 2 * H : 3 * H])
    return [o * np.tanh(c), c]


def np_gru_cell(projected, state, w_hh, b_hh):
    (h,) = state
    H = h.shape[1]
    rec = h @ w_hh.T + b_hh
    r = _sigmoid(projected[:, :H] + rec[:, :H])
    z = _sigmoid(projected[:, H : 2 * H] + rec[:, H : 2 * H])
    n = np.tanh(projected[:, 2 * H :] + r * rec[:, 2 * H :])
    return [(1.0 - z) * n + z * h]


def rnn_reference(arrays, attrs):
    x, h0, *weights = arrays
    cell = np_rnn_cell(attrs.get("nonlinearity", "tanh"))
    return np_recurrence(x, [h0], *weights, attrs.get("lengths"), attrs["reverse"], cell)


def lstm_reference(arrays, attrs):
    x, h0, c0, *weights = arrays
    return np_recurrence(
        x, [h0, c0], *weights, attrs.get("lengths"), attrs["reverse"], np_lstm_cell
    )


def gru_reference(arrays, attrs):
    x, h0, *weights = arrays
    return np_recurrence(x, [h0], *weights, attrs.get("lengths"), attrs["reverse"], np_gru_cell)


@pytest.mark.parametrize(
    "name, reference",
    [("rnn_layer", rnn_reference), ("lstm_layer", lstm_reference), ("gru_layer", gru_reference)],
)
def test_check_op_battery(name, reference):
    assert check_op(name, reference=reference)


# ------------------------------------------------------------------ gradcheck through modules
@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_module_gradcheck_without_torch(kind):
    """Two bidirectional layers, initial states, batch_first: the gradients of the input and
    the states against central differences (the weights' through check_op and torch)."""
    firefly.manual_seed(3)
    layer = getattr(nn, kind)(3, 2, num_layers=2, bidirectional=True, batch_first=True).double()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3))
    states = [rng.standard_normal((4, 2, 2)) for _ in range(2 if kind == "LSTM" else 1)]

    def outputs(x, *given):
        out, final = layer(x, tuple(given) if kind == "LSTM" else given[0])
        final = final if kind == "LSTM" else (final,)
        return firefly.cat([out.reshape(-1)] + [f.reshape(-1) for f in final])

    assert gradcheck(outputs, x, *states)


@pytest.mark.parametrize("name", ["rnn_layer", "lstm_layer", "gru_layer"])
def test_layer_op_gradcheck_with_lengths(name):
    rng = np.random.default_rng(1)
    op = firefly.ops.get(name)
    arrays, _ = op.sample_inputs(rng, (3, 2), np.float64)
    steps, batch = arrays[0].shape[:2]
    attrs = {"lengths": tuple(range(steps, steps - batch, -1)), "reverse": True}
    if name == "rnn_layer":
        attrs["nonlinearity"] = "tanh"
    assert gradcheck(name, *arrays, attrs=attrs)
