"""Joining tensors with cat and stack, gradients flowing to every piece."""

import numpy as np
from idiom_twins import run_beside_torch, value

rng = np.random.default_rng(4)
A, B = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(1, 3)).astype(np.float32)


def program(torch, nn, data):
    a, b = torch.tensor(A, requires_grad=True), torch.tensor(B, requires_grad=True)
    rows = torch.cat([a, b, a * 2], dim=0)
    columns = torch.cat((a, a), dim=1)
    stacked = torch.stack([a, a + 1], dim=0)
    pairs = torch.stack([a[0], b[0]], dim=1)
    (rows.sum() + (columns**2).sum() + stacked[1].pow(3).sum() + pairs.exp().sum()).backward()
    labels = torch.cat([torch.tensor([0, 1]), torch.tensor([2])])
    return {
        "rows": rows,
        "columns": columns,
        "stacked": stacked,
        "pairs": pairs,
        "a_grad": a.grad,
        "b_grad": b.grad,
        "labels": labels,
    }


def test_cat_and_stack():
    result = run_beside_torch(program)
    np.testing.assert_array_equal(value(result["rows"]), np.concatenate([A, B, A * 2]))
    np.testing.assert_array_equal(value(result["labels"]), [0, 1, 2])
