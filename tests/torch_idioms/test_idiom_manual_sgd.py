"""Linear regression trained by hand: w -= lr * w.grad under no_grad, then grad.zero_()."""

import numpy as np
from idiom_twins import run_beside_torch, value

rng = np.random.default_rng(2)
X = rng.normal(size=(64, 3))
TRUE_W = np.array([[1.5], [-2.0], [0.5]])
Y = X @ TRUE_W


def program(torch, nn, data):
    x, y = torch.tensor(X), torch.tensor(Y)
    w = torch.zeros(3, 1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    lr = 0.1
    for _ in range(100):
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= lr * w.grad
            b.sub_(lr * b.grad)
            w.grad.zero_()
            b.grad.zero_()
    return {
        "w": w,
        "b": b,
        "loss": loss.item(),
        "leaf": w.is_leaf,
        "requires_grad": w.requires_grad,
    }


def test_manual_sgd_under_no_grad():
    result = run_beside_torch(program, rtol=1e-9)
    np.testing.assert_allclose(value(result["w"]), TRUE_W, atol=1e-3)
    assert result["leaf"] and result["requires_grad"]
