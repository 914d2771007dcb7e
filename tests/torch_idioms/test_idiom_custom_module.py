"""A custom Module holding raw Parameters, used with @ like any tensor."""

import numpy as np
from idiom_twins import run_beside_torch, value

rng = np.random.default_rng(1)
X = rng.normal(size=(6, 4)).astype(np.float32)
W = rng.normal(size=(4, 3)).astype(np.float32)


def program(torch, nn, data):
    class Affine(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(W))
            self.b = nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return x @ self.w + self.b

    model = Affine()
    loss = (model(torch.tensor(X)) ** 2).mean()
    loss.backward()
    count = sum(p.numel() for p in model.parameters())
    return {
        "loss": loss.item(),
        "w_grad": model.w.grad,
        "b_grad": model.b.grad,
        "count": count,
        "is_tensor": isinstance(model.w, torch.Tensor),
        "shape": tuple(model.w.size()),
    }


def test_custom_module_with_raw_parameters():
    result = run_beside_torch(program)
    out = X @ W
    assert np.isclose(result["loss"], (out**2).mean(), rtol=1e-5)
    np.testing.assert_allclose(value(result["w_grad"]), X.T @ (2 * out / out.size), rtol=1e-4)
    assert result["count"] == 15 and result["is_tensor"]
