"""Linear in torch's (out_features, in_features) layout: torch state_dicts load as they are,
F.linear takes module weights, weight tying shares one Parameter, init fans match torch's, and
checkpoints of format 1 (weights stored (in, out)) are converted on load with one warning."""

import json
import warnings

import numpy as np
import pytest

import firefly
import firefly.nn.functional as F
from firefly import nn, serialization
from firefly.tensor import Tensor

torch = pytest.importorskip("torch", reason="pip install torch==2.13.0 for the torch comparisons")


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 7, dtype=np.float64)
        self.square = nn.Linear(7, 7, dtype=np.float64)  # a shape that cannot tell the layout
        self.fc2 = nn.Linear(7, 3, bias=False, dtype=np.float64)

    def forward(self, x):
        return self.fc2(self.square(self.fc1(x).relu()).relu())


def torch_mlp():
    return torch.nn.Sequential(
        torch.nn.Linear(5, 7),
        torch.nn.ReLU(),
        torch.nn.Linear(7, 7),
        torch.nn.ReLU(),
        torch.nn.Linear(7, 3, bias=False),
    ).double()


TORCH_NAMES = {"0": "fc1", "2": "square", "4": "fc2"}


def test_weight_is_out_by_in_and_matches_torch_forward_and_backward():
    torch.manual_seed(0)
    theirs = torch_mlp()
    ours = MLP()
    state = {}
    for key, value in theirs.state_dict().items():
        index, kind = key.split(".")
        state[f"{TORCH_NAMES[index]}.{kind}"] = value.numpy()  # loaded as it is: no transposes
    ours.load_state_dict(state)
    assert ours.fc1.weight.shape == (7, 5) == tuple(theirs[0].weight.shape)
    x = np.random.default_rng(0).normal(size=(4, 5))
    out = ours(Tensor(x))
    expected = theirs(torch.tensor(x))
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-13, atol=1e-13)
    out.sum().backward()
    expected.sum().backward()
    for index, name in TORCH_NAMES.items():
        np.testing.assert_allclose(
            getattr(ours, name).weight.grad.numpy(),
            theirs[int(index)].weight.grad.numpy(),
            rtol=1e-12,
            atol=1e-13,
        )


def test_f_linear_takes_module_weights_like_torch():
    layer = nn.Linear(4, 3, dtype=np.float64)
    x = np.random.default_rng(1).normal(size=(2, 5, 4))
    for bias in (layer.bias, None):
        ours = F.linear(Tensor(x), layer.weight, bias)
        theirs = torch.nn.functional.linear(
            torch.tensor(x),
            torch.tensor(layer.weight.numpy()),
            None if bias is None else torch.tensor(bias.numpy()),
        )
        # Summed in another order than torch's: an output near zero (a sum of terms near 1
        # that cancel) differs by a few ulps of the terms, not of the result.
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(
        F.linear(Tensor(x), layer.weight, layer.bias).numpy(), layer(x).numpy()
    )
    with pytest.raises(ValueError, match=r"linear.*weight \(out_features, in_features\).*\(4, 3\)"):
        F.linear(Tensor(x), Tensor(layer.weight.numpy().T.copy()), layer.bias)


def test_f_linear_without_bias_gives_the_weight_its_gradient():
    weight = Tensor(np.random.default_rng(2).normal(size=(3, 4)), requires_grad=True)
    x = np.random.default_rng(3).normal(size=(5, 4))
    upstream = np.random.default_rng(4).normal(size=(5, 3))
    F.linear(Tensor(x), weight).backward(upstream)
    np.testing.assert_allclose(weight.grad.numpy(), upstream.T @ x, rtol=1e-12)


class TiedLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(11, 4, dtype=np.float64)
        self.head = nn.Linear(4, 11, bias=False, dtype=np.float64)
        self.head.weight = self.wte.weight  # (vocabulary, dim) in both

    def forward(self, tokens):
        return self.head(self.wte(tokens))


def test_weight_tying_shares_one_parameter_one_gradient_one_optimizer_entry():
    firefly.manual_seed(0)
    model = TiedLM()
    assert model.head.weight is model.wte.weight
    assert [name for name, _ in model.named_parameters()] == ["wte.weight"]
    tokens = np.array([[1, 4, 4, 9]])
    upstream = np.random.default_rng(5).normal(size=(1, 4, 11))
    model(tokens).backward(upstream)

    emb = torch.nn.Embedding(11, 4).double()
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(model.wte.weight.numpy()))
    torch.nn.functional.linear(emb(torch.tensor(tokens)), emb.weight).backward(
        torch.tensor(upstream)
    )
    # the one gradient holds both uses: the embedding rows and the output projection
    np.testing.assert_allclose(model.wte.weight.grad.numpy(), emb.weight.grad.numpy(), rtol=1e-12)

    optimizer = firefly.optim.Adam(model.parameters(), lr=0.1)
    assert len(optimizer.parameters) == 1
    before = model.wte.weight.numpy().copy()
    optimizer.step()
    assert not np.array_equal(model.head.weight.numpy(), before)
    assert list(optimizer.state_dict()["state"]) == [0]


def test_a_torch_state_dict_with_tied_weights_loads_under_both_names():
    model = TiedLM()
    weight = np.random.default_rng(6).normal(size=(11, 4))
    assert model.load_state_dict({"wte.weight": weight, "head.weight": weight}) == ([], [])
    np.testing.assert_array_equal(model.head.weight.numpy(), weight)


def test_init_fans_follow_torch_for_a_linear_weight():
    layer = nn.Linear(30, 5)
    their_fan_in, their_fan_out = torch.nn.init._calculate_fan_in_and_fan_out(
        torch.empty(tuple(layer.weight.shape))
    )
    assert (their_fan_in, their_fan_out) == (30, 5)
    firefly.manual_seed(0)
    nn.init.kaiming_uniform_(layer.weight, mode="fan_in", nonlinearity="relu")
    bound = np.sqrt(2.0) * np.sqrt(3.0 / their_fan_in)
    assert 0.9 * bound < np.abs(layer.weight.numpy()).max() <= bound
    nn.init.kaiming_uniform_(layer.weight, mode="fan_out", nonlinearity="relu")
    bound = np.sqrt(2.0) * np.sqrt(3.0 / their_fan_out)
    assert 0.9 * bound < np.abs(layer.weight.numpy()).max() <= bound


# ----------------------------------------------------------------------------- checkpoints
def save_format_1(state, path):
    """Write ``state`` as firefly wrote checkpoints before format 2 (same entries and JSON
    structure, version 1)."""
    encoder = serialization._Encoder()
    structure = {"format": serialization.FORMAT, "version": 1, "root": encoder.encode(state, [])}
    np.savez(
        path, **encoder.arrays, **{serialization.STRUCTURE_KEY: np.array(json.dumps(structure))}
    )


def old_layout_checkpoint(path):
    """A format-1 checkpoint of MLP with momentum state: the weights stored (in, out). Returns
    the old model's output on ``x`` and the momentum buffers in torch's layout."""
    rng = np.random.default_rng(7)
    weights = {
        name: rng.normal(size=shape)
        for name, shape in (("fc1", (5, 7)), ("square", (7, 7)), ("fc2", (7, 3)))
    }  # (in, out)
    biases = {"fc1": rng.normal(size=7), "square": rng.normal(size=7)}
    model_state = {
        "fc1.weight": weights["fc1"],
        "fc1.bias": biases["fc1"],
        "square.weight": weights["square"],
        "square.bias": biases["square"],
        "fc2.weight": weights["fc2"],
    }
    momentum = {i: rng.normal(size=value.shape) for i, value in enumerate(model_state.values())}
    optimizer_state = {
        "state": {i: {"step": 2, "momentum_buffer": buf} for i, buf in momentum.items()},
        # the param groups as SGD writes them (their layout did not change)
        "param_groups": firefly.optim.SGD(MLP().parameters(), lr=0.1, momentum=0.9).state_dict()[
            "param_groups"
        ],
    }
    save_format_1({"model": model_state, "optimizer": optimizer_state, "epoch": 3}, path)
    x = rng.normal(size=(4, 5))
    hidden = np.maximum(x @ weights["fc1"] + biases["fc1"], 0)
    hidden = np.maximum(hidden @ weights["square"] + biases["square"], 0)
    expected_momentum = [b.T if b.ndim == 2 else b for b in momentum.values()]
    return x, hidden @ weights["fc2"], expected_momentum


def test_a_format_1_checkpoint_is_converted_on_load_with_one_warning(tmp_path):
    path = tmp_path / "old.npz"
    x, expected, expected_momentum = old_layout_checkpoint(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        checkpoint = firefly.load(path)
        model = MLP()
        model.load_state_dict(checkpoint["model"])
        optimizer = firefly.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        optimizer.load_state_dict(checkpoint["optimizer"])
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert "format 1" in str(caught[0].message) and "(out_features, in_features)" in str(
        caught[0].message
    )
    assert checkpoint["epoch"] == 3
    np.testing.assert_allclose(model(Tensor(x)).numpy(), expected, rtol=1e-12)
    saved = optimizer.state_dict()["state"]
    for index, want in enumerate(expected_momentum):
        np.testing.assert_array_equal(saved[index]["momentum_buffer"], want)

    # saved again, it is format 2 and loads without conversion or warning
    firefly.save({"model": model.state_dict()}, tmp_path / "new.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = MLP()
        again.load_state_dict(firefly.load(tmp_path / "new.npz")["model"])
    np.testing.assert_array_equal(again.square.weight.numpy(), model.square.weight.numpy())


def test_a_transposed_weight_in_a_plain_state_names_the_key_and_both_shapes():
    model = MLP()
    state = {name: value for name, value in model.state_dict().items()}
    state["fc1.weight"] = state["fc1.weight"].T.copy()
    with pytest.raises(
        ValueError, match=r"'fc1\.weight' has shape \(5, 7\).*\(7, 5\) in the model.*format 2"
    ):
        model.load_state_dict(state)


def test_an_unknown_format_version_is_refused(tmp_path):
    encoder = serialization._Encoder()
    structure = {"format": serialization.FORMAT, "version": 99, "root": encoder.encode({}, [])}
    np.savez(
        tmp_path / "future.npz", **{serialization.STRUCTURE_KEY: np.array(json.dumps(structure))}
    )
    with pytest.raises(ValueError, match="version 99"):
        firefly.load(tmp_path / "future.npz")


def test_a_compiled_step_with_a_bias_free_linear_replays_as_eager():
    def run(compiled):
        firefly.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 1))
        optimizer = firefly.optim.SGD(model.parameters(), lr=0.1)

        def step(x, y):
            optimizer.zero_grad()
            loss = nn.MSELoss()(model(x), y)
            loss.backward()
            optimizer.step()
            return loss

        step = firefly.compile(step) if compiled else step
        x = Tensor(np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32))
        y = Tensor(np.ones((16, 1), np.float32))
        return [step(x, y).item() for _ in range(5)]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a step that cannot be planned warns
        assert run(compiled=True) == run(compiled=False)
