"""firefly.nn.functional mirrors torch.nn.functional: same names, arguments and results."""

import numpy as np
import pytest

from firefly import Tensor
from firefly.nn import functional as F

torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")
TF = torch.nn.functional

_rng = np.random.default_rng(0)
PARAMS = {
    "w": _rng.normal(size=(2, 5)),
    "b": _rng.normal(size=2),  # linear: torch's (out_features, in_features)
    "conv_w": _rng.normal(size=(4, 2, 3, 3)),
    "conv_b": _rng.normal(size=4),
    "labels": np.array([0, 2, 1, 2]),
    "target": _rng.normal(size=(4, 3)),
}
# name -> (function of (functional module, input, params), input shape)
CASES = {
    "linear": (lambda m, x, p: m.linear(x, p["w"], p["b"]), (3, 5)),
    "linear_no_bias": (lambda m, x, p: m.linear(x, p["w"]), (3, 5)),
    "conv2d": (lambda m, x, p: m.conv2d(x, p["conv_w"], None, 1, 1, 1, 2), (2, 4, 6, 6)),
    "conv1d": (lambda m, x, p: m.conv1d(x, p["conv_w"][:, :, 0], p["conv_b"], 2), (2, 2, 9)),
    "max_pool2d": (lambda m, x, p: m.max_pool2d(x, 3, 2, 1), (2, 4, 6, 6)),
    "avg_pool2d": (lambda m, x, p: m.avg_pool2d(x, 2), (2, 4, 6, 6)),
    "adaptive_avg_pool2d": (lambda m, x, p: m.adaptive_avg_pool2d(x, (2, 3)), (2, 4, 6, 6)),
    "layer_norm": (lambda m, x, p: m.layer_norm(x, (6,)), (2, 4, 6)),
    "group_norm": (lambda m, x, p: m.group_norm(x, 2), (2, 4, 6)),
    "batch_norm": (lambda m, x, p: m.batch_norm(x, None, None, training=True), (5, 4)),
    "relu": (lambda m, x, p: m.relu(x), (3, 4)),
    "sigmoid": (lambda m, x, p: m.sigmoid(x), (3, 4)),
    "tanh": (lambda m, x, p: m.tanh(x), (3, 4)),
    "softmax": (lambda m, x, p: m.softmax(x, dim=0), (3, 4)),
    "log_softmax": (lambda m, x, p: m.log_softmax(x, dim=1), (3, 4)),
    "cross_entropy": (lambda m, x, p: m.cross_entropy(x, p["labels"]), (4, 3)),
    "mse_loss": (lambda m, x, p: m.mse_loss(x, p["target"]), (4, 3)),
    "mse_loss_none": (lambda m, x, p: m.mse_loss(x, p["target"], reduction="none"), (4, 3)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_functional_matches_torch(name):
    fn, shape = CASES[name]
    x = np.random.default_rng(1).normal(size=shape)
    leaf, t_leaf = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = fn(F, leaf, {k: (v if v.dtype.kind == "i" else Tensor(v)) for k, v in PARAMS.items()})
    t_out = fn(TF, t_leaf, {k: torch.tensor(v) for k, v in PARAMS.items()})
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    grad = np.random.default_rng(2).normal(size=out.shape)
    out.backward(grad)
    t_out.backward(torch.tensor(grad))
    np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_dropout_training_flag():
    x = Tensor(np.ones((10, 10)))
    assert F.dropout(x, 0.5, training=False) is x
    out = F.dropout(x, 0.5).numpy()
    assert set(np.unique(out)) <= {0.0, 2.0}


def test_embedding_and_unsupported_options():
    w = Tensor(np.arange(12.0).reshape(4, 3))
    np.testing.assert_array_equal(
        F.embedding(np.array([3, 0]), w).numpy(), [[9, 10, 11], [0, 1, 2]]
    )
    with pytest.raises(NotImplementedError, match="max_norm"):
        F.embedding(np.array([0]), w, max_norm=1.0)
