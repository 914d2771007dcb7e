"""Accumulating a running loss with .item() and float(), and reading tensors with tolist()."""

import numpy as np
import pytest
from idiom_twins import run_beside_torch

BATCHES = np.random.default_rng(13).normal(size=(5, 4)).astype(np.float32)


def program(torch, nn, data):
    w = torch.ones(4, requires_grad=True)
    running, history = 0.0, []
    for batch in torch.tensor(BATCHES):
        loss = (batch * w).pow(2).mean()
        loss.backward()
        running += loss.item()
        history.append(float(loss))
    return {
        "running": running,
        "history": history,
        "grad": w.grad.tolist(),
        "count": int(torch.tensor(3.0)),
    }


@pytest.mark.filterwarnings(
    "ignore:Converting a tensor with requires_grad"
)  # torch warns on float(loss)
def test_running_loss():
    result = run_beside_torch(program)
    expected = ((BATCHES**2).mean(1)).tolist()
    np.testing.assert_allclose(result["history"], expected, rtol=1e-5)
    assert isinstance(result["grad"], list) and result["count"] == 3
