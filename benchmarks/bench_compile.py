"""A training step replayed by ``firefly.compile`` beside the same step in eager firefly, the
hand-written NumPy loop and PyTorch eager of ``bench_training.py``, on its problems (the seed
MLP 10-32-1 with SGD; the 784-256-128-10 classifier at batch 256 with SGD momentum), plus the
classifier with Adam:

    pytest benchmarks/bench_compile.py --benchmark-enable

The compiled step is checked first: its first steps' losses and parameters must equal, bit
for bit, those of an eager firefly run from the same start.
"""
import numpy as np
import pytest

import firefly
from bench_training import CHECK_STEPS, PROBLEMS, FireflyTrainer, NumpyTrainer, TorchTrainer, torch

PROBLEMS.setdefault("mlp-784-adam", dict(PROBLEMS["mlp-784"], optimizer="adam", lr=1e-3))


class EagerTrainer(FireflyTrainer):
    """bench_training's firefly trainer, with Adam where the problem asks for it."""

    def __init__(self, name, dtype):
        super().__init__(name, dtype)
        spec = PROBLEMS[name]
        if spec.get("optimizer") == "adam":
            self.optimizer = firefly.optim.Adam(self.model.get_parameters(), lr=spec["lr"])

    def train_step(self):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(self.inputs), self.targets)
        loss.backward()
        self.optimizer.step()
        return loss

    def step(self):
        return self.train_step().item()


class CompiledTrainer(EagerTrainer):
    def __init__(self, name, dtype):
        super().__init__(name, dtype)
        self.compiled = firefly.compile(self.train_step)

    def step(self):
        return self.compiled().item()


class AdamTorchTrainer(TorchTrainer):
    def __init__(self, name, dtype):
        super().__init__(name, dtype)
        if PROBLEMS[name].get("optimizer") == "adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=PROBLEMS[name]["lr"])


TRAINERS = {"firefly-compiled": CompiledTrainer, "firefly-eager": EagerTrainer,
            "numpy": NumpyTrainer, "torch": AdamTorchTrainer}
# The hand-written NumPy loop has no Adam.
CASES = [
    pytest.param(name, implementation, marks=pytest.mark.benchmark(group=f"compiled-step-{name}"),
                 id=f"{name}-{implementation}")
    for name in ("seed-mlp", "mlp-784", "mlp-784-adam") for implementation in TRAINERS
    if not (implementation == "numpy" and PROBLEMS[name].get("optimizer") == "adam")
]


@pytest.mark.parametrize("name, implementation", CASES)
def test_compiled_training_step(benchmark, name, implementation):
    if implementation == "torch" and torch is None:
        pytest.skip("torch is not installed")
    trainer = TRAINERS[implementation](name, np.float32)
    if implementation == "firefly-compiled":
        reference = EagerTrainer(name, np.float32)
        for _ in range(CHECK_STEPS + 2):  # two recordings, then replays
            assert trainer.step() == reference.step()
        for got, want in zip(trainer.values(), reference.values()):
            np.testing.assert_array_equal(got, want)
        assert trainer.compiled.status()["plans"] == 1
    else:
        for _ in range(CHECK_STEPS):
            trainer.step()
    loss = benchmark(trainer.step)
    assert np.isfinite(loss)

