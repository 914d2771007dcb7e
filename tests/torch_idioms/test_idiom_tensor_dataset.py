"""A training loop over a TensorDataset through a DataLoader."""

import numpy as np
from idiom_twins import requires, run_beside_torch

import firefly

rng = np.random.default_rng(7)
X = rng.normal(size=(10, 3)).astype(np.float32)
Y = (X @ np.array([1.0, -1.0, 2.0], np.float32)).astype(np.float32)


def program(torch, nn, data):
    dataset = data.TensorDataset(torch.tensor(X), torch.tensor(Y))
    loader = data.DataLoader(dataset, batch_size=4)
    w = torch.zeros(3, requires_grad=True)
    sizes, total = [], 0.0
    for xb, yb in loader:
        loss = ((xb @ w - yb) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= 0.1 * w.grad
            w.grad.zero_()
        sizes.append(len(xb))
        total += loss.item()
    return {"sizes": sizes, "total": total, "w": w, "length": len(dataset)}


def test_tensor_dataset_loop():
    requires(hasattr(firefly.data, "TensorDataset"), "TensorDataset comes with issue 13")
    result = run_beside_torch(program)
    assert result["sizes"] == [4, 4, 2] and result["length"] == 10
