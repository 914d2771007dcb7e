"""Whole training runs in float64 against torch: every optimizer, two param groups (weight
decay on the weights only, another lr for the biases), each lr scheduler in turn, and
gradient clipping every step. Losses and final weights agree to 1e-12."""

import numpy as np
import pytest

import firefly
from firefly.nn import Linear, Module, MSELoss
from firefly.nn.utils import clip_grad_norm_
from firefly.optim import SGD, Adagrad, Adam, AdamW, RMSprop, lr_scheduler
from firefly.tensor import Tensor

torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")

STEPS = 15
MAX_NORM = 1.0

OPTIMIZERS = {
    "SGD": (SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    "Adam": (Adam, dict(lr=0.02, amsgrad=True)),
    "AdamW": (AdamW, dict(lr=0.02)),
    "RMSprop": (RMSprop, dict(lr=0.005, momentum=0.5, centered=True)),
    "Adagrad": (Adagrad, dict(lr=0.05, lr_decay=0.01)),
}

SCHEDULERS = {
    "LambdaLR": lambda m, o, name: m.LambdaLR(o, lambda e: 1.0 / (1 + 0.1 * e)),
    "MultiplicativeLR": lambda m, o, name: m.MultiplicativeLR(o, lambda e: 0.95),
    "StepLR": lambda m, o, name: m.StepLR(o, step_size=4, gamma=0.5),
    "MultiStepLR": lambda m, o, name: m.MultiStepLR(o, milestones=[3, 8], gamma=0.3),
    "ExponentialLR": lambda m, o, name: m.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda m, o, name: m.CosineAnnealingLR(o, T_max=10, eta_min=1e-4),
    "LinearLR": lambda m, o, name: m.LinearLR(o, start_factor=0.25, total_iters=6),
    "ConstantLR": lambda m, o, name: m.ConstantLR(o, factor=0.5, total_iters=5),
    "OneCycleLR": lambda m, o, name: m.OneCycleLR(
        o, max_lr=[0.05, 0.02], total_steps=STEPS, cycle_momentum=name != "Adagrad"
    ),
    "CosineAnnealingWarmRestarts": lambda m, o, name: m.CosineAnnealingWarmRestarts(
        o, T_0=4, T_mult=2
    ),
    "SequentialLR": lambda m, o, name: m.SequentialLR(
        o, [m.LinearLR(o, 0.1, 1.0, 5), m.ExponentialLR(o, 0.9)], [5]
    ),
    "ReduceLROnPlateau": lambda m, o, name: m.ReduceLROnPlateau(
        o, patience=1, factor=0.5, threshold=0.05
    ),
}


class MLP(Module):
    def __init__(self):
        super().__init__()
        self.fc1 = Linear(6, 12, dtype=np.float64)
        self.fc2 = Linear(12, 1, dtype=np.float64)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu())


def groups(named, lr):
    """Weights decay, biases do not and learn at half the rate."""
    weights = [p for name, p in named if name.endswith("weight")]
    biases = [p for name, p in named if name.endswith("bias")]
    return [
        {"params": weights, "weight_decay": 0.1},
        {"params": biases, "weight_decay": 0.0, "lr": lr / 2},
    ]


def train_firefly(optimizer_name, scheduler_name, x, y):
    firefly.manual_seed(0)
    model = MLP()
    initial = {name: p.numpy().copy() for name, p in model.named_parameters()}
    cls, options = OPTIMIZERS[optimizer_name]
    optimizer = cls(groups(list(model.named_parameters()), options["lr"]), **options)
    scheduler = SCHEDULERS[scheduler_name](lr_scheduler, optimizer, optimizer_name)
    loss_fn = MSELoss()
    losses, norms = [], []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = loss_fn(model(Tensor(x)), Tensor(y))
        loss.backward()
        norms.append(clip_grad_norm_(model.parameters(), MAX_NORM).item())
        optimizer.step()
        losses.append(loss.item())
        scheduler.step(loss.item()) if scheduler_name == "ReduceLROnPlateau" else scheduler.step()
    return initial, losses, norms, {name: p.numpy() for name, p in model.named_parameters()}


def train_torch(optimizer_name, scheduler_name, x, y, initial):
    named = [(name, torch.tensor(value, requires_grad=True)) for name, value in initial.items()]
    params = dict(named)
    _, options = OPTIMIZERS[optimizer_name]
    optimizer = getattr(torch.optim, optimizer_name)(groups(named, options["lr"]), **options)
    scheduler = SCHEDULERS[scheduler_name](torch.optim.lr_scheduler, optimizer, optimizer_name)
    x, y = torch.tensor(x), torch.tensor(y)
    losses, norms = [], []
    for _ in range(STEPS):
        optimizer.zero_grad()
        hidden = torch.nn.functional.linear(x, params["fc1.weight"], params["fc1.bias"]).relu()
        output = torch.nn.functional.linear(hidden, params["fc2.weight"], params["fc2.bias"])
        loss = ((output - y) ** 2).mean()
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_([p for _, p in named], MAX_NORM).item())
        optimizer.step()
        losses.append(loss.item())
        scheduler.step(loss.item()) if scheduler_name == "ReduceLROnPlateau" else scheduler.step()
    return losses, norms, {name: p.detach().numpy() for name, p in named}


@pytest.mark.parametrize("scheduler_name", list(SCHEDULERS))
@pytest.mark.parametrize("optimizer_name", list(OPTIMIZERS))
def test_training_matches_torch(optimizer_name, scheduler_name):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6))
    y = np.sin(x @ rng.standard_normal((6, 1)))
    initial, losses, norms, weights = train_firefly(optimizer_name, scheduler_name, x, y)
    their_losses, their_norms, their_weights = train_torch(
        optimizer_name, scheduler_name, x, y, initial
    )
    assert max(norms) > MAX_NORM  # clipping really happened
    np.testing.assert_allclose(norms, their_norms, rtol=1e-12)
    np.testing.assert_allclose(losses, their_losses, rtol=1e-12)
    assert losses[-1] < losses[0]
    for name, value in weights.items():
        assert not np.array_equal(value, initial[name]), name
        np.testing.assert_allclose(value, their_weights[name], rtol=1e-12, atol=1e-14, err_msg=name)
