"""NumPy references for the recurrent layer ops (``rnn_layer``, ``lstm_layer``, ``gru_layer``):
plain loops over the steps, written independently of the kernels. conftest.py adds them to the
table that test_ops.py checks every op against; test_rnn.py uses them too."""

import numpy as np

import firefly


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


RECURRENT_REFERENCES = {
    "rnn_layer": rnn_reference,
    "lstm_layer": lstm_reference,
    "gru_layer": gru_reference,
}


def _lstm_step(x, v, w):
    """One hidden unit over two steps of x's rows: the weights' four gate rows from w and v."""
    w_ih = firefly.cat([w, v.reshape(1, 3)], 0)
    w_hh = firefly.cat([w[:, :1], v[:1].reshape(1, 1)], 0)
    bias = firefly.cat([v, v[:1]], 0)
    h0, c0 = v[:1].reshape(1, 1), v[1:2].reshape(1, 1)
    out = firefly.ops.apply("lstm_layer", x.reshape(2, 1, 3), h0, c0, w_ih, w_hh, bias, bias * 0.5)
    return x + out[:2].reshape(2, 1)


# Steps that map (x: (2, 3), v: (3,), w: (3, 3)) to a new (2, 3) tensor, as in test_ops.py:
# x's rows are a sequence of two steps.
RECURRENT_COMPOSITION_STEPS = {
    "rnn_layer": lambda x, v, w: firefly.ops.apply(
        "rnn_layer", x.reshape(2, 1, 3), v.reshape(1, 3), w, w.T, v, v * 0.5
    )[:2].reshape(2, 3),
    "gru_layer": lambda x, v, w: (
        x
        + firefly.ops.apply(
            "gru_layer",
            x.reshape(2, 1, 3),
            v[:1].reshape(1, 1),
            w,
            w[:, :1],
            v,
            v * 0.5,
            reverse=True,
        )[:2].reshape(2, 1)
    ),
    "lstm_layer": _lstm_step,
}
