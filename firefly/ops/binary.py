"""Binary elementwise ops with NumPy broadcasting, as scalar math on ``BinaryOp``."""

import numpy as np

from firefly.kernels import vmath
from firefly.kernels.reduce import sum_forward
from firefly.ops import samples
from firefly.ops.elementwise import Neg
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
    """Backward: a's gradient is the gradient itself, as add's, and b's its negation by neg's
    kernel. No elementwise gradient kernel of its own: one pass fewer, and one kernel fewer
    for a script (a loss) to compile."""

    name = "sub"
    backward_kernel = (Neg.forward_kernel, sum_forward)

    def scalar_forward(a, b):
        return a - b

    @classmethod
    def backward(cls, ctx, grad):
        neg_kernel, sum_kernel = cls.backward_kernel
        db = None
        if ctx.needs_input_grad[1]:
            db = np.empty(grad.shape, grad.dtype)
            neg_kernel(grad.ravel(), db.ravel())
        return unbroadcast(ctx, grad, db, sum_kernel)

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


@register
class Atan2(BinaryOp):
    """The angle of the point (b, a), in (-pi, pi], as ``torch.atan2(a, b)``."""

    name = "atan2"
    forward_cost = "transcendental"

    scalar_forward = vmath.atan2

    def scalar_backward(grad, a, b, _):
        q = grad / (a * a + b * b)
        return q * b, -q * a

    def derivative(grad, a, b, out):
        q = grad / (a * a + b * b)
        return q * b, -q * a

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        # Away from the origin, where the gradient is unbounded, and from the branch cut
        # a == 0, b < 0, where the value jumps by 2 pi.
        (a, b), attrs = super().sample_inputs(rng, shape, dtype)
        return tuple(np.where(np.abs(x) < 0.3, 0.5, x).astype(dtype) for x in (a, b)), attrs


def quotient_samples(rng, shape, dtype):
    """Operands (a, b) whose quotients a / b lie at least 0.2 from every integer: fmod and
    remainder jump there, which central differences cannot step across. Every element of b
    is +-c for one random c, and a is c times a number whose fractional part is in [0.2, 0.8]."""
    shapes = [shape, samples.broadcast_partner(rng, shape)]
    if rng.random() < 0.5:
        shapes.reverse()
    c = rng.uniform(0.5, 1.5)
    whole = rng.integers(-2, 2, size=shapes[0])
    a = c * (whole + rng.uniform(0.2, 0.8, size=shapes[0]))
    b = c * rng.choice([-1.0, 1.0], size=shapes[1])
    return (a.astype(dtype), b.astype(dtype)), {}


@register
class Fmod(BinaryOp):
    """The remainder of a / b rounded toward zero, with the sign of a (C's fmod), as
    ``torch.fmod``. The gradient is 1 for a and -trunc(a / b) for b."""

    name = "fmod"

    def scalar_forward(a, b):
        return np.fmod(a, b)

    def scalar_backward(grad, a, b, _):
        return grad, -grad * np.trunc(a / b)

    def derivative(grad, a, b, out):
        return grad, -grad * (a / b).trunc()

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        return quotient_samples(rng, shape, dtype)


@register
class Remainder(BinaryOp):
    """The remainder of a / b rounded toward -inf, with the sign of b (Python's ``%``), as
    ``torch.remainder``. The gradient is 1 for a and -floor(a / b) for b."""

    name = "remainder"

    def scalar_forward(a, b):
        r = np.fmod(a, b)
        return r + b if r != 0.0 and (r < 0.0) != (b < 0.0) else r

    def scalar_backward(grad, a, b, _):
        return grad, -grad * np.floor(a / b)

    def derivative(grad, a, b, out):
        return grad, -grad * (a / b).floor()

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        return quotient_samples(rng, shape, dtype)
