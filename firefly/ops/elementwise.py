"""Unary elementwise ops, as scalar math on ``UnaryOp``. Backward reads the input, or the
output where the derivative is cheaper from it."""

import math

import numpy as np

from firefly.kernels import vmath
from firefly.ops.families import UnaryOp
from firefly.ops.registry import register

TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


@register
class Neg(UnaryOp):
    name = "neg"
    backward_reads = None

    def scalar_forward(x):
        return -x

    def scalar_backward(grad, _):
        return -grad

    def derivative(grad, x, out):
        return -grad


@register
class ReLU(UnaryOp):
    name = "relu"

    def scalar_forward(x):
        return 0.0 if x <= 0.0 else x  # NaN fails the test and propagates, as np.maximum(x, 0)

    def scalar_backward(grad, x):
        return grad if x > 0.0 else 0.0

    def derivative(grad, x, out):
        return grad * (x > 0.0)


@register
class Exp(UnaryOp):
    name = "exp"
    backward_reads = "output"
    forward_cost = "transcendental"
    scalar_forward = vmath.exp

    def scalar_backward(grad, y):
        return grad * y

    def derivative(grad, x, y):
        return grad * y


@register
class Log(UnaryOp):
    name = "log"
    forward_cost = "transcendental"
    domain = (0.2, 3.0)
    scalar_forward = vmath.log

    def scalar_backward(grad, x):
        return grad / x

    def derivative(grad, x, out):
        return grad / x


@register
class Sigmoid(UnaryOp):
    name = "sigmoid"
    backward_reads = "output"
    forward_cost = "transcendental"
    scalar_forward = vmath.sigmoid

    def scalar_backward(grad, s):
        return grad * s * (1.0 - s)

    def derivative(grad, x, s):
        return grad * s * (1.0 - s)


@register
class Tanh(UnaryOp):
    name = "tanh"
    backward_reads = "output"
    forward_cost = "transcendental"
    scalar_forward = vmath.tanh

    def scalar_backward(grad, t):
        return grad * (1.0 - t * t)

    def derivative(grad, x, t):
        return grad * (1.0 - t * t)


@register
class Erf(UnaryOp):
    name = "erf"
    forward_cost = backward_cost = "transcendental"

    def scalar_forward(x):
        return math.erf(x)

    def scalar_backward(grad, x):
        return grad * TWO_OVER_SQRT_PI * np.exp(-x * x)

    def derivative(grad, x, out):
        return grad * TWO_OVER_SQRT_PI * (-x * x).exp()


@register
class Sin(UnaryOp):
    name = "sin"
    forward_cost = backward_cost = "transcendental"

    def scalar_forward(x):
        return np.sin(x)

    def scalar_backward(grad, x):
        return grad * np.cos(x)

    def derivative(grad, x, out):
        return grad * x.cos()


@register
class Cos(UnaryOp):
    name = "cos"
    forward_cost = backward_cost = "transcendental"

    def scalar_forward(x):
        return np.cos(x)

    def scalar_backward(grad, x):
        return -grad * np.sin(x)

    def derivative(grad, x, out):
        return -grad * x.sin()
