"""A loss over the valid entries only: a mask from a comparison, as float, and its count."""

import numpy as np
from idiom_twins import run_beside_torch

rng = np.random.default_rng(5)
PRED = rng.normal(size=(4, 6)).astype(np.float32)
TARGET = np.where(rng.random((4, 6)) < 0.3, -1.0, rng.normal(size=(4, 6))).astype(
    np.float32
)  # -1: padding


def program(torch, nn, data):
    pred, target = torch.tensor(PRED, requires_grad=True), torch.tensor(TARGET)
    mask = target != -1
    loss = ((pred - target) ** 2 * mask.float()).sum() / mask.sum()
    loss.backward()
    selected = ((pred[mask] - target[mask]) ** 2).mean()
    return {
        "loss": loss.item(),
        "selected": selected.item(),
        "grad": pred.grad,
        "valid": mask.sum().item(),
    }


def test_masked_loss():
    result = run_beside_torch(program)
    valid = TARGET != -1
    expected = ((PRED - TARGET) ** 2)[valid].mean()
    assert np.isclose(result["loss"], expected, rtol=1e-5) and np.isclose(
        result["selected"], expected, rtol=1e-5
    )
    assert result["valid"] == int(valid.sum())
