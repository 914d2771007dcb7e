"""A hinge loss with clamp(min=0), a leaky ReLU with where, and maximum/abs/sqrt."""

import numpy as np
from idiom_twins import run_beside_torch, value

rng = np.random.default_rng(11)
SCORES = rng.normal(size=8)
SIGNS = np.where(rng.random(8) < 0.5, -1.0, 1.0)


def program(torch, nn, data):
    f, y = torch.tensor(SCORES, requires_grad=True), torch.tensor(SIGNS)
    hinge = torch.clamp(1 - y * f, min=0).mean()
    leaky = torch.where(f > 0, f, 0.01 * f)
    bounded = f.clamp(-0.5, 0.5)
    norm = (f * f).sum().sqrt()
    (
        hinge + leaky.sum() + bounded.sum() + norm + torch.maximum(f, y).sum() + f.abs().sum()
    ).backward()
    return {
        "hinge": hinge.item(),
        "leaky": leaky,
        "bounded": bounded,
        "norm": norm.item(),
        "grad": f.grad,
    }


def test_clamp_and_where():
    result = run_beside_torch(program, rtol=1e-12)
    assert np.isclose(result["hinge"], np.maximum(1 - SIGNS * SCORES, 0).mean())
    np.testing.assert_allclose(value(result["leaky"]), np.where(SCORES > 0, SCORES, 0.01 * SCORES))
