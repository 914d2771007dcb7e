"""logits[arange(n), labels]: integer-array indexing, with repeated indices accumulating."""

import numpy as np
from idiom_twins import run_beside_torch, value

rng = np.random.default_rng(10)
LOGITS = rng.normal(size=(4, 3)).astype(np.float32)
LABELS = np.array([2, 2, 0, 1])


def program(torch, nn, data):
    logits, labels = torch.tensor(LOGITS, requires_grad=True), torch.tensor(LABELS)
    picked = logits[torch.arange(4), labels]
    rows = logits[torch.tensor([0, 0, 3])]
    (picked.sum() + rows.sum() * 2).backward()
    return {"picked": picked, "rows": rows, "grad": logits.grad}


def test_integer_array_indexing():
    result = run_beside_torch(program)
    np.testing.assert_array_equal(value(result["picked"]), LOGITS[np.arange(4), LABELS])
    assert value(result["grad"])[0].tolist() == [4.0, 4.0, 5.0]  # row 0 taken twice, label 2 once
