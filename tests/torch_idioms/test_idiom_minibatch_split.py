"""Mini-batches by split and chunk, gradients accumulating across the pieces."""

import numpy as np
from idiom_twins import run_beside_torch, value

X = np.random.default_rng(16).normal(size=(10, 2))


def program(torch, nn, data):
    x = torch.tensor(X, requires_grad=True)
    sizes = []
    for batch in x.split(4):
        (batch**2).sum().backward(retain_graph=True)
        sizes.append(batch.shape[0])
    halves = x.chunk(2, dim=1)
    return {"sizes": sizes, "grad": x.grad, "halves": [tuple(h.shape) for h in halves]}


def test_split_and_chunk_minibatches():
    result = run_beside_torch(program, rtol=1e-12)
    assert result["sizes"] == [4, 4, 2] and result["halves"] == [[10, 1], [10, 1]]
    np.testing.assert_allclose(value(result["grad"]), 2 * X)
