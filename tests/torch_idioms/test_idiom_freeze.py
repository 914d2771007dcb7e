"""Freezing a parameter with requires_grad_(False): it gets no gradient, the others do."""

import numpy as np
from idiom_twins import run_beside_torch, value

X = np.random.default_rng(14).normal(size=(3, 2)).astype(np.float32)


def program(torch, nn, data):
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2, 2))
            self.b = nn.Parameter(torch.zeros(2))

        def forward(self, x):
            return x @ self.w + self.b

    model = Model()
    model.w.requires_grad_(False)
    model(torch.tensor(X)).sum().backward()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    return {"w_grad_is_none": model.w.grad is None, "b_grad": model.b.grad, "trainable": trainable}


def test_freeze_a_parameter():
    result = run_beside_torch(program)
    assert result["w_grad_is_none"] and result["trainable"] == ["b"]
    np.testing.assert_array_equal(value(result["b_grad"]), [3.0, 3.0])
