"""A training step replayed by ``firefly.compile`` beside the same step in eager firefly, the
hand-written NumPy loop and PyTorch eager of ``bench_training.py``, on its problems (the demo's
MLP 10-32-1 with SGD; the 784-256-128-10 classifier at batch 256 with SGD momentum), plus the
classifier with Adam, and the digits CNN (``firefly.digits.build_model``: conv, batch norm,
pooling, dropout) at batch 64 with AdamW, beside its torch build:

    pytest benchmarks/bench_compile.py --benchmark-enable

The compiled step is checked first: its first steps' losses and parameters (and buffers) must
equal, bit for bit, those of an eager firefly run from the same start that draws the same
dropout masks.
"""

import numpy as np
import pytest
from bench_training import CHECK_STEPS, PROBLEMS, FireflyTrainer, NumpyTrainer, TorchTrainer, torch

import firefly
from firefly import nn
from firefly.digits import build_model
from firefly.tensor import Tensor

PROBLEMS.setdefault("mlp-784-adam", dict(PROBLEMS["mlp-784"], optimizer="adam", lr=1e-3))
# The digits demo's settings; the images are random in the digits' shape and range (the timing
# does not depend on the pixels, and the benchmark needs no scikit-learn).
DIGITS = dict(batch=64, lr=1e-2, weight_decay=1e-4)


def digits_batch(dtype):
    rng = np.random.default_rng(0)
    return (
        rng.uniform(0.0, 1.0, size=(DIGITS["batch"], 1, 8, 8)).astype(dtype),
        rng.integers(0, 10, size=DIGITS["batch"]),
    )


class StepTrainer:
    """A firefly trainer whose ``train_step`` returns the loss tensor: what compile records."""

    def train_step(self):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(self.inputs), self.targets)
        loss.backward()
        self.optimizer.step()
        return loss

    def step(self):
        return self.train_step().item()


class EagerTrainer(StepTrainer, FireflyTrainer):
    """bench_training's firefly trainer, with Adam where the problem asks for it."""

    def __init__(self, name, dtype):
        super().__init__(name, dtype)
        spec = PROBLEMS[name]
        if spec.get("optimizer") == "adam":
            self.optimizer = firefly.optim.Adam(self.model.get_parameters(), lr=spec["lr"])


class DigitsTrainer(StepTrainer):
    def __init__(self, name, dtype):
        X, y = digits_batch(dtype)
        firefly.manual_seed(0)
        self.model = build_model(nn).to(dtype)
        self.optimizer = firefly.optim.AdamW(
            self.model.get_parameters(), lr=DIGITS["lr"], weight_decay=DIGITS["weight_decay"]
        )
        self.loss_fn = nn.CrossEntropyLoss()
        self.inputs, self.targets = Tensor(X), Tensor(y, dtype=np.int64)

    def values(self):
        # batch norm's running statistics and batch counter too
        return [p.numpy() for p in self.model.parameters()] + [
            b.numpy() for b in self.model.buffers()
        ]


def compiled(trainer):
    """``trainer`` with its step replayed by ``firefly.compile``."""

    class CompiledTrainer(trainer):
        def __init__(self, name, dtype):
            super().__init__(name, dtype)
            self.compiled = firefly.compile(self.train_step)

        def step(self):
            return self.compiled().item()

    return CompiledTrainer


class AdamTorchTrainer(TorchTrainer):
    def __init__(self, name, dtype):
        super().__init__(name, dtype)
        if PROBLEMS[name].get("optimizer") == "adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=PROBLEMS[name]["lr"])


class DigitsTorchTrainer:
    def __init__(self, name, dtype):
        X, y = digits_batch(dtype)
        torch.manual_seed(0)
        self.model = build_model(torch.nn).to(getattr(torch, np.dtype(dtype).name))
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=DIGITS["lr"], weight_decay=DIGITS["weight_decay"]
        )
        self.loss_fn = torch.nn.CrossEntropyLoss()
        self.inputs, self.targets = torch.from_numpy(X), torch.from_numpy(y)

    step = TorchTrainer.step


MLP_TRAINERS = {
    "firefly-compiled": compiled(EagerTrainer),
    "firefly-eager": EagerTrainer,
    "numpy": NumpyTrainer,
    "torch": AdamTorchTrainer,
}
# name -> implementation -> trainer; the hand-written NumPy loop has no Adam and no CNN.
TRAINERS = {
    name: {
        k: v
        for k, v in MLP_TRAINERS.items()
        if not (k == "numpy" and PROBLEMS[name].get("optimizer"))
    }
    for name in ("seed-mlp", "mlp-784", "mlp-784-adam")
}
TRAINERS["digits-cnn"] = {
    "firefly-compiled": compiled(DigitsTrainer),
    "firefly-eager": DigitsTrainer,
    "torch": DigitsTorchTrainer,
}
CASES = [
    pytest.param(
        name,
        implementation,
        marks=pytest.mark.benchmark(group=f"compiled-step-{name}"),
        id=f"{name}-{implementation}",
    )
    for name, trainers in TRAINERS.items()
    for implementation in trainers
]


@pytest.mark.parametrize("name, implementation", CASES)
def test_compiled_training_step(benchmark, name, implementation):
    if implementation == "torch" and torch is None:
        pytest.skip("needs torch for the comparison: pip install torch==2.13.0")
    trainer = TRAINERS[name][implementation](name, np.float32)
    if implementation == "firefly-compiled":
        reference = TRAINERS[name]["firefly-eager"](name, np.float32)
        # One run after the other from the same seed: both draw the same dropout masks.
        firefly.manual_seed(1)
        losses = [trainer.step() for _ in range(CHECK_STEPS + 2)]  # two recordings, then replays
        firefly.manual_seed(1)
        assert losses == [reference.step() for _ in range(CHECK_STEPS + 2)]
        for got, want in zip(trainer.values(), reference.values(), strict=True):
            np.testing.assert_array_equal(got, want)
        assert trainer.compiled.status()["plans"] == 1
    else:
        for _ in range(CHECK_STEPS):
            trainer.step()
    loss = benchmark(trainer.step)
    assert np.isfinite(loss)
