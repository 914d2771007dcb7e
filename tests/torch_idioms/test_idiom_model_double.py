"""model.double(): every parameter becomes float64, and float64 inputs go through."""

import numpy as np
from idiom_twins import requires, run_beside_torch, value

import firefly

X = np.random.default_rng(6).normal(size=(3, 2))
W = np.array([[1.0, -1.0], [0.5, 2.0]], np.float32)


def program(torch, nn, data):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(W))

        def forward(self, x):
            return (x @ self.w).tanh()

    model = Model().double()
    out = model(torch.tensor(X))
    out.sum().backward()
    return {"dtype": str(model.w.dtype).removeprefix("torch."), "out": out, "grad": model.w.grad}


def test_model_double():
    requires(hasattr(firefly.nn.Module, "double"), "Module.double() comes with issue 11")
    result = run_beside_torch(program, rtol=1e-12)
    assert result["dtype"] == "float64"
    np.testing.assert_allclose(value(result["out"]), np.tanh(X @ W.astype(np.float64)), rtol=1e-12)
