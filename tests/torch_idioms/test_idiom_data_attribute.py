"""``.data``: a Tensor sharing storage with no graph, as torch's (issue 21).

Programs write parameters through it (``p.data.add_``, ``init.constant_(w.data, ...)``,
``w.data.copy_``), read a detached output (``out.data``) and replace a tensor's value with
``.data = ``."""

import numpy as np
from idiom_twins import run_beside_torch

W = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
X = np.linspace(0.5, 2.0, 12).reshape(4, 3)


def manual_update(torch, nn, data):
    """A hand-written SGD step through ``p.data`` (the pre-optimizer idiom)."""

    class Affine(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))
            self.bias = nn.Parameter(torch.zeros(2, dtype=torch.float64))

        def forward(self, x):
            return x @ self.weight.t() + self.bias

    layer = Affine()
    nn.init.constant_(layer.bias.data, 0.25)
    layer.weight.data.copy_(torch.tensor(W))
    out = layer(torch.tensor(X))
    loss = (out**2).mean()
    loss.backward()
    for p in layer.parameters():
        p.data.add_(p.grad.data, alpha=-0.1)
    detached = out.data
    return {
        "weight": layer.weight,
        "bias": layer.bias,
        "out_data": detached,
        "no_graph": (detached.requires_grad, detached.is_leaf),
        "still_a_leaf": (layer.weight.is_leaf, layer.weight.requires_grad),
    }


def shares_storage(torch, nn, data):
    """Writes through ``.data`` land in the tensor; ``.data = `` may change its shape."""
    x = torch.zeros(3, requires_grad=True)
    d = x.data
    d[1] = 5.0
    d.mul_(2.0)
    y = torch.ones(2, dtype=torch.float64)
    y.data = torch.arange(4, dtype=torch.float64)
    same = torch.zeros(2)
    same.data = torch.ones(2)
    return {"x": x.detach(), "data_type": type(d).__name__, "y": y, "same": same}


def test_writes_through_data_update_the_parameters_like_torch():
    result = run_beside_torch(manual_update, rtol=1e-12, atol=1e-14)
    assert result["no_graph"] == [False, True]


def test_data_shares_storage_and_data_assignment_replaces_the_value():
    result = run_beside_torch(shares_storage)
    assert result["data_type"] == "Tensor"
    np.testing.assert_array_equal(result["x"][1], [0.0, 10.0, 0.0])
