"""Selecting with a boolean mask, and zeroing masked entries in place."""

import numpy as np
from idiom_twins import run_beside_torch, value

X = np.random.default_rng(9).normal(size=(3, 4)).astype(np.float32)


def program(torch, nn, data):
    x = torch.tensor(X, requires_grad=True)
    positives = x[x > 0]
    (positives**2).sum().backward()
    cleaned = x.detach().clone()
    cleaned[cleaned < 0] = 0.0
    rows = x.detach()[torch.tensor([True, False, True])]
    return {
        "positives": positives,
        "grad": x.grad,
        "cleaned": cleaned,
        "rows": rows,
        "count": (x > 0).sum().item(),
        "any": bool((x > 1).any()),
    }


def test_boolean_mask():
    result = run_beside_torch(program)
    np.testing.assert_array_equal(value(result["positives"]), X[X > 0])
    np.testing.assert_array_equal(value(result["cleaned"]), np.maximum(X, 0))
