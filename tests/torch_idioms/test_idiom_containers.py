"""Containers and the Module surface: ModuleDict, ParameterList, ParameterDict,
Sequential(OrderedDict), ReLU(True), named_children, get_submodule, get_parameter,
load_state_dict(strict=False), parameters(recurse=False) and repr (issue 21)."""

from collections import OrderedDict

import numpy as np
import pytest
from idiom_twins import run_beside_torch

X = np.linspace(-1.0, 1.0, 8).reshape(2, 4)


def build(torch, nn):
    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(
                OrderedDict([("conv", nn.Conv1d(1, 2, 3)), ("act", nn.ReLU(True))])
            )
            self.heads = nn.ModuleDict({"a": nn.Tanh(), "b": nn.LeakyReLU(0.2, True)})
            self.scales = nn.ParameterList([nn.Parameter(torch.ones(2, dtype=torch.float64))])
            self.extra = nn.ParameterDict(
                {"shift": nn.Parameter(torch.zeros(1, dtype=torch.float64))}
            )
            self.scales.append(nn.Parameter(torch.full((2,), 0.5, dtype=torch.float64)))

        def forward(self, x, head):
            h = self.trunk(x.unsqueeze(1)).sum(-1)
            return self.heads[head](h * self.scales[0] * self.scales[1]) + self.extra["shift"]

    model = Heads().double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.linspace(-0.5, 0.7, p.numel(), dtype=torch.float64).reshape(p.shape))
    return model


def program(torch, nn, data):
    model = build(torch, nn)
    x = torch.tensor(X, requires_grad=True)
    out = model(x, "a") + model(x, "b")
    out.sum().backward()
    other = build(torch, nn)
    state = {k: v for k, v in model.state_dict().items() if k != "extra.shift"}
    state["unused"] = state["scales.0"]
    result = other.load_state_dict(state, strict=False)
    return {
        "out": out,
        "grad": x.grad,
        "names": [n for n, _ in model.named_parameters()],
        "children": [n for n, _ in model.named_children()],
        "trunk_children": [n for n, _ in model.trunk.named_children()],
        "modules": [n for n, _ in model.named_modules()],
        "own": [n for n, _ in model.trunk.conv.named_parameters(recurse=False)],
        "top_own": len(list(model.parameters(recurse=False))),
        "submodule": type(model.get_submodule("trunk.act")).__name__,
        "parameter": model.get_parameter("trunk.conv.bias"),
        "missing": result.missing_keys,
        "unexpected": result.unexpected_keys,
        "keys": list(model.heads.keys()),
        "contains": ("a" in model.heads, "z" in model.heads, len(model.heads)),
        "len": (len(model.scales), len(model.extra), len(model.trunk)),
        "repr": repr(model.trunk),
        "matched": repr(other.load_state_dict(model.state_dict())),
    }


def test_containers_and_module_surface_match_torch():
    result = run_beside_torch(program, rtol=1e-12, atol=1e-14)
    assert result["missing"] == ["extra.shift"] and result["unexpected"] == ["unused"]


def edit_containers(torch, nn, data):
    seq = nn.Sequential(nn.ReLU(), nn.Tanh())
    seq.append(nn.Sigmoid())
    seq.insert(0, nn.Identity())
    del seq[1]
    popped = seq.pop(0)
    layers = nn.ModuleList([nn.ReLU()])
    layers += [nn.Tanh(), nn.Sigmoid()]
    layers.insert(1, nn.Identity())
    del layers[0]
    md = nn.ModuleDict({"x": nn.ReLU()})
    md.update([("y", nn.Tanh())])
    md["z"] = nn.Sigmoid()
    del md["x"]
    removed = md.pop("y")
    pd = nn.ParameterDict()
    pd["w"] = nn.Parameter(torch.ones(1))
    return {
        "seq": [type(m).__name__ for m in seq],
        "seq_names": [n for n, _ in seq.named_children()],
        "popped": type(popped).__name__,
        "list": [type(m).__name__ for m in layers],
        "list_names": [n for n, _ in layers.named_children()],
        "dict": list(md.keys()),
        "removed": type(removed).__name__,
        "items": [(k, type(v).__name__) for k, v in md.items()],
        "pd": [n for n, _ in pd.named_parameters()],
    }


def test_editing_containers_matches_torch():
    run_beside_torch(edit_containers)


def inplace_activations(torch, nn, data):
    x = torch.tensor(X, requires_grad=True)
    h = x * 2.0
    out = {}
    for name, act in [
        ("relu", nn.ReLU(True)),
        ("leaky", nn.LeakyReLU(0.1, True)),
        ("elu", nn.ELU(1.0, True)),
        ("silu", nn.SiLU(True)),
        ("hardtanh", nn.Hardtanh(-0.5, 0.5, True)),
    ]:
        hidden = h * 1.0
        y = act(hidden)
        out[name] = (y is hidden, y, repr(act))
    total = sum(v[1].sum() for v in out.values())
    total.backward()
    out["grad"] = x.grad
    with torch.no_grad():
        plain = torch.tensor(X)
        nn.functional.relu(plain, inplace=True)
        out["written"] = plain
    return out


def test_inplace_activations_write_into_their_input_and_differentiate_like_torch():
    result = run_beside_torch(inplace_activations, rtol=1e-12)
    assert result["relu"][0] is True


def test_inplace_on_a_leaf_that_requires_grad_is_refused_as_in_torch():
    import firefly

    torch = pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match="leaf"):
        torch.nn.ReLU(True)(torch.zeros(2, requires_grad=True))
    with pytest.raises(RuntimeError, match=r"relu\(inplace=True\): a leaf tensor"):
        firefly.nn.ReLU(True)(firefly.zeros(2, requires_grad=True))


def state_dict_options(torch, nn, data):
    model = nn.Sequential(nn.Tanh(), nn.BatchNorm1d(2))
    kept = model.state_dict(keep_vars=True)
    prefixed = model.state_dict(prefix="net.")
    target = {}
    returned = model.state_dict(destination=target)
    return {
        "kept_is_param": kept["1.weight"] is model[1].weight,
        "prefixed": sorted(prefixed),
        "filled": returned is target and sorted(target) == sorted(model.state_dict()),
        "shared": model.share_memory() is model,
    }


def test_state_dict_options_match_torch():
    run_beside_torch(state_dict_options)
