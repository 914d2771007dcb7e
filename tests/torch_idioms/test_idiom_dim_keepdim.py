"""Reductions and softmax with dim= and keepdim=."""

import numpy as np
from idiom_twins import run_beside_torch, value

X = np.random.default_rng(3).uniform(0.5, 2.0, size=(4, 5)).astype(np.float32)


def program(torch, nn, data):
    x = torch.tensor(X, requires_grad=True)
    normalized = x / x.sum(dim=1, keepdim=True)
    centered = x - x.mean(dim=0)
    probs = x.softmax(dim=-1)
    top = x.max(dim=1, keepdim=True).values
    loss = (
        (normalized * centered).sum() + probs[:, 0].sum() + top.sum() + x.log_softmax(dim=1).mean()
    )
    loss.backward()
    return {
        "normalized": normalized,
        "centered": centered,
        "probs": probs,
        "top": top,
        "grad": x.grad,
        "argmin": x.argmin(dim=0, keepdim=True),
        "sum_all": x.sum(dim=(0, 1)),
    }


def test_dim_and_keepdim():
    result = run_beside_torch(program, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value(result["normalized"]), X / X.sum(1, keepdims=True), rtol=1e-6)
    assert value(result["top"]).shape == (4, 1)
