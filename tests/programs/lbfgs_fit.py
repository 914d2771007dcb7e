"""Full-batch regression with L-BFGS, the way PINN and curve-fitting code uses it: an MLP with
Tanh activations fits a damped sine, with torch.optim.LBFGS(lr=1, max_iter=5,
history_size=10, line_search_fn="strong_wolfe") and a closure that zeroes the gradients,
computes the MSE and calls backward; a few outer steps, each logging the loss, then an
evaluation under no_grad and a second phase with the fixed-step variant (no line search).

Differences from typical code, made for a deterministic twin run (not for firefly): the data is
a fixed grid with noise from a seeded NumPy generator, and the net is small.
"""

import numpy as np
import torch
import torch.nn as nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
        )

    def forward(self, x):
        return self.net(x)


def build_model():
    return MLP().double()


def main(model):
    rng = np.random.default_rng(0)
    x = np.linspace(-2, 2, 64)[:, None]
    y = np.exp(-0.3 * x) * np.sin(3 * x) + 0.01 * rng.standard_normal(x.shape)
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = nn.MSELoss()
    losses = []
    for line_search_fn, steps in (("strong_wolfe", 5), (None, 3)):
        optimizer = torch.optim.LBFGS(
            model.parameters(),
            lr=1 if line_search_fn else 0.1,
            max_iter=5,
            history_size=10,
            line_search_fn=line_search_fn,
        )

        def closure(optimizer=optimizer):
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            return loss

        for _ in range(steps):
            loss = optimizer.step(closure)
            losses.append(loss.item())
    with torch.no_grad():
        final = loss_fn(model(inputs), targets).item()
    state = optimizer.state_dict()["state"][0]
    return {
        "losses": losses,
        "final": [final],
        "n_iter": state["n_iter"],
        "func_evals": state["func_evals"],
    }
