"""Fitting y = sin(x) with a third-order polynomial, modelled on the PyTorch tutorial
"Learning PyTorch with Examples": first with tensors and autograd and a hand-written update
under torch.no_grad(), then with nn.Sequential(nn.Linear(3, 1), nn.Flatten(0, 1)),
MSELoss(reduction="sum") and RMSprop, reading the fitted coefficients from the layer.

Differences from the tutorial, made for the twin run: y is computed by NumPy (``torch.sin``
is not yet in firefly), the powers are a float tensor, and the tensor version starts from
fixed coefficients instead of torch.randn (its stream differs between the libraries).
"""

import math

import numpy as np
import torch


def build_model():
    return torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1)).double()


def main(model):
    dtype = torch.float64
    x = torch.linspace(-math.pi, math.pi, 2000, dtype=dtype)
    y = torch.from_numpy(np.sin(np.linspace(-math.pi, math.pi, 2000)))

    # Tensors and autograd.
    a = torch.full((), 0.1, dtype=dtype, requires_grad=True)
    b = torch.full((), -0.2, dtype=dtype, requires_grad=True)
    c = torch.full((), 0.05, dtype=dtype, requires_grad=True)
    d = torch.full((), 0.3, dtype=dtype, requires_grad=True)
    learning_rate = 1e-6
    autograd_losses = []
    for _ in range(300):
        y_pred = a + b * x + c * x**2 + d * x**3
        loss = (y_pred - y).pow(2).sum()
        autograd_losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            a -= learning_rate * a.grad
            b -= learning_rate * b.grad
            c -= learning_rate * c.grad
            d -= learning_rate * d.grad
            a.grad = None
            b.grad = None
            c.grad = None
            d.grad = None

    # nn and optim.
    p = torch.tensor([1.0, 2.0, 3.0], dtype=dtype)
    xx = x.unsqueeze(-1).pow(p)
    loss_fn = torch.nn.MSELoss(reduction="sum")
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    nn_losses = []
    for _ in range(300):
        y_pred = model(xx)
        loss = loss_fn(y_pred, y)
        nn_losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    linear_layer = model[0]
    return {
        "losses": autograd_losses + nn_losses,
        "coefficients": [a.item(), b.item(), c.item(), d.item()],
        "bias": linear_layer.bias.item(),
        "weight_sum": linear_layer.weight.sum().item(),
    }
