"""clone() keeps the graph and copies; detach() shares memory and leaves the graph."""

import numpy as np
from idiom_twins import run_beside_torch, value

X = np.array([1.0, -2.0, 3.0], np.float32)


def program(torch, nn, data):
    x = torch.tensor(X, requires_grad=True)
    y = x * 2
    frozen = y.detach()
    copy = y.clone()
    (copy * 3 + frozen).sum().backward()
    snapshot = x.detach().clone()
    with torch.no_grad():
        x.mul_(10)
    return {
        "grad": x.grad,
        "frozen_requires_grad": frozen.requires_grad,
        "copy_requires_grad": copy.requires_grad,
        "snapshot": snapshot,
        "x": x.detach(),
    }


def test_clone_and_detach():
    result = run_beside_torch(program)
    np.testing.assert_array_equal(value(result["grad"]), np.full(3, 6.0))
    np.testing.assert_array_equal(value(result["snapshot"]), X)
    assert not result["frozen_requires_grad"] and result["copy_requires_grad"]
