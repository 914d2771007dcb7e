"""The walls a PyTorch user hit (issue 9), each now behaving as in PyTorch or raising an error
that says what to do; the first two were silent wrong answers."""

import numpy as np
import pytest

import firefly
from firefly import Tensor, nn


def test_equality_is_elementwise_not_identity():
    t = Tensor([1.0, 2.0])
    assert (t == t).numpy().tolist() == [True, True]
    preds, labels = Tensor(np.array([1.0, 2.0, 3.0])), np.array([1.0, 0.0, 3.0])
    assert (preds == labels).numpy().tolist() == [True, False, True]
    assert (labels == preds).numpy().tolist() == [True, False, True]
    with pytest.raises(TypeError, match=r"\.float\(\)"):
        np.mean(preds == labels)  # no longer a silent 0.0
    assert (Tensor([-1.0, 1.0]) > 0).numpy().tolist() == [False, True]


def test_update_under_no_grad_is_in_place_and_keeps_training():
    w = Tensor(np.ones(3), requires_grad=True)
    (w * w).sum().backward()
    before = w
    with firefly.no_grad():
        w -= 0.5 * w.grad
    assert w is before and w.requires_grad and w.is_leaf
    (w * w).sum().backward()  # the next backward still reaches w
    np.testing.assert_array_equal(w.numpy(), np.zeros(3))


def test_parameter_works_where_a_tensor_does():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(np.full((2, 2), 2.0))

        def forward(self, x):
            return x @ self.w

    model = Scale()
    assert model(Tensor(np.eye(2))).numpy().tolist() == [[2.0, 2.0], [2.0, 2.0]]
    model.w.requires_grad = False
    assert model.w.numel() == 4 and model.w.size() == (2, 2) and model.w.size(1) == 2


def test_dim_and_keepdim_are_accepted():
    x = Tensor(np.ones((2, 3)))
    assert x.sum(dim=1, keepdim=True).shape == (2, 1) and x.mean(dim=0).shape == (3,)


@pytest.mark.parametrize(
    "method, args",
    [
        ("argmax", ()),
        ("view", (-1,)),
        ("flatten", ()),
        ("unsqueeze", (0,)),
        ("squeeze", ()),
        ("float", ()),
        ("double", ()),
        ("to", (np.float64,)),
        ("clone", ()),
        ("tolist", ()),
        ("abs", ()),
        ("sqrt", ()),
        ("clamp", (0.0, 1.0)),
        ("zero_", ()),
        ("requires_grad_", ()),
        ("dim", ()),
    ],
)
def test_the_missing_tensor_methods_exist(method, args):
    getattr(Tensor(np.ones((2, 3))), method)(*args)
    assert float(Tensor([2.0])) == 2.0


@pytest.mark.parametrize("name", ["zeros", "ones", "randn", "cat", "stack"])
def test_the_missing_creation_functions_exist(name):
    args = ([Tensor(np.ones(2)), Tensor(np.ones(2))],) if name in ("cat", "stack") else (2, 3)
    assert isinstance(getattr(firefly, name)(*args), Tensor)


def test_integer_arrays_and_masks_index():
    x = Tensor(np.arange(6.0).reshape(3, 2))
    assert x[np.array([0, 2])].numpy().tolist() == [[0.0, 1.0], [4.0, 5.0]]
    assert x[x > 2].numpy().tolist() == [3.0, 4.0, 5.0]
    with pytest.raises(IndexError, match=r"\(3, 2\)"):
        x[np.array([0, 3])]
