"""Flattening image batches for a linear layer: view(N, -1), flatten(1), unsqueeze, squeeze."""

import numpy as np
from idiom_twins import run_beside_torch, value

rng = np.random.default_rng(12)
IMAGES = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
W = rng.normal(size=(9, 2)).astype(np.float32)


def program(torch, nn, data):
    images, w = torch.tensor(IMAGES, requires_grad=True), torch.tensor(W)
    flat = images.view(images.size(0), -1)
    same = images.flatten(1)
    out = flat @ w + (same @ w) * 0.5
    column = out[:, 0].unsqueeze(1)
    back = column.squeeze(1)
    out.sum().backward()
    return {
        "flat_shape": tuple(flat.shape),
        "out": out,
        "column": tuple(column.shape),
        "back": tuple(back.shape),
        "dim": flat.dim(),
        "grad": images.grad,
        "expanded": torch.tensor([1.0, 2.0]).unsqueeze(0).expand(3, 2),
    }


def test_flatten_and_view():
    result = run_beside_torch(program)
    np.testing.assert_allclose(value(result["out"]), 1.5 * IMAGES.reshape(2, -1) @ W, rtol=1e-5)
    assert (
        result["flat_shape"] == [2, 9] and result["column"] == [2, 1] and result["back"] == [2]
    )  # tuples come back as lists
