"""One-hot targets from a broadcast comparison with arange, and accumulating into zeros_like."""

import numpy as np
from idiom_twins import run_beside_torch, value

LABELS = np.array([0, 2, 1, 2])


def program(torch, nn, data):
    labels = torch.tensor(LABELS)
    one_hot = (labels.unsqueeze(1) == torch.arange(3)).float()
    counts = torch.zeros_like(one_hot[0])
    for row in one_hot:
        counts += row
    full = torch.full((2, 3), 0.5)
    return {"one_hot": one_hot, "counts": counts, "full": full, "ones": torch.ones_like(labels)}


def test_one_hot():
    result = run_beside_torch(program)
    np.testing.assert_array_equal(value(result["one_hot"]), np.eye(3, dtype=np.float32)[LABELS])
    np.testing.assert_array_equal(value(result["counts"]), [1, 1, 2])
