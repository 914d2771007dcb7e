"""Binary elementwise ops with NumPy broadcasting, as scalar math on ``BinaryOp``."""

import numpy as np

from firefly.kernels.reduce import sum_forward
from firefly.ops.families import BinaryOp, sum_to_shape, unbroadcast
from firefly.ops.registry import register


def needed_pair(ctx, inputs, grad_a, grad_b):
    """A binary op's differentiable backward computing only the gradients needed:
    ``grad_a(a, b)`` and ``grad_b(a, b)`` at the output's shape, summed back to each input's."""
    a, b = inputs
    need_a, need_b = ctx.needs_input_grad
    return (
        sum_to_shape(grad_a(a, b), a.shape) if need_a else None,
        sum_to_shape(grad_b(a, b), b.shape) if need_b else None,
    )


@register
class Add(BinaryOp):
    """Backward only sums the gradient back to each input's shape: no elementwise pass."""

    name = "add"
    backward_kernel = (sum_forward,)

    def scalar_forward(a, b):
        return a + b

    def derivative(grad, a, b, out):
        return grad, grad

    @classmethod
    def backward(cls, ctx, grad):
        (sum_kernel,) = cls.backward_kernel
        return unbroadcast(ctx, grad, grad, sum_kernel)


@register
class Sub(BinaryOp):
    name = "sub"

    def scalar_forward(a, b):
        return a - b

    def scalar_backward(grad, a, b, _):
        return grad, -grad

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        return needed_pair(ctx, inputs, lambda a, b: grad, lambda a, b: -grad)


@register
class Mul(BinaryOp):
    name = "mul"

    def scalar_forward(a, b):
        return a * b

    def scalar_backward(grad, a, b, _):
        return grad * b, grad * a

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        return needed_pair(ctx, inputs, lambda a, b: grad * b, lambda a, b: grad * a)


@register
class Div(BinaryOp):
    name = "div"

    def scalar_forward(a, b):
        return a / b

    def scalar_backward(grad, a, b, _):
        q = grad / b
        return q, -q * a / b

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        return needed_pair(ctx, inputs, lambda a, b: grad / b, lambda a, b: -grad * a / (b * b))

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        (a, b), attrs = super().sample_inputs(rng, shape, dtype)
        return (a, np.where(np.abs(b) < 0.3, 0.5, b).astype(dtype)), attrs


@register
class Pow(BinaryOp):
    """a ** b. The gradient of b is 0 where a == 0 (the limit of a**b * log(a) for b > 0), and
    that of a is 0 where b == 0, as in PyTorch."""

    name = "pow"
    backward_reads_output = True
    forward_cost = backward_cost = "transcendental"

    def scalar_forward(a, b):
        return a**b

    def scalar_backward(grad, a, b, out):
        da = grad * b * a ** (b - 1.0) if b != 0.0 else 0.0 * grad
        db = grad * out * np.log(a) if a != 0.0 else 0.0 * grad
        return da, db

    @staticmethod
    def backward_graph(ctx, grad, inputs, out):
        # As scalar_backward: no gradient where b == 0 (for a) or a == 0 (for b).
        def grad_a(a, b):
            if not ctx.needs_input_grad[1] and b.numel() == 1:  # a constant exponent
                e = float(b.numpy())
                return grad * (e * a ** (e - 1.0)) if e != 0.0 else grad * 0.0
            return grad * b * a ** (b - 1.0) * (b != 0.0)

        return needed_pair(
            ctx, inputs, grad_a, lambda a, b: grad * out * (a + (a == 0.0)).log() * (a != 0.0)
        )

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        (a, b), attrs = super().sample_inputs(rng, shape, dtype)
        return (np.abs(a) + 0.5, b), attrs  # a positive base keeps a**b real
