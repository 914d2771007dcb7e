"""Module (issue 9, item 7): buffers, to()/float()/double(), apply(), requires_grad_(),
modules(), train()/eval() everywhere, and strict load_state_dict for buffers too."""

import numpy as np
import pytest

import firefly
from firefly import Tensor, nn
from firefly.nn.module import Module


class WithBuffers(Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 3)
        self.register_buffer("steps", Tensor(np.array(0, dtype=np.int64), dtype=np.int64))
        self.register_buffer("scale", Tensor(np.ones(3, dtype=np.float32)))
        self.register_buffer("cache", Tensor(np.zeros(2, dtype=np.float32)), persistent=False)
        self.register_buffer("unset", None)
        self.inner = nn.Sequential(nn.BatchNorm1d(3))

    def forward(self, x):
        return self.inner(self.fc(x) * self.scale)


def test_buffers_are_listed_saved_and_not_parameters():
    m = WithBuffers()
    assert [n for n, _ in m.named_buffers()] == [
        "steps",
        "scale",
        "cache",
        "inner.0.running_mean",
        "inner.0.running_var",
        "inner.0.num_batches_tracked",
    ]
    assert len(list(m.buffers(recurse=False))) == 3
    assert [n for n, _ in m.named_parameters()] == [
        "fc.weight",
        "fc.bias",
        "inner.0.weight",
        "inner.0.bias",
    ]
    assert list(m.state_dict()) == [
        "fc.weight",
        "fc.bias",
        "inner.0.weight",
        "inner.0.bias",
        "inner.0.running_mean",
        "inner.0.running_var",
        "inner.0.num_batches_tracked",
        "steps",
        "scale",
    ]  # no non-persistent or None buffers
    m.scale = Tensor(np.full(3, 2.0, dtype=np.float32))  # assigning replaces the buffer
    assert m.state_dict()["scale"][0] == 2.0


def test_register_buffer_rejects_bad_names_and_values():
    m = WithBuffers()
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("fc", Tensor(np.zeros(1)))
    with pytest.raises(KeyError, match=r"contain no '\.'"):
        m.register_buffer("a.b", Tensor(np.zeros(1)))
    with pytest.raises(TypeError, match="must be a Tensor or None, got ndarray"):
        m.register_buffer("arr", np.zeros(1))
    with pytest.raises(TypeError, match="buffer 'scale'"):
        m.scale = np.zeros(3)


def test_load_state_dict_is_strict_about_buffers():
    m = WithBuffers()
    state = m.state_dict()
    state["inner.0.running_mean"] = np.full(3, 5.0, dtype=np.float32)
    state["steps"] = np.array(9, dtype=np.int64)
    m.load_state_dict(state)
    assert m.inner[0].running_mean.numpy()[0] == 5.0 and int(m.steps.item()) == 9
    missing = dict(state)
    del missing["inner.0.running_var"]
    with pytest.raises(ValueError, match=r"missing keys \['inner.0.running_var'\]"):
        m.load_state_dict(missing)
    bad = dict(state, **{"scale": np.ones(4, dtype=np.float32)})
    with pytest.raises(ValueError, match=r"'scale' has shape \(4,\) in the state but \(3,\)"):
        m.load_state_dict(bad)
    bad = dict(state, **{"scale": np.ones(3)})
    with pytest.raises(TypeError, match=r"'scale' has dtype float64"):
        m.load_state_dict(bad)
    assert m.scale.numpy()[0] == 1.0  # nothing written by the failed loads
    result = m.load_state_dict(dict(missing, extra=np.zeros(1)), strict=False)
    assert result.missing_keys == ["inner.0.running_var"] and result.unexpected_keys == ["extra"]


def test_to_double_and_float_convert_parameters_and_float_buffers():
    m = WithBuffers()
    m(Tensor(np.ones((4, 2), dtype=np.float32))).sum().backward()
    assert m.double() is m
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m.fc.weight.grad.dtype == np.float64
    assert m.scale.dtype == np.float64 and m.inner[0].running_var.dtype == np.float64
    assert m.steps.dtype == np.int64
    assert m(Tensor(np.ones((4, 2)))).dtype == np.float64
    m.float()
    assert m.fc.weight.dtype == np.float32 and m.scale.dtype == np.float32
    m.to(np.float64)
    assert m.fc.bias.dtype == np.float64
    m.to("cpu", dtype=np.float32)
    assert m.fc.bias.dtype == np.float32
    with pytest.raises(TypeError, match="float32 or float64"):
        m.to(np.int32)
    with pytest.raises(ValueError, match="CPU only"):
        m.to("cuda")


def test_apply_visits_children_before_parents():
    m = WithBuffers()
    visited = []
    assert m.apply(lambda mod: visited.append(type(mod).__name__)) is m
    assert visited == ["Linear", "BatchNorm1d", "Sequential", "WithBuffers"]
    firefly.manual_seed(0)

    def zero_linear(mod):
        if isinstance(mod, nn.Linear):
            nn.init.zeros_(mod.weight)

    m.apply(zero_linear)
    assert not m.fc.weight.numpy().any()


def test_requires_grad_freezes_and_unfreezes():
    m = WithBuffers()
    assert m.requires_grad_(False) is m
    assert not any(p.tensor.requires_grad for p in m.parameters())
    assert m.get_parameters() == []
    m.requires_grad_()
    assert all(p.tensor.requires_grad for p in m.parameters())


def test_modules_and_train_eval_reach_every_submodule():
    m = WithBuffers()
    assert [type(x).__name__ for x in m.modules()] == [
        "WithBuffers",
        "Linear",
        "Sequential",
        "BatchNorm1d",
    ]
    m.eval()
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
