"""Evaluation under no_grad: predictions that record no graph, compared with labels."""

import numpy as np
from idiom_twins import run_beside_torch, value

rng = np.random.default_rng(15)
X = rng.normal(size=(6, 3)).astype(np.float32)
W = rng.normal(size=(3, 4)).astype(np.float32)
LABELS = rng.integers(0, 4, size=6)


def program(torch, nn, data):
    w = torch.tensor(W, requires_grad=True)
    with torch.no_grad():
        logits = torch.tensor(X) @ w
        preds = logits.argmax(-1)
        probs = logits.softmax(dim=-1)
    hits = (preds == torch.tensor(LABELS)).tolist()
    return {
        "preds": preds,
        "requires_grad": logits.requires_grad,
        "hits": hits,
        "row_sums": probs.sum(dim=1),
        "confident": (probs.max(dim=1).values > 0.5).sum().item(),
    }


def test_evaluation_under_no_grad():
    result = run_beside_torch(program)
    np.testing.assert_array_equal(value(result["preds"]), (X @ W).argmax(-1))
    assert result["requires_grad"] is False
    np.testing.assert_allclose(value(result["row_sums"]), np.ones(6), rtol=1e-6)
