"""Recurrent layers: one kernel runs a whole sequence through one layer in one direction, and one
kernel runs its backward (backpropagation through time).

Shapes, for T steps, a batch of B, input size I, hidden size H and G gates (1 for the Elman
RNN, 4 for the LSTM, 3 for the GRU), with torch's weight layouts:

- ``x`` (T * B, I), time-major; ``w_ih`` (G * H, I), ``w_hh`` (G * H, H), biases (G * H,);
- ``lengths`` (B,) int64: sequence b is active at the steps t < lengths[b]. At the other steps
  its state passes through unchanged and its output is zero, so that a padded batch of
  variable-length sequences (a PackedSequence) gives each sequence's final state at its own
  length, as torch does. The reverse direction runs t = T-1 .. 0, so it starts each sequence
  at its own last step;
- ``out`` (T + 1, B, H) for the RNN and GRU, (T + 2, B, H) for the LSTM: rows 0 .. T-1 are the
  outputs h_t, row T the final hidden state, row T + 1 the LSTM's final cell state. One array
  so that the layer is one op with one output; the layer slices it.

The input projection of every step is one GEMM before the time loop; each step then does one
GEMM with ``w_hh``, accumulated onto its projection where the cell allows (BLAS through
``firefly.kernels.cblas``), and the gates elementwise. The backward runs the
loop in reverse, keeps the gates' gradients of every step, and finishes with one GEMM each for
the input's and the weights' gradients. BLAS threads the per-step GEMMs itself when they are
large enough (see firefly.kernels.linalg); the elementwise gate math is a few microseconds a
step at torch's benchmark sizes, below the cost of waking a thread pool.
"""

import numpy as np

from firefly.kernels._jit import called_helper, inline_helper, kernel
from firefly.kernels.cblas import gemm
from firefly.kernels.linalg import copy_row, copy_rows
from firefly.kernels.vmath import like, sigmoid, tanh


@called_helper
def _gemm(a, b, out, beta):
    """cblas.gemm as a function of its own: inlined, each of a kernel's products took its own
    copy of gemm's layout checks and copies through type inference and LLVM."""
    gemm(a, b, out, beta)


@inline_helper
def _step_index(s, steps, reverse):
    return steps - 1 - s if reverse else s


@inline_helper
def _previous_index(t, steps, reverse):
    """The step before t in the direction of the loop; -1 or ``steps`` at the start."""
    return t + 1 if reverse else t - 1


# OpenBLAS multiplies by a transposed operand (a transpose flag) about 1.6x slower than by a
# contiguous one at the steps' shapes (20 x 200 @ 200 x 800, measured), and 1.08x slower at the
# input projection's, so the forward kernels copy the weights transposed once and the GEMMs
# read the copy.
@inline_helper
def _input_projection(x, w_ih, b_ih, b_extra, projected):
    """projected (T * B, G * H) = x @ w_ih.T + b_ih (+ b_extra where it has any elements)."""
    _gemm(x, np.ascontiguousarray(w_ih.T), projected, 0.0)
    bias = b_ih + b_extra if b_extra.size > 0 else b_ih
    for n in range(projected.shape[0]):
        row = projected[n]
        for m in range(row.size):
            row[m] += bias[m]


@inline_helper
def _previous_rows(state, t, steps, reverse, lengths, initial, rows):
    """The hidden (or cell) state each sequence had before step t, into ``rows``: ``state``
    holds the outputs (T, B, H), which are zero at inactive steps, and at the start that is
    ``initial``."""
    p = _previous_index(t, steps, reverse)
    for b in range(initial.shape[0]):
        if 0 <= p < steps and p < lengths[b]:
            copy_row(rows[b], state[p, b])
        else:
            copy_row(rows[b], initial[b])


@inline_helper
def _column_sums(rows, sums):
    sums[:] = 0.0
    for n in range(rows.shape[0]):
        row = rows[n]
        for m in range(row.size):
            sums[m] += row[m]


@inline_helper
def _weight_gradients(d_input_gates, d_hidden_gates, x, previous, w_ih, dx, dw_ih, dw_hh):
    """The gradients of the input and of both weights from the gates' gradients of every step
    (T * B rows; the input side's and the hidden side's differ only for the GRU): one GEMM
    each, with ``previous`` the hidden state before each step."""
    _gemm(d_input_gates, w_ih, dx, 0.0)
    _gemm(d_input_gates.T, x, dw_ih, 0.0)
    _gemm(d_hidden_gates.T, previous, dw_hh, 0.0)


@inline_helper
def _add_rows(target, source):
    for k in range(target.size):
        target[k] += source[k]


# The spans loop over a slice of their own from 0: written as loops over v[start:stop] in
# place, a kernel calling both ran its activations 5x slower (1.9 ms against 0.4 for the 560k
# gate values of an LSTM layer's 35 steps at B 20, H 200, float32: not vectorized). They are
# functions of their own, compiled once per dtype for the LSTM's and the GRU's kernels together,
# not inlined at each of their six calls: the layers' steps run at the same speed, and the
# kernels compile in less time (docs/performance.md).
@called_helper
def _sigmoid_span(v, start, stop):
    span = v[start:stop]
    for k in range(span.size):
        span[k] = sigmoid(span[k])


@called_helper
def _tanh_span(v, start, stop):
    span = v[start:stop]
    for k in range(span.size):
        span[k] = tanh(span[k])


# ----------------------------------------------------------------------------------- Elman RNN
@kernel
def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, relu, out):
    """h_t = act(x_t @ w_ih.T + b_ih + h_{t-1} @ w_hh.T + b_hh), act tanh or relu."""
    steps, batch, hidden = out.shape[0] - 1, h0.shape[0], h0.shape[1]
    projected = np.empty((x.shape[0], hidden), dtype=x.dtype)
    _input_projection(x, w_ih, b_ih, b_hh, projected)
    h = h0.copy()
    w_hh_t = np.ascontiguousarray(w_hh.T)  # see _input_projection
    zero = like(0.0, x[0, 0])
    for s in range(steps):
        t = _step_index(s, steps, reverse)
        _gemm(h, w_hh_t, projected[t * batch : (t + 1) * batch], 1.0)
        for b in range(batch):
            if t < lengths[b]:
                pre, h_row, out_row = projected[t * batch + b], h[b], out[t, b]
                if relu:
                    for j in range(hidden):
                        v = pre[j]
                        h_row[j] = v if v > zero else zero
                else:
                    for j in range(hidden):
                        h_row[j] = tanh(pre[j])
                copy_row(out_row, h_row)
            else:
                out[t, b] = 0.0
    copy_rows(out[steps], h)


@kernel
def rnn_backward(grad, x, h0, w_ih, w_hh, lengths, reverse, relu, out, dx, dh0, dw_ih, dw_hh, db):
    """BPTT for ``rnn_forward``; ``db`` is the gradient of b_ih and of b_hh alike."""
    steps, batch, hidden = out.shape[0] - 1, h0.shape[0], h0.shape[1]
    d_pre = np.empty((steps * batch, hidden), dtype=x.dtype)
    previous = np.empty((steps * batch, hidden), dtype=x.dtype)
    dh = grad[steps].copy()
    back = np.empty((batch, hidden), dtype=x.dtype)
    for s in range(steps):
        t = _step_index(s, steps, not reverse)
        for b in range(batch):
            row = d_pre[t * batch + b]
            if t < lengths[b]:
                for j in range(hidden):
                    h = out[t, b, j]
                    d = dh[b, j] + grad[t, b, j]
                    if relu:
                        row[j] = d if h > 0.0 else 0.0 * d
                    else:
                        row[j] = d * (1.0 - h * h)
            else:
                row[:] = 0.0
        _gemm(d_pre[t * batch : (t + 1) * batch], w_hh, back, 0.0)
        for b in range(batch):
            if t < lengths[b]:
                copy_row(dh[b], back[b])
        _previous_rows(out, t, steps, reverse, lengths, h0, previous[t * batch : (t + 1) * batch])
    copy_rows(dh0, dh)
    _weight_gradients(d_pre, d_pre, x, previous, w_ih, dx, dw_ih, dw_hh)
    _column_sums(d_pre, db)


# ---------------------------------------------------------------------------------------- LSTM
@kernel
def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, out, gates, cells):
    """torch's LSTM: gates i, f, g, o in that order along w_ih's rows; c_t = f c_{t-1} + i g,
    h_t = o tanh(c_t). Leaves the activated gates (T, B, 4H) and the cell states (T, B, H,
    zero where inactive) for the backward. Each step's gate math is a few simple loops over a
    row, which LLVM vectorizes (one loop over all four gates at once does not)."""
    steps, batch, hidden = out.shape[0] - 2, h0.shape[0], h0.shape[1]
    flat_gates = gates.reshape(steps * batch, 4 * hidden)
    _input_projection(x, w_ih, b_ih, b_hh, flat_gates)
    h, c = h0.copy(), c0.copy()
    w_hh_t = np.ascontiguousarray(w_hh.T)  # see _input_projection
    for s in range(steps):
        t = _step_index(s, steps, reverse)
        _gemm(h, w_hh_t, gates[t], 1.0)
        for b in range(batch):
            g = gates[t, b]
            if t < lengths[b]:
                _sigmoid_span(g, 0, 2 * hidden)
                _tanh_span(g, 2 * hidden, 3 * hidden)
                _sigmoid_span(g, 3 * hidden, 4 * hidden)
                c_row, h_row, cell_row, out_row = c[b], h[b], cells[t, b], out[t, b]
                for j in range(hidden):
                    cell = g[hidden + j] * c_row[j] + g[j] * g[2 * hidden + j]
                    c_row[j] = cell
                    cell_row[j] = cell
                copy_row(out_row, c_row)
                _tanh_span(out_row, 0, hidden)  # vectorized alone, not inside the loop below
                for j in range(hidden):
                    hj = g[3 * hidden + j] * out_row[j]
                    h_row[j] = hj
                    out_row[j] = hj
            else:
                g[:] = 0.0
                cells[t, b] = 0.0
                out[t, b] = 0.0
    copy_rows(out[steps], h)
    copy_rows(out[steps + 1], c)


@kernel
def lstm_backward(
    grad, x, h0, c0, w_ih, w_hh, lengths, reverse, out, gates, cells, dx, dh0, dc0, dw_ih, dw_hh, db
):
    """BPTT for ``lstm_forward``; ``db`` is the gradient of b_ih and of b_hh alike."""
    steps, batch, hidden = out.shape[0] - 2, h0.shape[0], h0.shape[1]
    d_gates = np.empty((steps * batch, 4 * hidden), dtype=x.dtype)
    previous = np.empty((steps * batch, hidden), dtype=x.dtype)
    dh, dc = grad[steps].copy(), grad[steps + 1].copy()
    back = np.empty((batch, hidden), dtype=x.dtype)
    tanh_cell = np.empty(hidden, dtype=x.dtype)
    c_before = np.empty((batch, hidden), dtype=x.dtype)
    one = like(1.0, x[0, 0])
    for s in range(steps):
        t = _step_index(s, steps, not reverse)
        _previous_rows(cells, t, steps, reverse, lengths, c0, c_before)
        for b in range(batch):
            d = d_gates[t * batch + b]
            if t < lengths[b]:
                g, cell_row, grad_row = gates[t, b], cells[t, b], grad[t, b]
                dh_row, dc_row, before = dh[b], dc[b], c_before[b]
                _add_rows(dh_row, grad_row)  # dh_row is overwritten by the GEMM below
                copy_row(tanh_cell, cell_row)
                _tanh_span(tanh_cell, 0, hidden)  # as in the forward
                for j in range(hidden):
                    tc = tanh_cell[j]
                    go = g[3 * hidden + j]
                    d[3 * hidden + j] = dh_row[j] * tc * go * (one - go)
                    dc_row[j] += dh_row[j] * go * (one - tc * tc)
                for j in range(hidden):
                    gi, gf, gg = g[j], g[hidden + j], g[2 * hidden + j]
                    dc_j = dc_row[j]
                    d[j] = dc_j * gg * gi * (one - gi)
                    d[hidden + j] = dc_j * before[j] * gf * (one - gf)
                    d[2 * hidden + j] = dc_j * gi * (one - gg * gg)
                    dc_row[j] = dc_j * gf
            else:
                d[:] = 0.0
        _gemm(d_gates[t * batch : (t + 1) * batch], w_hh, back, 0.0)
        for b in range(batch):
            if t < lengths[b]:
                copy_row(dh[b], back[b])
        _previous_rows(out, t, steps, reverse, lengths, h0, previous[t * batch : (t + 1) * batch])
    copy_rows(dh0, dh)
    copy_rows(dc0, dc)
    _weight_gradients(d_gates, d_gates, x, previous, w_ih, dx, dw_ih, dw_hh)
    _column_sums(d_gates, db)


# ----------------------------------------------------------------------------------------- GRU
@kernel
def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, out, gates):
    """torch's GRU: r, z, n in that order along the weights' rows;
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h. Leaves r, z, n and
    W_hn h + b_hn per step in ``gates`` (T, B, 4H) for the backward."""
    steps, batch, hidden = out.shape[0] - 1, h0.shape[0], h0.shape[1]
    projected = np.empty((steps * batch, 3 * hidden), dtype=x.dtype)
    _input_projection(x, w_ih, b_ih, b_ih[:0], projected)
    h = h0.copy()
    w_hh_t = np.ascontiguousarray(w_hh.T)  # see _input_projection
    recurrent = np.empty((batch, 3 * hidden), dtype=x.dtype)
    for s in range(steps):
        t = _step_index(s, steps, reverse)
        _gemm(h, w_hh_t, recurrent, 0.0)
        for b in range(batch):
            g = gates[t, b]
            if t < lengths[b]:
                p, r, h_row, out_row = projected[t * batch + b], recurrent[b], h[b], out[t, b]
                _add_rows(r, b_hh)
                for k in range(2 * hidden):
                    g[k] = p[k] + r[k]
                _sigmoid_span(g, 0, 2 * hidden)
                for j in range(hidden):
                    hn = r[2 * hidden + j]
                    g[3 * hidden + j] = hn
                    g[2 * hidden + j] = p[2 * hidden + j] + g[j] * hn
                _tanh_span(g, 2 * hidden, 3 * hidden)
                for j in range(hidden):
                    gz, gn = g[hidden + j], g[2 * hidden + j]
                    hj = gn + gz * (h_row[j] - gn)
                    h_row[j] = hj
                    out_row[j] = hj
            else:
                g[:] = 0.0
                out[t, b] = 0.0
    copy_rows(out[steps], h)


@kernel
def gru_backward(
    grad, x, h0, w_ih, w_hh, lengths, reverse, out, gates, dx, dh0, dw_ih, dw_hh, db_ih, db_hh
):
    """BPTT for ``gru_forward``."""
    steps, batch, hidden = out.shape[0] - 1, h0.shape[0], h0.shape[1]
    one = like(1.0, x[0, 0])
    d_input_gates = np.empty((steps * batch, 3 * hidden), dtype=x.dtype)
    d_hidden_gates = np.empty((steps * batch, 3 * hidden), dtype=x.dtype)
    previous = np.empty((steps * batch, hidden), dtype=x.dtype)
    dh = grad[steps].copy()
    back = np.empty((batch, hidden), dtype=x.dtype)
    for s in range(steps):
        t = _step_index(s, steps, not reverse)
        _previous_rows(out, t, steps, reverse, lengths, h0, previous[t * batch : (t + 1) * batch])
        for b in range(batch):
            di, dhg = d_input_gates[t * batch + b], d_hidden_gates[t * batch + b]
            if t < lengths[b]:
                g, h_before = gates[t, b], previous[t * batch + b]
                dh_row, grad_row = dh[b], grad[t, b]
                _add_rows(dh_row, grad_row)
                for j in range(hidden):
                    gr, gz, gn, hn = g[j], g[hidden + j], g[2 * hidden + j], g[3 * hidden + j]
                    dh_j = dh_row[j]
                    dn = dh_j * (one - gz) * (one - gn * gn)
                    dr = dn * hn * gr * (one - gr)
                    di[j] = dr
                    di[hidden + j] = dh_j * (h_before[j] - gn) * gz * (one - gz)
                    di[2 * hidden + j] = dn
                    dhg[j] = dr
                    dhg[2 * hidden + j] = dn * gr
                    dh_row[j] = dh_j * gz  # the direct path; the GEMM's part is added below
                copy_row(dhg[hidden : 2 * hidden], di[hidden : 2 * hidden])
            else:
                di[:] = 0.0
                dhg[:] = 0.0
        _gemm(d_hidden_gates[t * batch : (t + 1) * batch], w_hh, back, 0.0)
        for b in range(batch):
            if t < lengths[b]:
                _add_rows(dh[b], back[b])
    copy_rows(dh0, dh)
    _weight_gradients(d_input_gates, d_hidden_gates, x, previous, w_ih, dx, dw_ih, dw_hh)
    _column_sums(d_input_gates, db_ih)
    _column_sums(d_hidden_gates, db_hh)
