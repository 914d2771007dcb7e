"""Unary elementwise ops, as scalar math on ``UnaryOp``. Backward reads the input, or the
output where the derivative is cheaper from it."""

from firefly.kernels import vmath
from firefly.ops.families import UnaryOp
from firefly.ops.registry import register


@register
class Neg(UnaryOp):
    name = "neg"
    backward_reads = None

    def scalar_forward(x):
        return -x

    def scalar_backward(grad, _):
        return -grad


@register
class ReLU(UnaryOp):
    name = "relu"

    def scalar_forward(x):
        return 0.0 if x <= 0.0 else x  # NaN fails the test and propagates, as np.maximum(x, 0)

    def scalar_backward(grad, x):
        return grad if x > 0.0 else 0.0


@register
class Exp(UnaryOp):
    name = "exp"
    backward_reads = "output"
    forward_cost = "transcendental"
    scalar_forward = vmath.exp

    def scalar_backward(grad, y):
        return grad * y


@register
class Log(UnaryOp):
    name = "log"
    forward_cost = "transcendental"
    domain = (0.2, 3.0)
    scalar_forward = vmath.log

    def scalar_backward(grad, x):
        return grad / x


@register
class Sigmoid(UnaryOp):
    name = "sigmoid"
    backward_reads = "output"
    forward_cost = "transcendental"
    scalar_forward = vmath.sigmoid

    def scalar_backward(grad, s):
        return grad * s * (1.0 - s)


@register
class Tanh(UnaryOp):
    name = "tanh"
    backward_reads = "output"
    forward_cost = "transcendental"
    scalar_forward = vmath.tanh

    def scalar_backward(grad, t):
        return grad * (1.0 - t * t)
