"""Custom autograd Functions, modelled on the PyTorch tutorial "Defining new autograd
functions" (``MyReLU``, ``LegendrePolynomial3``) and the "Extending PyTorch" notes'
``LinearFunction``: ``torch.autograd.Function`` subclasses with static ``forward(ctx, ...)``
and ``backward(ctx, grad_output)``, ``ctx.save_for_backward`` / ``ctx.saved_tensors``,
``ctx.needs_input_grad`` and a non-tensor argument saved on ``ctx``, called through
``.apply`` inside an ``nn.Module`` whose parameters are ``nn.Parameter``s, trained with SGD
with momentum; and the tutorial's polynomial fit with manual updates under ``torch.no_grad``.

Differences from the tutorial, made for a deterministic twin run (not for firefly): float64,
a made-up regression task with inputs drawn by NumPy, and a few hundred steps.
"""

import math

import numpy as np
import torch
import torch.nn as nn


class MyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return input.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[input < 0] = 0
        return grad_input


class LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input, weight, bias=None):
        ctx.save_for_backward(input, weight, bias)
        output = input.mm(weight.t())
        if bias is not None:
            output += bias.unsqueeze(0).expand_as(output)
        return output

    @staticmethod
    def backward(ctx, grad_output):
        input, weight, bias = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = grad_output.mm(weight)
        if ctx.needs_input_grad[1]:
            grad_weight = grad_output.t().mm(input)
        if bias is not None and ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(0)
        return grad_input, grad_weight, grad_bias


class MulConstant(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor, constant):
        ctx.constant = constant
        return tensor * constant

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.constant, None


class LegendrePolynomial3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return 0.5 * (5 * input**3 - 3 * input)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return grad_output * 1.5 * (5 * input**2 - 1)


class Linear(nn.Module):
    def __init__(self, input_features, output_features):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(output_features, input_features))
        self.bias = nn.Parameter(torch.empty(output_features))
        bound = 1.0 / math.sqrt(input_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        return LinearFunction.apply(input, self.weight, self.bias)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = Linear(3, 16)
        self.fc2 = Linear(16, 1)

    def forward(self, x):
        return self.fc2(MulConstant.apply(MyReLU.apply(self.fc1(x)), 0.5))


def build_model():
    return Net().double()


def main(model):
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(-1, 1, size=(64, 3)))
    y = (x[:, :1] * x[:, 1:2] - x[:, 2:].abs()).clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(200):
        optimizer.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    # The tutorial's fit of y = a + b * P3(c + d * x) to sin(x), manual updates.
    xs = torch.linspace(-math.pi, math.pi, 200, dtype=torch.float64)
    ys = torch.sin(xs)
    a = torch.full((), 0.0, dtype=torch.float64, requires_grad=True)
    b = torch.full((), -1.0, dtype=torch.float64, requires_grad=True)
    c = torch.full((), 0.0, dtype=torch.float64, requires_grad=True)
    d = torch.full((), 0.3, dtype=torch.float64, requires_grad=True)
    poly_losses = []
    for _ in range(300):
        y_pred = a + b * LegendrePolynomial3.apply(c + d * xs)
        loss = (y_pred - ys).pow(2).sum()
        poly_losses.append(loss.item())
        loss.backward()
        with torch.no_grad():
            for p in (a, b, c, d):
                p -= 5e-6 * p.grad
                p.grad = None
    frozen = torch.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    w = torch.tensor(rng.standard_normal((4, 3)))  # needs no grad: backward skips its branch
    LinearFunction.apply(frozen, w).sum().backward()
    return {
        "losses": losses,
        "poly_losses": poly_losses,
        "coefficients": [p.item() for p in (a, b, c, d)],
        "frozen_grad": frozen.grad.numpy().ravel().tolist(),
        "w_grad_is_none": w.grad is None,
    }
