"""Accuracy of a classifier's logits with argmax and ==."""

import numpy as np
from idiom_twins import run_beside_torch, value

rng = np.random.default_rng(0)
LOGITS = rng.normal(size=(32, 5)).astype(np.float32)
LABELS = rng.integers(0, 5, size=32)


def program(torch, nn, data):
    logits, labels = torch.tensor(LOGITS), torch.tensor(LABELS)
    preds = logits.argmax(dim=1)
    correct = (preds == labels).sum().item()
    accuracy = (preds == labels).float().mean().item()
    _, predicted = torch.max(logits, 1)
    return {
        "preds": preds,
        "correct": correct,
        "accuracy": accuracy,
        "predicted": predicted,
        "wrong": (predicted != labels).sum(),
    }


def test_accuracy():
    result = run_beside_torch(program)
    expected = int((LOGITS.argmax(1) == LABELS).sum())
    assert result["correct"] == expected and np.isclose(result["accuracy"], expected / 32)
    assert value(result["wrong"]) == 32 - expected
