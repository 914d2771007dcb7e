"""Negative log-likelihood by hand: log_softmax, then gather at the label of each row."""

import numpy as np
from idiom_twins import run_beside_torch, value

rng = np.random.default_rng(8)
LOGITS = rng.normal(size=(5, 4))
LABELS = np.array([3, 0, 0, 2, 1])


def program(torch, nn, data):
    logits, labels = torch.tensor(LOGITS, requires_grad=True), torch.tensor(LABELS)
    log_probs = logits.log_softmax(dim=1)
    picked = log_probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    loss = -picked.mean()
    loss.backward()
    fused = nn.CrossEntropyLoss()(logits.detach(), labels)
    return {"picked": picked, "loss": loss.item(), "grad": logits.grad, "fused": fused.item()}


def test_gather_by_label_index():
    result = run_beside_torch(program, rtol=1e-10)
    shifted = LOGITS - LOGITS.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    np.testing.assert_allclose(value(result["picked"]), log_probs[np.arange(5), LABELS], rtol=1e-12)
    assert np.isclose(result["loss"], result["fused"], rtol=1e-12)
