"""firefly.onnx.export: onnxruntime runs the exported file and gives firefly's outputs (within
1e-5 in float32), also at a batch size other than the example's."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import firefly
from firefly import nn
from firefly.digits import build_model

onnx = pytest.importorskip("onnx", reason='needs onnx: pip install ".[onnx]"')
ort = pytest.importorskip("onnxruntime", reason='needs onnxruntime: pip install ".[onnx]"')

DYNAMIC = {"input_0": {0: "batch"}, "output_0": {0: "batch"}}


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _check(model, shape, tmp_path, batches=(5, 1), low=-2.0, high=2.0):
    """Export on a batch of ``shape``, then compare onnxruntime with firefly on new batches."""
    rng = np.random.default_rng(0)
    example = rng.uniform(low, high, shape).astype(np.float32)
    path = tmp_path / "model.onnx"
    firefly.onnx.export(model, firefly.Tensor(example), path, dynamic_axes=DYNAMIC)
    for batch in (shape[0], *batches):
        x = rng.uniform(low, high, (batch, *shape[1:])).astype(np.float32)
        with firefly.no_grad():
            expected = model(firefly.Tensor(x)).numpy()
        got = _run(path, x)
        assert got.shape == expected.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    return onnx.load(str(path))


class SeedMLP(nn.Module):
    """examples/seed_mlp.py's model."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 32)
        self.fc2 = nn.Linear(32, 1)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu())


def test_seed_mlp_with_named_weights(tmp_path):
    firefly.manual_seed(0)
    model = SeedMLP()
    proto = _check(model, (8, 10), tmp_path)
    names = {i.name for i in proto.graph.initializer}
    assert {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"} <= names
    weight = next(i for i in proto.graph.initializer if i.name == "fc1.weight")
    assert np.array_equal(onnx.numpy_helper.to_array(weight), model.fc1.weight.numpy())
    assert [n.op_type for n in proto.graph.node] == ["Gemm", "Relu", "Gemm", "Identity"]
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"


@pytest.mark.parametrize(
    "activation",
    [
        nn.Tanh(),
        nn.Sigmoid(),
        nn.GELU(),
        nn.GELU(approximate="tanh"),
        nn.SiLU(),
        nn.LeakyReLU(0.1),
        nn.ELU(0.7),
        nn.Hardtanh(-0.5, 0.5),
        nn.Softplus(),
        nn.LogSoftmax(dim=1),
        nn.Softmax(dim=-1),
    ],
    ids=lambda m: repr(m),
)
def test_mlp_activations(activation, tmp_path):
    firefly.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 16), activation, nn.Linear(16, 4))
    _check(model, (3, 6), tmp_path, high=4.0, low=-4.0)


def test_digits_cnn_with_batch_norm_in_eval_mode(tmp_path):
    firefly.manual_seed(0)
    model = build_model(nn)
    rng = np.random.default_rng(3)
    for _ in range(3):  # running statistics away from their initial 0 and 1
        model(firefly.Tensor(rng.uniform(0, 1, (16, 1, 8, 8)).astype(np.float32)))
    model.eval()
    mean = model[1].running_mean.numpy()
    assert np.abs(mean).max() > 1e-3
    proto = _check(model, (4, 1, 8, 8), tmp_path, batches=(9, 1), low=0.0, high=1.0)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("BatchNormalization") == 2 and "MaxPool" in ops and "Reshape" in ops
    assert "Identity" in ops  # only the output's; Dropout leaves no node in eval mode
    assert "1.running_mean" in {i.name for i in proto.graph.initializer}


class Everyday(nn.Module):
    """Elementwise, reduction and shape ops as a forward uses them."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 6)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        h = self.proj(x)
        a = (h.exp() - 1.0) * 0.5 + h.abs().sqrt() / (1.0 + h**2)
        b = a.clamp(-1.0, 1.0).tanh().sum(axis=1, keepdims=True) + a.mean(axis=1, keepdims=True)
        c = a - a.max(axis=1, keepdims=True)
        grid = c.reshape(-1, 1, 2, 3).permute(0, 1, 3, 2)  # (N, 1, 3, 2)
        pooled = self.pool(grid.reshape(-1, 1, 2, 3)).reshape(-1, 1)
        square = c.matmul(self.proj.weight)
        return firefly.cat(
            [square * b, pooled.expand(-1, 6), grid.reshape(-1, 6)], dim=1
        ).log_softmax(dim=1)


def test_elementwise_reduction_and_shape_ops(tmp_path):
    firefly.manual_seed(2)
    proto = _check(Everyday(), (4, 6), tmp_path)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Exp", "Abs", "Sqrt", "Pow", "Clip", "ReduceSum", "ReduceMean", "ReduceMax"} <= ops
    assert {"Reshape", "Transpose", "AveragePool", "MatMul", "Concat", "LogSoftmax"} <= ops


class Tokens(nn.Module):
    """The pieces of a character model: an embedding of int64 ids, layer norm, indexing."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 20)

    def forward(self, ids):
        h = self.norm(self.embed(ids))  # (N, T, 8)
        last = h[:, -1]  # (N, 8)
        window = h[..., 1:7:2].mean(axis=1)  # (N, 3)
        return self.head(last + h[:, 0]).softmax(dim=-1), window


def test_embedding_layer_norm_and_indexing_with_int64_ids(tmp_path):
    firefly.manual_seed(4)
    model = Tokens()
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 20, (3, 6))
    path = tmp_path / "tokens.onnx"
    dynamic = {"ids": {0: "batch", 1: "time"}, "probs": {0: "batch"}, "window": {0: "batch"}}
    firefly.onnx.export(
        model,
        ids,
        path,
        input_names=["ids"],
        output_names=["probs", "window"],
        dynamic_axes=dynamic,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(3, 6), (5, 9), (1, 2)]:
        batch = rng.integers(0, 20, shape)
        probs, window = model(firefly.Tensor(batch, dtype=np.int64))
        got = session.run(None, {"ids": batch.astype(np.int64)})
        np.testing.assert_allclose(got[0], probs.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[1], window.numpy(), rtol=1e-5, atol=1e-6)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Gather", "LayerNormalization", "Slice", "Squeeze", "Softmax"} <= ops


class Angle(nn.Module):
    def forward(self, x):
        return firefly.atan2(x, x + 1.0)


def test_an_op_with_no_mapping_is_named_with_its_module(tmp_path):
    model = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.ReLU(), Angle()))
    with pytest.raises(
        ValueError,
        match=r"op 'atan2' has no ONNX mapping; it ran in module "
        r"'1\.1' \(Angle\)",
    ):
        firefly.onnx.export(model, firefly.zeros(2, 3), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    assert "_hooks" not in model[1][1].__dict__  # the tracing hooks are gone
    assert firefly.autograd.set_op_hook(None) is None  # and so is the op hook


def test_training_mode_warns_and_exports_eval_behaviour(tmp_path):
    firefly.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    with pytest.warns(
        UserWarning, match=r"training mode; it is exported in eval mode.*'1' \(Dropout\)"
    ):
        firefly.onnx.export(model, x, tmp_path / "m.onnx")
    assert model.training  # left as it was
    model.eval()
    expected = model(firefly.Tensor(x)).numpy()
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x), expected, rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an eval-mode model exports without a warning
        firefly.onnx.export(model, x, tmp_path / "m.onnx")


def test_names_and_dynamic_axes_as_lists(tmp_path):
    model = nn.Sequential(nn.Linear(4, 2))
    firefly.onnx.export(
        model,
        (firefly.zeros(3, 4),),
        tmp_path / "m.onnx",
        input_names=["features"],
        output_names=["scores"],
        dynamic_axes={"features": [0], "scores": [0]},
    )
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [i.name for i in proto.graph.input] == ["features"]
    assert [o.name for o in proto.graph.output] == ["scores"]
    assert _run(tmp_path / "m.onnx", np.ones((7, 4), np.float32)).shape == (7, 2)
    with pytest.raises(ValueError, match=r"dynamic_axes names \['x'\]"):
        firefly.onnx.export(
            model, firefly.zeros(3, 4), tmp_path / "n.onnx", dynamic_axes={"x": [0]}
        )


def test_without_onnx_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "firefly-dl\[onnx\]"'):
        firefly.onnx.export(nn.Linear(2, 2), firefly.zeros(1, 2), tmp_path / "m.onnx")


# ----------------------------------------------------------------------------- recurrent layers
def _compare_sequences(
    model, make_inputs, names, output_names, dynamic, tmp_path, sizes, opset_version=17
):
    """Export on inputs of the first (batch, steps) in ``sizes``; onnxruntime matches firefly on
    all of them (each output, within 1e-5 in float32)."""
    path = tmp_path / "seq.onnx"
    rng = np.random.default_rng(7)
    example = make_inputs(rng, *sizes[0])
    firefly.onnx.export(
        model,
        example,
        path,
        input_names=names,
        output_names=output_names,
        dynamic_axes=dynamic,
        opset_version=opset_version,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, steps in sizes:
        inputs = make_inputs(rng, batch, steps)
        with firefly.no_grad():
            result = model(*(firefly.Tensor(a, dtype=a.dtype) for a in inputs))
        expected = firefly.onnx._flatten(result)
        got = session.run(None, dict(zip(names, inputs)))
        assert len(got) == len(expected) == len(output_names)
        for name, have, want in zip(output_names, got, expected):
            assert have.shape == want.shape, (name, batch, steps)
            np.testing.assert_allclose(have, want.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
    return onnx.load(str(path))


class LanguageModel(nn.Module):
    """examples/char_lstm.py's shape of model: Embedding -> 2-layer LSTM -> Linear."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(30, 12)
        self.lstm = nn.LSTM(12, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 30)

    def forward(self, ids):
        hidden, (h_n, c_n) = self.lstm(self.embed(ids))
        return self.head(hidden), h_n, c_n


def test_lstm_language_model_with_dynamic_batch_and_sequence(tmp_path):
    firefly.manual_seed(11)
    model = LanguageModel()
    dynamic = {
        "ids": {0: "batch", 1: "time"},
        "logits": {0: "batch", 1: "time"},
        "h_n": {1: "batch"},
        "c_n": {1: "batch"},
    }
    proto = _compare_sequences(
        model,
        lambda rng, batch, steps: (rng.integers(0, 30, (batch, steps)).astype(np.int64),),
        ["ids"],
        ["logits", "h_n", "c_n"],
        dynamic,
        tmp_path,
        [(3, 5), (6, 9), (1, 1), (2, 17)],
    )
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 2 and "Gather" in ops
    assert "Slice" not in ops  # the layer's slices are the LSTM node's outputs themselves
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    # ONNX's layout: a direction axis, gates i, o, f, c (torch's i, f, g, o)
    weight = model.lstm.weight_ih_l0.numpy()
    i, f, g, o = np.split(weight, 4)
    np.testing.assert_array_equal(
        initializers["lstm.weight_ih_l0.onnx_W"], np.concatenate([i, o, f, g])[None]
    )
    biases = [getattr(model.lstm, f"bias_{kind}_l1").numpy() for kind in ("ih", "hh")]
    onnx_bias = [np.concatenate([b[:16], b[48:], b[16:32], b[32:48]]) for b in biases]
    np.testing.assert_array_equal(
        initializers["lstm.bias_ih_l1.onnx_B"], np.concatenate(onnx_bias)[None]
    )


class GRUClassifier(nn.Module):
    """A GRU over (batch, steps, features) from a given initial state; the last layer's final
    state classifies."""

    def __init__(self, layers):
        super().__init__()
        self.gru = nn.GRU(5, 8, num_layers=layers, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x, h0):
        _, h_n = self.gru(x, h0)
        return self.head(h_n[-1]).log_softmax(dim=-1)


@pytest.mark.parametrize("layers", [1, 2])
def test_gru_classifier_from_an_initial_state(layers, tmp_path):
    firefly.manual_seed(12)
    model = GRUClassifier(layers)

    def inputs(rng, batch, steps):
        x = rng.normal(size=(batch, steps, 5)).astype(np.float32)
        return x, rng.normal(size=(layers, batch, 8)).astype(np.float32)

    dynamic = {"x": {0: "batch", 1: "time"}, "h0": {1: "batch"}, "scores": {0: "batch"}}
    proto = _compare_sequences(
        model, inputs, ["x", "h0"], ["scores"], dynamic, tmp_path, [(4, 6), (7, 3), (1, 10)]
    )
    grus = [n for n in proto.graph.node if n.op_type == "GRU"]
    assert len(grus) == layers
    for node in grus:
        settings = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert settings["linear_before_reset"] == 1
        assert len(node.input) == 6 and node.input[5]  # initial_h is given


class BidirectionalRNN(nn.Module):
    def __init__(self, nonlinearity, layers, batch_first):
        super().__init__()
        self.rnn = nn.RNN(
            4,
            6,
            num_layers=layers,
            nonlinearity=nonlinearity,
            bidirectional=True,
            batch_first=batch_first,
        )
        self.head = nn.Linear(12, 2)

    def forward(self, x):
        output, h_n = self.rnn(x)
        return self.head(output), h_n


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch_first", [True, False])
def test_bidirectional_rnn(nonlinearity, layers, batch_first, tmp_path):
    firefly.manual_seed(13)
    model = BidirectionalRNN(nonlinearity, layers, batch_first)
    batch_axis, time_axis = (0, 1) if batch_first else (1, 0)

    def inputs(rng, batch, steps):
        shape = (batch, steps, 4) if batch_first else (steps, batch, 4)
        return (rng.normal(size=shape).astype(np.float32),)

    dynamic = {
        "x": {batch_axis: "batch", time_axis: "time"},
        "y": {batch_axis: "batch", time_axis: "time"},
        "h_n": {1: "batch"},
    }
    proto = _compare_sequences(
        model, inputs, ["x"], ["y", "h_n"], dynamic, tmp_path, [(3, 4), (5, 8), (1, 1)]
    )
    nodes = [
        {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        for n in proto.graph.node
        if n.op_type == "RNN"
    ]
    assert sorted(n["direction"] for n in nodes) == [b"forward"] * layers + [b"reverse"] * layers
    assert {tuple(n["activations"]) for n in nodes} == {(nonlinearity.capitalize().encode(),)}


class Recurrent(nn.Module):
    """Any recurrent layer, with or without initial states, returning all it gives."""

    def __init__(self, kind, layers, bidirectional, batch_first, with_state):
        super().__init__()
        self.layer = getattr(nn, kind)(
            3, 4, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first
        )
        self.with_state = with_state

    def forward(self, x, *states):
        if not self.with_state:
            return self.layer(x)
        return self.layer(x, tuple(states) if len(states) == 2 else states[0])


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("with_state", [False, True])
def test_every_recurrent_layer_with_and_without_initial_states(
    kind, layers, bidirectional, with_state, tmp_path
):
    firefly.manual_seed(14)
    batch_first = not with_state
    model = Recurrent(kind, layers, bidirectional, batch_first, with_state)
    directions = 2 if bidirectional else 1
    state_count = 2 if kind == "LSTM" else 1
    names = ["x"] + (["h0", "c0"][:state_count] if with_state else [])
    outputs = ["y", "h_n", "c_n"][: 1 + state_count]
    batch_axis, time_axis = (0, 1) if batch_first else (1, 0)

    def inputs(rng, batch, steps):
        shape = (batch, steps, 3) if batch_first else (steps, batch, 3)
        arrays = [rng.normal(size=shape).astype(np.float32)]
        for _ in names[1:]:
            arrays.append(rng.normal(size=(layers * directions, batch, 4)).astype(np.float32))
        return tuple(arrays)

    dynamic = {"x": {batch_axis: "batch", time_axis: "time"}, "y": {batch_axis: "batch"}}
    dynamic.update({name: {1: "batch"} for name in names[1:] + outputs[1:]})
    _compare_sequences(model, inputs, names, outputs, dynamic, tmp_path, [(2, 3), (5, 6), (1, 1)])


class Packed(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4)

    def forward(self, x):
        packed = nn.utils.rnn.pack_padded_sequence(x, [x.shape[0]] * x.shape[1])
        output, _ = self.lstm(packed)
        return nn.utils.rnn.pad_packed_sequence(output)[0]


def test_a_packed_sequence_is_refused_naming_the_module(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"packed sequences are not supported in ONNX export; module 'lstm' \(LSTM\)",
    ):
        firefly.onnx.export(Packed(), firefly.zeros(5, 2, 3), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_the_char_lstm_example_model_in_training_mode(tmp_path):
    """examples/char_lstm.py's model as the example builds it, with dropout between its LSTM
    layers and in training mode: a warning names the LSTM, the loss slot (None) is no output,
    and the file gives the eval-mode logits and state."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import char_lstm
    finally:
        sys.path.pop(0)
    firefly.manual_seed(15)
    config = char_lstm.Config(n_layer=2, hidden=16, n_embd=8, dropout=0.5)
    model = char_lstm.build_model(firefly, config, vocab_size=25)
    model.train()
    rng = np.random.default_rng(16)
    path = tmp_path / "char.onnx"
    names = ["logits", "h_n", "c_n"]
    dynamic = {"idx": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}}
    dynamic.update({"h_n": {1: "batch"}, "c_n": {1: "batch"}})
    with pytest.warns(UserWarning, match=r"dropout off \(also between recurrent layers\).*'lstm'"):
        firefly.onnx.export(
            model,
            rng.integers(0, 25, (2, 7)),
            path,
            input_names=["idx"],
            output_names=names,
            dynamic_axes=dynamic,
        )
    assert model.training
    model.eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = rng.integers(0, 25, (3, 11))
    logits, (h_n, c_n), loss = model(firefly.Tensor(ids, dtype=np.int64))
    assert loss is None
    got = session.run(None, {"idx": ids.astype(np.int64)})
    for have, want in zip(got, (logits, h_n, c_n)):
        np.testing.assert_allclose(have, want.numpy(), rtol=1e-5, atol=1e-5)


class Cells(nn.Module):
    """The one-step cells (a sequence of one through the same ops), no state given, one
    without biases."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTMCell(3, 4)
        self.gru = nn.GRUCell(4, 5)
        self.rnn = nn.RNNCell(5, 2, nonlinearity="relu", bias=False)

    def forward(self, x):
        h, c = self.lstm(x)
        return self.rnn(self.gru(h)), c


class Unbatched(nn.Module):
    """A bidirectional GRU without biases on one unbatched (steps, features) sequence."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 4, bias=False, bidirectional=True)

    def forward(self, x):
        return self.gru(x)


@pytest.mark.parametrize(
    "make_model,sizes",
    [(Cells, [(2, 3), (5, 3), (1, 3)]), (Unbatched, [(6, 3), (2, 3), (9, 3)])],
    ids=["cells", "unbatched"],
)
def test_cells_and_an_unbatched_sequence(make_model, sizes, tmp_path):
    """The first axis (the batch of the cells, the steps of the sequence) is dynamic."""
    firefly.manual_seed(17)
    model = make_model()
    rng = np.random.default_rng(18)
    path = tmp_path / "m.onnx"
    example = rng.normal(size=sizes[0]).astype(np.float32)
    firefly.onnx.export(model, example, path, dynamic_axes={"input_0": {0: "n"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in sizes:
        x = rng.normal(size=size).astype(np.float32)
        expected = firefly.onnx._flatten(model(firefly.Tensor(x)))
        got = session.run(None, {"input_0": x})
        assert len(got) == len(expected) == 2
        for have, want in zip(got, expected):
            np.testing.assert_allclose(have, want.numpy(), rtol=1e-5, atol=1e-5)


class ScaledWeights(nn.Module):
    """A recurrent layer op whose weight is computed in the forward (ONNX wants initializers)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(3, 4)

    def forward(self, x):
        r = self.rnn
        h0 = firefly.zeros(x.shape[1], 4)
        weights = (r.weight_ih_l0 * 2.0, r.weight_hh_l0, r.bias_ih_l0, r.bias_hh_l0)
        return firefly.ops.apply("rnn_layer", x, h0, *weights)


def test_a_recurrent_weight_computed_in_the_forward_is_refused(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"rnn_layer with weight_ih computed in the forward has no ONNX mapping; it ran in "
        r"module 'ScaledWeights'",
    ):
        firefly.onnx.export(ScaledWeights(), firefly.zeros(5, 2, 3), tmp_path / "m.onnx")


# ----------------------------------------------------------------------------- attention
def _sequence_dynamic(names, batch_first):
    """Batch and sequence axes of (B, S, E) / (S, B, E) inputs and outputs, named."""
    axes = {0: "batch", 1: "seq"} if batch_first else {0: "seq", 1: "batch"}
    return {name: axes for name in names}


def _sequence(batch_first, width=8):
    def make(rng, batch, steps):
        shape = (batch, steps, width) if batch_first else (steps, batch, width)
        return (rng.normal(size=shape).astype(np.float32),)

    return make


# (batch, sequence) pairs: the export's, then others (a sequence of 1, a batch of 1)
_SIZES = [(2, 5), (3, 7), (1, 1), (4, 2), (1, 9)]


class Encoder(nn.Module):
    """A TransformerEncoder of two layers and a final LayerNorm; ``causal`` passes torch's
    square subsequent mask for the input's length (with is_causal=True), made in the forward."""

    def __init__(self, activation, batch_first, norm_first, causal=False):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            8, 2, 16, 0.1, activation=activation, batch_first=batch_first, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(8))
        self.batch_first, self.causal = batch_first, causal

    def forward(self, x):
        if not self.causal:
            return self.encoder(x)
        steps = x.shape[1] if self.batch_first else x.shape[0]
        mask = nn.Transformer.generate_square_subsequent_mask(steps)
        return self.encoder(x, mask=mask, is_causal=True)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_transformer_encoder_with_dynamic_batch_and_sequence(
    activation, batch_first, norm_first, causal, tmp_path
):
    firefly.manual_seed(23)
    model = Encoder(activation, batch_first, norm_first, causal).eval()
    proto = _compare_sequences(
        model,
        _sequence(batch_first),
        ["src"],
        ["out"],
        _sequence_dynamic(["src", "out"], batch_first),
        tmp_path,
        _SIZES,
    )
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Softmax") == 2 and ops.count("LayerNormalization") == 5
    assert ("Erf" in ops) == (activation == "gelu")
    # the causal mask is built from the run-time lengths, not stored for the example's
    assert ("Range" in ops and "Where" in ops) == causal
    shapes = [tuple(i.dims) for i in proto.graph.initializer]
    assert (5, 5) not in shapes and (1, 1, 5, 5) not in shapes  # no mask of the example's length


class PaddedEncoder(nn.Module):
    """An encoder layer with a key padding mask held by the model (a constant of the graph):
    the second sequence is padded after 3 steps, the third wholly (its rows attend nothing,
    and give the out_proj bias, as firefly's attention)."""

    def __init__(self, causal):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(8, 2, 16, 0.0, activation="gelu")
        padding = np.zeros((3, 5), dtype=bool)
        padding[1, 3:] = True
        padding[2] = True
        self.padding, self.causal = firefly.Tensor(padding, dtype=np.bool_), causal

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[0]) if self.causal else None
        return self.layer(
            x, src_mask=mask, src_key_padding_mask=self.padding, is_causal=self.causal
        )


@pytest.mark.parametrize("causal", [False, True])
def test_a_key_padding_mask_held_by_the_model(causal, tmp_path):
    firefly.manual_seed(5)
    model = PaddedEncoder(causal).eval()
    # the mask's (batch, length) is the model's: fixed sizes
    proto = _compare_sequences(
        model, _sequence(False), ["src"], ["out"], None, tmp_path, [(3, 5), (3, 5)]
    )
    ops = [n.op_type for n in proto.graph.node]
    assert "Where" in ops and "ReduceMin" in ops


class SelfAttention(nn.Module):
    """A standalone MultiheadAttention over one input: the fused path (need_weights=False),
    optionally causal, or the unfused one returning the weights too."""

    def __init__(self, batch_first, need_weights, causal):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 4, batch_first=batch_first)
        self.batch_first, self.need_weights, self.causal = batch_first, need_weights, causal

    def forward(self, x):
        mask = None
        if self.causal:
            steps = x.shape[1] if self.batch_first else x.shape[0]
            mask = nn.Transformer.generate_square_subsequent_mask(steps)
        out, weights = self.attn(
            x, x, x, need_weights=self.need_weights, attn_mask=mask, is_causal=self.causal
        )
        return out if weights is None else (out, weights)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_multihead_attention_fused_with_dynamic_batch_and_sequence(batch_first, causal, tmp_path):
    firefly.manual_seed(3)
    model = SelfAttention(batch_first, need_weights=False, causal=causal).eval()
    proto = _compare_sequences(
        model,
        _sequence(batch_first),
        ["x"],
        ["out"],
        _sequence_dynamic(["x", "out"], batch_first),
        tmp_path,
        _SIZES,
    )
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("MatMul") >= 2 and ops.count("Softmax") == 1


def test_multihead_attention_with_its_weights(tmp_path):
    firefly.manual_seed(4)
    model = SelfAttention(batch_first=True, need_weights=True, causal=False).eval()
    dynamic = {
        "x": {0: "batch", 1: "seq"},
        "out": {0: "batch", 1: "seq"},
        "weights": {0: "batch", 1: "seq", 2: "seq"},
    }
    _compare_sequences(model, _sequence(True), ["x"], ["out", "weights"], dynamic, tmp_path, _SIZES)


class CrossAttention(nn.Module):
    """Queries attending to a memory of another length, causal from the top left (query i
    sees keys 0..i), as torch's."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, query, memory):
        mask = firefly.zeros(query.shape[1], memory.shape[1])  # ignored: is_causal says it
        return self.attn(query, memory, memory, attn_mask=mask, need_weights=False, is_causal=True)[
            0
        ]


def test_causal_cross_attention_follows_both_lengths(tmp_path):
    firefly.manual_seed(8)
    lengths = [(5, 3), (2, 6), (7, 4), (1, 1), (4, 9)]  # (target, source), the export's first

    def make(rng, batch, which):
        tq, tk = lengths[which]
        return (
            rng.normal(size=(batch, tq, 8)).astype(np.float32),
            rng.normal(size=(batch, tk, 8)).astype(np.float32),
        )

    dynamic = {
        "query": {0: "batch", 1: "target"},
        "memory": {0: "batch", 1: "source"},
        "out": {0: "batch", 1: "target"},
    }
    _compare_sequences(
        CrossAttention().eval(),
        make,
        ["query", "memory"],
        ["out"],
        dynamic,
        tmp_path,
        [(2, 0), (3, 1), (1, 2), (4, 3), (2, 4)],
    )


class MaskedAttention(nn.Module):
    """F.scaled_dot_product_attention with the mask an input of the graph: bool (True:
    attend; some rows attend nothing and give zeros) or float (added to the scores)."""

    def forward(self, q, k, v, mask):
        return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.7)


@pytest.mark.parametrize("opset", [17, 18])  # 18: ReduceMin's axes became an input
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_scaled_dot_product_attention_with_a_mask_input(kind, opset, tmp_path):
    def make(rng, batch, steps):
        q, k, v = (rng.normal(size=(batch, 2, steps, 4)).astype(np.float32) for _ in range(3))
        keep = rng.random((batch, 1, steps, steps)) < 0.6
        keep[0, 0, 0] = False  # a row with no key
        if kind == "bool":
            return q, k, v, keep
        return q, k, v, np.where(keep, rng.normal(size=keep.shape), -np.inf).astype(np.float32)

    dims = {0: "batch", 2: "seq"}
    names = ["q", "k", "v", "mask"]
    dynamic = {name: dims for name in [*names, "out"]}
    dynamic["mask"] = {0: "batch", 2: "seq", 3: "seq"}
    _compare_sequences(
        MaskedAttention(), make, names, ["out"], dynamic, tmp_path, _SIZES, opset_version=opset
    )


class PaddingInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x, padding):
        return self.attn(x, x, x, key_padding_mask=padding, need_weights=False)[0]


def test_a_mask_input_of_multihead_attention_is_refused_not_frozen(tmp_path):
    x = firefly.zeros(2, 5, 8)
    padding = np.zeros((2, 5), dtype=bool)
    with pytest.raises(
        ValueError,
        match=r"module 'attn' \(MultiheadAttention\) got a key_padding_mask that is or comes "
        r"from an input of the model",
    ):
        firefly.onnx.export(
            PaddingInput(), (x, padding), tmp_path / "m.onnx", input_names=["x", "padding"]
        )


class PaddingFromIds(nn.Module):
    """The key padding mask computed from the token ids (``ids == 0``, a comparison, which
    runs outside the traced ops)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, ids):
        x = self.embed(ids)
        return self.attn(x, x, x, key_padding_mask=ids == 0, need_weights=False)[0]


class MaskFromQueries(nn.Module):
    def forward(self, q, k, v):
        keep = q[..., :1] > 0  # from an input's values, outside the traced ops
        return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)


def test_a_mask_computed_from_the_inputs_is_refused_not_frozen(tmp_path):
    ids = np.array([[1, 2, 0], [3, 0, 0]])
    with pytest.raises(ValueError, match=r"'attn' \(MultiheadAttention\) got a key_padding_mask"):
        firefly.onnx.export(PaddingFromIds(), ids, tmp_path / "m.onnx")
    q = firefly.Tensor(np.random.default_rng(0).normal(size=(2, 2, 3, 4)).astype(np.float32))
    with pytest.raises(
        ValueError,
        match=r"scaled_dot_product_attention with a mask computed from the inputs by a "
        r"comparison .* has no ONNX mapping; it ran in module 'MaskFromQueries'",
    ):
        firefly.onnx.export(MaskFromQueries(), (q, q, q), tmp_path / "m.onnx")


class ReadInPython(nn.Module):
    def forward(self, x, gain):
        return x * float(gain.numpy().sum())  # gain's value, read in Python


def test_an_input_no_traced_op_reads_is_refused(tmp_path):
    with pytest.raises(
        ValueError, match=r"input 'input_1' \(shape \(2,\), float32\) is used by no"
    ):
        firefly.onnx.export(
            ReadInPython(), (firefly.ones(3, 2), firefly.ones(2)), tmp_path / "m.onnx"
        )


class Decoder(nn.Module):
    """A TransformerDecoderLayer, causal over the target, attending to a memory of another
    length; or a whole nn.Transformer (one encoder and one decoder layer)."""

    def __init__(self, whole):
        super().__init__()
        if whole:
            self.net = nn.Transformer(8, 2, 1, 1, 16, 0.1, batch_first=True, activation="gelu")
        else:
            self.net = nn.TransformerDecoderLayer(8, 2, 16, 0.1, batch_first=True)
        self.whole = whole

    def forward(self, target, memory):
        mask = nn.Transformer.generate_square_subsequent_mask(target.shape[1])
        if self.whole:
            return self.net(memory, target, tgt_mask=mask, tgt_is_causal=True)
        return self.net(target, memory, tgt_mask=mask, tgt_is_causal=True)


@pytest.mark.parametrize("whole", [False, True])
def test_decoder_layer_and_transformer_with_separate_lengths(whole, tmp_path):
    firefly.manual_seed(9)
    lengths = [(5, 3), (2, 6), (7, 4), (1, 1)]  # (target, source), the export's first

    def make(rng, batch, which):
        tq, tk = lengths[which]
        return (
            rng.normal(size=(batch, tq, 8)).astype(np.float32),
            rng.normal(size=(batch, tk, 8)).astype(np.float32),
        )

    dynamic = {
        "target": {0: "batch", 1: "target"},
        "memory": {0: "batch", 1: "source"},
        "out": {0: "batch", 1: "target"},
    }
    proto = _compare_sequences(
        Decoder(whole).eval(),
        make,
        ["target", "memory"],
        ["out"],
        dynamic,
        tmp_path,
        [(2, 0), (3, 1), (1, 2), (4, 3)],
    )
    assert [n.op_type for n in proto.graph.node].count("Softmax") == (3 if whole else 2)


class UnbatchedCausal(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(8, 2, 16, 0.0, norm_first=True)

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[0])
        return self.layer(x, src_mask=mask, is_causal=True)


def test_an_unbatched_causal_sequence(tmp_path):
    firefly.manual_seed(6)
    _compare_sequences(
        UnbatchedCausal().eval(),
        lambda rng, _, steps: (rng.normal(size=(steps, 8)).astype(np.float32),),
        ["x"],
        ["out"],
        {"x": {0: "seq"}, "out": {0: "seq"}},
        tmp_path,
        [(0, 5), (0, 1), (0, 11)],
    )


def test_attention_dropout_in_training_mode_warns_and_exports_eval(tmp_path):
    firefly.manual_seed(2)
    model = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = model

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    wrapper = Wrapper()
    x = np.random.default_rng(0).normal(size=(2, 4, 8)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"training mode.*'attn' \(MultiheadAttention\)"):
        firefly.onnx.export(wrapper, firefly.Tensor(x), tmp_path / "m.onnx")
    assert wrapper.training
    with firefly.no_grad():
        expected = wrapper.eval()(firefly.Tensor(x)).numpy()
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x), expected, rtol=1e-5, atol=1e-5)


def test_the_char_gpt_example_model(tmp_path):
    """examples/char_gpt.py's GPT (causal F.packed_self_attention, GELU, tied head) with a
    dynamic batch. Its positions are ``wpe.weight[:T]``, a slice of the traced length, so the
    sequence length is the example's."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import char_gpt
    finally:
        sys.path.pop(0)
    firefly.manual_seed(12)
    config = char_gpt.Config(n_embd=16, n_head=2, n_layer=2, block_size=12)
    model = char_gpt.build_model(firefly, config, vocab_size=20).eval()
    proto = _compare_sequences(
        model,
        lambda rng, batch, steps: (rng.integers(0, 20, (batch, steps)).astype(np.int64),),
        ["idx"],
        ["logits"],
        {"idx": {0: "batch"}, "logits": {0: "batch"}},
        tmp_path,
        [(2, 9), (5, 9), (1, 9)],
    )
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Softmax") == 2 and "Erf" in ops and "Range" in ops
