"""Recurrent layers (RNN, LSTM, GRU, the cells) and nn.utils.rnn against torch in float64 with
torch's state_dict loaded, the layer ops through check_op and gradcheck against central
differences (no torch needed there), and the errors for bad input."""

import itertools

import numpy as np
import pytest
from recurrent_references import RECURRENT_REFERENCES

import firefly
from firefly import nn
from firefly.nn.utils import rnn as rnn_utils
from firefly.tensor import Tensor
from firefly.testing import check_op, gradcheck

TOL = 1e-9


@pytest.mark.parametrize("name", sorted(RECURRENT_REFERENCES))
def test_check_op_battery(name):
    assert check_op(name, reference=RECURRENT_REFERENCES[name])


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


# ------------------------------------------------------------------------------ against torch
torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")

KINDS = {
    "RNN_TANH": ("RNN", {"nonlinearity": "tanh"}),
    "RNN_RELU": ("RNN", {"nonlinearity": "relu"}),
    "LSTM": ("LSTM", {}),
    "GRU": ("GRU", {}),
}


def _pair(kind, input_size=3, hidden_size=4, **kwargs):
    """A torch module and a firefly one with torch's state_dict loaded, both float64."""
    name, extra = KINDS[kind]
    torch.manual_seed(0)
    reference = getattr(torch.nn, name)(input_size, hidden_size, **extra, **kwargs).double()
    ours = getattr(nn, name)(input_size, hidden_size, **extra, **kwargs).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in reference.named_parameters()]
    return reference, ours


def _flat(result):
    """(output, h_n) or (output, (h_n, c_n)) as a list of tensors, the output's data when it
    is a PackedSequence."""
    output, final = result
    output = output[0] if isinstance(output, tuple) else output
    return [output] + (list(final) if isinstance(final, tuple) else [final])


def _compare(torch_result, ours_result, torch_leaves, our_leaves, seed=0):
    """Outputs equal within TOL; then the same weighted sum of all outputs is differentiated
    in both and every leaf's gradient compared."""
    theirs, mine = _flat(torch_result), _flat(ours_result)
    assert len(theirs) == len(mine)
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(tuple(t.shape)) for t in theirs]
    for t, m in zip(theirs, mine):
        assert tuple(t.shape) == m.shape
        np.testing.assert_allclose(m.numpy(), t.detach().numpy(), rtol=0, atol=TOL)
    sum((t * torch.tensor(w)).sum() for t, w in zip(theirs, weights)).backward()
    total = None
    for m, w in zip(mine, weights):
        term = (m * Tensor(w)).sum()
        total = term if total is None else total + term
    total.backward()
    for (label, t), m in zip(torch_leaves, our_leaves):
        assert m.grad is not None, label
        np.testing.assert_allclose(
            m.grad.numpy(), t.grad.numpy(), rtol=0, atol=TOL, err_msg=f"gradient of {label}"
        )


def _leaves(reference, ours):
    torch_leaves = list(reference.named_parameters())
    return torch_leaves, [p for _, p in ours.named_parameters()]


def _inputs(shape, states, rng):
    x = rng.standard_normal(shape)
    hx = [rng.standard_normal(states) for _ in range(2)]
    return x, hx


@pytest.mark.parametrize(
    "kind, num_layers, bias, batch_first, bidirectional, with_states",
    list(itertools.product(KINDS, (1, 2), (True, False), (False, True), (False, True), (0, 1))),
)
def test_matches_torch(kind, num_layers, bias, batch_first, bidirectional, with_states):
    reference, ours = _pair(
        kind,
        num_layers=num_layers,
        bias=bias,
        batch_first=batch_first,
        bidirectional=bidirectional,
    )
    steps, batch = 5, 3
    directions = 2 if bidirectional else 1
    rng = np.random.default_rng(1)
    shape = (batch, steps, 3) if batch_first else (steps, batch, 3)
    x, hx = _inputs(shape, (num_layers * directions, batch, 4), rng)
    tx, fx = torch.tensor(x, requires_grad=True), Tensor(x.copy(), requires_grad=True)
    torch_leaves, our_leaves = _leaves(reference, ours)
    torch_leaves, our_leaves = [("input", tx)] + torch_leaves, [fx] + our_leaves
    if with_states:
        count = 2 if kind == "LSTM" else 1
        th = [torch.tensor(h, requires_grad=True) for h in hx[:count]]
        fh = [Tensor(h.copy(), requires_grad=True) for h in hx[:count]]
        torch_leaves += [(f"state {k}", t) for k, t in enumerate(th)]
        our_leaves += fh
        theirs = reference(tx, tuple(th) if count == 2 else th[0])
        mine = ours(fx, tuple(fh) if count == 2 else fh[0])
    else:
        theirs, mine = reference(tx), ours(fx)
    _compare(theirs, mine, torch_leaves, our_leaves)


@pytest.mark.parametrize(
    "kind, num_layers, bidirectional, enforce_sorted, batch_first",
    list(itertools.product(KINDS, (1, 2), (False, True), (True, False), (False, True))),
)
def test_packed_sequence_matches_torch(
    kind, num_layers, bidirectional, enforce_sorted, batch_first
):
    reference, ours = _pair(kind, num_layers=num_layers, bidirectional=bidirectional)
    lengths = [6, 4, 3, 1] if enforce_sorted else [3, 6, 1, 4]
    directions = 2 if bidirectional else 1
    rng = np.random.default_rng(2)
    shape = (4, 6, 3) if batch_first else (6, 4, 3)
    x, hx = _inputs(shape, (num_layers * directions, 4, 4), rng)
    tx, fx = torch.tensor(x, requires_grad=True), Tensor(x.copy(), requires_grad=True)
    count = 2 if kind == "LSTM" else 1
    th = [torch.tensor(h, requires_grad=True) for h in hx[:count]]
    fh = [Tensor(h.copy(), requires_grad=True) for h in hx[:count]]
    tp = torch.nn.utils.rnn.pack_padded_sequence(
        tx, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted
    )
    fp = rnn_utils.pack_padded_sequence(
        fx, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted
    )
    np.testing.assert_array_equal(fp.batch_sizes.numpy(), tp.batch_sizes.numpy())
    np.testing.assert_array_equal(fp.data.numpy(), tp.data.detach().numpy())
    theirs = reference(tp, tuple(th) if count == 2 else th[0])
    mine = ours(fp, tuple(fh) if count == 2 else fh[0])
    assert isinstance(mine[0], rnn_utils.PackedSequence)
    # Unpacked too, so that pad_packed_sequence is compared and differentiated.
    t_out, t_len = torch.nn.utils.rnn.pad_packed_sequence(
        theirs[0], batch_first=batch_first, total_length=7
    )
    f_out, f_len = rnn_utils.pad_packed_sequence(mine[0], batch_first=batch_first, total_length=7)
    np.testing.assert_array_equal(f_len.numpy(), t_len.numpy())
    torch_leaves, our_leaves = _leaves(reference, ours)
    torch_leaves = [("input", tx)] + torch_leaves + [(f"state {k}", t) for k, t in enumerate(th)]
    our_leaves = [fx] + our_leaves + fh
    _compare((t_out, theirs[1]), (f_out, mine[1]), torch_leaves, our_leaves)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("with_states", [False, True])
def test_unbatched_input_matches_torch(kind, with_states):
    reference, ours = _pair(kind, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(3)
    x, hx = _inputs((5, 3), (4, 4), rng)
    tx, fx = torch.tensor(x, requires_grad=True), Tensor(x.copy(), requires_grad=True)
    torch_leaves, our_leaves = _leaves(reference, ours)
    torch_leaves, our_leaves = [("input", tx)] + torch_leaves, [fx] + our_leaves
    if with_states:
        count = 2 if kind == "LSTM" else 1
        th = [torch.tensor(h, requires_grad=True) for h in hx[:count]]
        fh = [Tensor(h.copy(), requires_grad=True) for h in hx[:count]]
        torch_leaves += [(f"state {k}", t) for k, t in enumerate(th)]
        our_leaves += fh
        theirs = reference(tx, tuple(th) if count == 2 else th[0])
        mine = ours(fx, tuple(fh) if count == 2 else fh[0])
    else:
        theirs, mine = reference(tx), ours(fx)
    _compare(theirs, mine, torch_leaves, our_leaves)


@pytest.mark.parametrize("kind", list(KINDS))
def test_dropout_between_layers(kind):
    """Dropout > 0: in train mode the output differs from eval mode's (and from run to run of
    the generator); in eval mode it equals torch's."""
    reference, ours = _pair(kind, num_layers=2, dropout=0.5)
    x = np.random.default_rng(4).standard_normal((5, 3, 3))
    reference.eval()
    ours.eval()
    expected = reference(torch.tensor(x))[0].detach().numpy()
    np.testing.assert_allclose(ours(Tensor(x))[0].numpy(), expected, rtol=0, atol=TOL)
    ours.train()
    firefly.manual_seed(0)
    first = ours(Tensor(x))[0].numpy()
    firefly.manual_seed(0)
    again = ours(Tensor(x))[0].numpy()
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - expected).max() > 1e-3
    # One layer has nothing between layers: dropout does not apply, as in torch.
    _, single = _pair(kind, num_layers=1)
    single.dropout = 0.5
    single.train()
    np.testing.assert_array_equal(single(Tensor(x))[0].numpy(), single.eval()(Tensor(x))[0].numpy())


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_cells_match_torch(kind, bias, batched):
    name, extra = KINDS[kind]
    torch.manual_seed(0)
    reference = getattr(torch.nn, name + "Cell")(3, 4, bias=bias, **extra).double()
    ours = getattr(nn, name + "Cell")(3, 4, bias=bias, **extra).double()
    ours.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})
    rng = np.random.default_rng(5)
    shape, state_shape = ((2, 3), (2, 4)) if batched else ((3,), (4,))
    x, hx = _inputs(shape, state_shape, rng)
    tx, fx = torch.tensor(x, requires_grad=True), Tensor(x.copy(), requires_grad=True)
    count = 2 if kind == "LSTM" else 1
    th = [torch.tensor(h, requires_grad=True) for h in hx[:count]]
    fh = [Tensor(h.copy(), requires_grad=True) for h in hx[:count]]
    theirs = reference(tx, tuple(th) if count == 2 else th[0])
    mine = ours(fx, tuple(fh) if count == 2 else fh[0])
    torch_leaves, our_leaves = _leaves(reference, ours)
    torch_leaves = [("input", tx)] + torch_leaves + [(f"state {k}", t) for k, t in enumerate(th)]
    our_leaves = [fx] + our_leaves + fh
    # Cells return h' or (h', c'): compared as the "output" and the final states.
    theirs = (theirs[0], theirs[1:]) if count == 2 else (theirs, ())
    mine = (mine[0], mine[1:]) if count == 2 else (mine, ())
    _compare(theirs, mine, torch_leaves, our_leaves)
    without_state = ours(Tensor(x))
    expected = reference(torch.tensor(x))
    np.testing.assert_allclose(
        _flat((without_state, ()))[0].numpy() if count == 1 else without_state[0].numpy(),
        (expected if count == 1 else expected[0]).detach().numpy(),
        rtol=0,
        atol=TOL,
    )


def test_default_init_and_names_match_torch():
    lstm = nn.LSTM(5, 7, num_layers=2, bidirectional=True)
    reference = torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True)
    ours = {n: p.shape for n, p in lstm.named_parameters()}
    theirs = {n: tuple(p.shape) for n, p in reference.named_parameters()}
    assert ours == theirs
    bound = 1.0 / np.sqrt(7)
    for _, p in lstm.named_parameters():
        assert p.dtype == np.float32
        assert np.abs(p.numpy()).max() <= bound
        assert np.abs(p.numpy()).max() > 0.8 * bound  # spread over the whole interval
    assert "bias_ih_l0" not in dict(nn.GRU(2, 3, bias=False).named_parameters())


def test_float32_runs_close_to_float64():
    firefly.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=2)
    x = np.random.default_rng(6).standard_normal((5, 2, 3)).astype(np.float32)
    out, (h, c) = lstm(Tensor(x))
    assert out.dtype == np.float32 and h.dtype == np.float32
    out64, _ = lstm.double()(Tensor(x.astype(np.float64)))
    np.testing.assert_allclose(out.numpy(), out64.numpy(), atol=1e-5)


def test_pad_sequence_keeps_integer_and_bool_dtypes():
    """Token ids padded stay int64 (an Embedding takes them), masks stay bool, as torch's."""
    ids = [np.array([2, 3, 4]), np.array([5, 6])]
    for arrays in (ids, [a == 2 for a in ids]):
        theirs = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(a) for a in arrays], batch_first=True, padding_value=1
        )
        mine = rnn_utils.pad_sequence(
            [firefly.tensor(a) for a in arrays], batch_first=True, padding_value=1
        )
        assert mine.dtype == theirs.numpy().dtype
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_pad_sequence_matches_torch():
    rng = np.random.default_rng(7)
    seqs = [rng.standard_normal((n, 2)) for n in (2, 5, 3)]
    for batch_first, side in itertools.product((False, True), ("right", "left")):
        theirs = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(s) for s in seqs],
            batch_first=batch_first,
            padding_value=-1.0,
            padding_side=side,
        )
        leaves = [Tensor(s, requires_grad=True) for s in seqs]
        mine = rnn_utils.pad_sequence(
            leaves, batch_first=batch_first, padding_value=-1.0, padding_side=side
        )
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
        mine.sum().backward()
        for leaf in leaves:
            np.testing.assert_array_equal(leaf.grad.numpy(), np.ones(leaf.shape))
    packed = rnn_utils.pack_sequence([Tensor(s) for s in seqs], enforce_sorted=False)
    expected = torch.nn.utils.rnn.pack_sequence(
        [torch.tensor(s) for s in seqs], enforce_sorted=False
    )
    np.testing.assert_array_equal(packed.data.numpy(), expected.data.numpy())
    np.testing.assert_array_equal(packed.sorted_indices.numpy(), expected.sorted_indices.numpy())


# ---------------------------------------------------------------------------------- bad input
def test_wrong_input_feature_size_names_shapes():
    lstm = nn.LSTM(10, 20)
    with pytest.raises(
        ValueError, match=r"LSTM: input.size\(-1\) .* Expected 10, got 5 .*\(7, 3, 5\)"
    ):
        lstm(Tensor(np.zeros((7, 3, 5), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"GRU: expected a 2-D .* got shape \(7,\)"):
        nn.GRU(10, 20)(Tensor(np.zeros(7, dtype=np.float32)))
    with pytest.raises(ValueError, match=r"LSTMCell: expected input of shape \(batch, 10\)"):
        nn.LSTMCell(10, 20)(Tensor(np.zeros((3, 4), dtype=np.float32)))


def test_wrong_state_shape_names_shapes():
    lstm = nn.LSTM(4, 5, num_layers=2)
    x = Tensor(np.zeros((3, 2, 4), dtype=np.float32))
    good = Tensor(np.zeros((2, 2, 5), dtype=np.float32))
    bad = Tensor(np.zeros((1, 2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected h_0 of shape \(2, 2, 5\), got \(1, 2, 5\)"):
        lstm(x, (bad, good))
    with pytest.raises(ValueError, match=r"expected c_0 of shape \(2, 2, 5\), got \(1, 2, 5\)"):
        lstm(x, (good, bad))
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\)"):
        lstm(x, good)
    with pytest.raises(
        ValueError, match=r"RNN: expected h_0 of shape \(1, 2, 5\), got \(2, 2, 5\)"
    ):
        nn.RNN(4, 5)(x, good)
    with pytest.raises(ValueError, match=r"lstm_layer: h0 must be .* \(2, 5\)"):
        firefly.ops.apply(
            "lstm_layer",
            np.zeros((3, 2, 4)),
            np.zeros((3, 5)),
            np.zeros((2, 5)),
            np.zeros((20, 4)),
            np.zeros((20, 5)),
            np.zeros(20),
            np.zeros(20),
        )


def test_unsorted_lengths_need_enforce_sorted_false():
    x = Tensor(np.zeros((4, 3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"decreasing order .* \[2, 4, 1\].*enforce_sorted=False"):
        rnn_utils.pack_padded_sequence(x, [2, 4, 1])
    rnn_utils.pack_padded_sequence(x, [2, 4, 1], enforce_sorted=False)
    with pytest.raises(ValueError, match=r"3 lengths for a batch of 2"):
        rnn_utils.pack_padded_sequence(Tensor(np.zeros((4, 2, 2))), [3, 2, 1])
    with pytest.raises(ValueError, match=r"every length must lie in 1..4"):
        rnn_utils.pack_padded_sequence(x, [5, 2, 1])


def test_proj_size_is_refused_clearly():
    with pytest.raises(NotImplementedError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)
