"""Higher-order gradients, modelled on the physics-informed network tutorials (the PINN of
Raissi et al. as commonly written in PyTorch) and the "double backward" Hessian-vector
product: an MLP u(x) with tanh fitted to the 1-D Poisson problem u'' = -pi^2 sin(pi x),
u(0) = u(1) = 0, where u' and u'' come from ``torch.autograd.grad(..., create_graph=True)``
with ``grad_outputs=torch.ones_like(u)`` on inputs with ``requires_grad_()``, the residual and
boundary losses summed and trained with Adam under ``StepLR``; then a Hessian-vector product
of the final loss (grad, dot with v, grad again) and an input-gradient penalty, as in WGAN-GP,
on the trained network.

Differences from the tutorials, made for a deterministic twin run (not for firefly): float64,
collocation points on a fixed grid rather than drawn at random, and a few hundred steps.
"""

import math

import torch
import torch.nn as nn


class PINN(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(1, width),
            nn.Tanh(),
            nn.Linear(width, width),
            nn.Tanh(),
            nn.Linear(width, 1),
        )

    def forward(self, x):
        return self.net(x)


def residual(model, x):
    x = x.clone().requires_grad_()
    u = model(x)
    (du,) = torch.autograd.grad(u, x, grad_outputs=torch.ones_like(u), create_graph=True)
    (d2u,) = torch.autograd.grad(du, x, grad_outputs=torch.ones_like(du), create_graph=True)
    return d2u + math.pi**2 * torch.sin(math.pi * x)


def pinn_loss(model, x_inner, x_boundary):
    return residual(model, x_inner).pow(2).mean() + model(x_boundary).pow(2).mean()


def build_model():
    return PINN().double()


def main(model):
    x_inner = torch.linspace(0.0, 1.0, 32, dtype=torch.float64).unsqueeze(1)[1:-1]
    x_boundary = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=100, gamma=0.5)
    losses = []
    for _ in range(250):
        optimizer.zero_grad()
        loss = pinn_loss(model, x_inner, x_boundary)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())

    params = [p for p in model.parameters() if p.requires_grad]
    loss = pinn_loss(model, x_inner, x_boundary)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    vs = [torch.ones_like(p) for p in params]
    dot = sum((g * v).sum() for g, v in zip(grads, vs))
    hvp = torch.autograd.grad(dot, params)

    x = torch.linspace(0.0, 1.0, 9, dtype=torch.float64).unsqueeze(1).requires_grad_(True)
    out = model(x)
    (gx,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    penalty = ((gx.norm(2, dim=1) - 1) ** 2).mean()
    penalty.backward()

    with torch.no_grad():
        u = model(torch.linspace(0.0, 1.0, 11, dtype=torch.float64).unsqueeze(1))
    return {
        "losses": losses,
        "hvp": [h.sum().item() for h in hvp],
        "penalty": [penalty.item()] + [p.grad.sum().item() for p in params],
        "u": u.squeeze(1).tolist(),
    }
