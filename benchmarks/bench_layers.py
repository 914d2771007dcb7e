"""Layer ops, forward plus backward in float32, firefly beside PyTorch eager on the CPU:

- conv2d at (64, 1, 8, 8) -> 16 channels 3x3 padding 1, (64, 16, 8, 8) -> 32 channels 3x3, and
  LeNet's (64, 1, 28, 28) -> 6 channels 5x5;
- max_pool2d 2x2 at (64, 32, 8, 8); batch_norm (training) at (64, 32, 8, 8); layer_norm over
  the last dimension of (64, 128, 256);
- one training step (zero_grad, forward, cross-entropy, backward, AdamW) of the digits CNN of
  examples/digits_cnn.py at batch 64.

    pytest benchmarks/bench_layers.py --benchmark-enable

Before timing, each case checks that firefly and torch agree on the output and the input's
gradient (the CNN step: on the loss over three steps from the same parameters). Plain test
runs (``--benchmark-disable``) run each timed call once.
"""

import numpy as np
import pytest

import firefly
from firefly import nn, ops
from firefly.tensor import Tensor

torch = pytest.importorskip("torch")

# name -> (op, input shape, op attrs); conv cases also give (out_channels, kernel)
CASES = {
    "conv2d-8x8-1to16-pad1": ("conv2d", (64, 1, 8, 8), dict(padding=1), (16, 3)),
    "conv2d-8x8-16to32": ("conv2d", (64, 16, 8, 8), dict(), (32, 3)),
    "conv2d-28x28-1to6-5x5": ("conv2d", (64, 1, 28, 28), dict(), (6, 5)),
    "max_pool2d-2x2": ("max_pool2d", (64, 32, 8, 8), dict(kernel_size=2), None),
    "batch_norm-64x32x8x8": ("batch_norm", (64, 32, 8, 8), dict(training=True), None),
    "layer_norm-64x128x256": ("layer_norm", (64, 128, 256), dict(normalized_shape=(256,)), None),
}


def make_inputs(name):
    op, shape, attrs, conv = CASES[name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    if op == "conv2d":
        out_channels, k = conv
        bound = 1 / np.sqrt(shape[1] * k * k)
        params = [
            rng.uniform(-bound, bound, size=(out_channels, shape[1], k, k)).astype(np.float32),
            rng.uniform(-bound, bound, size=out_channels).astype(np.float32),
        ]
    elif op in ("batch_norm", "layer_norm"):
        size = shape[1] if op == "batch_norm" else shape[-1]
        params = [
            rng.uniform(0.5, 1.5, size=size).astype(np.float32),
            rng.normal(size=size).astype(np.float32),
        ]
    else:
        params = []
    return op, attrs, x, params


def firefly_step(name):
    op, attrs, x, params = make_inputs(name)
    leaf = Tensor(x, requires_grad=True)
    tensors = [Tensor(p, requires_grad=True) for p in params]

    def step():
        for t in [leaf] + tensors:
            t.grad = None
        out = ops.apply(op, leaf, *tensors, **attrs)
        out.backward(np.ones(out.shape, dtype=np.float32))
        return out.numpy(), leaf.grad.numpy()

    return step


def torch_step(name):
    op, attrs, x, params = make_inputs(name)
    leaf = torch.tensor(x, requires_grad=True)
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    F = torch.nn.functional
    call = {
        "conv2d": lambda: F.conv2d(leaf, *tensors, **attrs),
        "max_pool2d": lambda: F.max_pool2d(leaf, **attrs),
        "batch_norm": lambda: F.batch_norm(leaf, None, None, *tensors, training=True),
        "layer_norm": lambda: F.layer_norm(leaf, attrs["normalized_shape"], *tensors),
    }[op]

    def step():
        for t in [leaf] + tensors:
            t.grad = None
        out = call()
        out.backward(torch.ones_like(out))
        return out.detach().numpy(), leaf.grad.numpy()

    return step


@pytest.mark.parametrize("implementation", ["firefly", "torch"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_forward_backward(benchmark, name, implementation):
    benchmark.group = name
    ours, theirs = firefly_step(name), torch_step(name)
    for mine, reference in zip(ours(), theirs()):
        np.testing.assert_allclose(mine, reference, rtol=2e-3, atol=2e-3)
    benchmark(ours if implementation == "firefly" else theirs)


# ----------------------------------------------------------------------------- digits CNN step
def build_cnn(module):
    return module.Sequential(
        module.Conv2d(1, 16, 3, padding=1),
        module.BatchNorm2d(16),
        module.ReLU(),
        module.Conv2d(16, 32, 3, padding=1),
        module.BatchNorm2d(32),
        module.ReLU(),
        module.MaxPool2d(2),
        module.Dropout(0.25),
        module.Flatten(),
        module.Linear(32 * 4 * 4, 10),
    )


class CNNTrainer:
    def __init__(self, implementation, dropout=0.25):
        rng = np.random.default_rng(0)
        self.x = rng.uniform(0, 1, size=(64, 1, 8, 8)).astype(np.float32)
        self.y = rng.integers(0, 10, size=64)
        firefly.manual_seed(0)
        ours = build_cnn(nn)
        ours[7].p = dropout
        self.implementation = implementation
        if implementation == "firefly":
            self.model, self.inputs = ours, Tensor(self.x)
            self.optimizer = firefly.optim.AdamW(ours.get_parameters(), lr=1e-3)
            self.loss_fn = nn.CrossEntropyLoss()
        else:
            self.model = build_cnn(torch.nn)
            self.model[7].p = dropout
            self.model.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
            self.inputs, self.y = torch.from_numpy(self.x), torch.from_numpy(self.y)
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
            self.loss_fn = torch.nn.CrossEntropyLoss()

    def step(self):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(self.inputs), self.y)
        loss.backward()
        self.optimizer.step()
        return loss.item()


@pytest.mark.parametrize("implementation", ["firefly", "torch"])
def test_digits_cnn_training_step(benchmark, implementation):
    benchmark.group = "digits-cnn-step-batch64"
    # Without dropout the two runs are the same computation: the losses must agree.
    ours, theirs = CNNTrainer("firefly", dropout=0.0), CNNTrainer("torch", dropout=0.0)
    np.testing.assert_allclose(
        [ours.step() for _ in range(3)], [theirs.step() for _ in range(3)], rtol=1e-4
    )
    trainer = CNNTrainer(implementation)
    for _ in range(3):
        trainer.step()
    benchmark(trainer.step)
