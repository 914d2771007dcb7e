"""Unary elementwise ops. Each kernel runs over the flat array; backward reuses what forward
saved (the input, or the output where the derivative is cheaper from it)."""
import numpy as np

from firefly.kernels import elementwise as K
from firefly.ops.base import Op
from firefly.ops.registry import register


def flat_map(kernel, *arrays):
    """Run a flat elementwise kernel over same-shaped arrays into a new array."""
    out = np.empty_like(arrays[0])
    kernel(*(a.reshape(-1) for a in arrays), out.reshape(-1))
    return out


@register
class Neg(Op):
    name = "neg"
    forward_kernel = backward_kernel = K.neg_forward

    @staticmethod
    def forward(ctx, x):
        return flat_map(K.neg_forward, x)

    @staticmethod
    def backward(ctx, grad):
        return flat_map(K.neg_forward, grad)


@register
class ReLU(Op):
    name = "relu"
    forward_kernel, backward_kernel = K.relu_forward, K.relu_backward

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return flat_map(K.relu_forward, x)

    @staticmethod
    def backward(ctx, grad):
        return flat_map(K.relu_backward, grad, *ctx.saved_tensors)


@register
class Exp(Op):
    name = "exp"
    forward_kernel, backward_kernel = K.exp_forward, K.mul_saved_backward

    @staticmethod
    def forward(ctx, x):
        out = flat_map(K.exp_forward, x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return flat_map(K.mul_saved_backward, grad, *ctx.saved_tensors)


@register
class Log(Op):
    name = "log"
    forward_kernel, backward_kernel = K.log_forward, K.log_backward

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return flat_map(K.log_forward, x)

    @staticmethod
    def backward(ctx, grad):
        return flat_map(K.log_backward, grad, *ctx.saved_tensors)

    @classmethod
    def sample_inputs(cls, rng, shape, dtype):
        return (rng.uniform(0.2, 3.0, size=shape).astype(dtype),), {}


@register
class Sigmoid(Op):
    name = "sigmoid"
    forward_kernel, backward_kernel = K.sigmoid_forward, K.sigmoid_backward

    @staticmethod
    def forward(ctx, x):
        out = flat_map(K.sigmoid_forward, x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return flat_map(K.sigmoid_backward, grad, *ctx.saved_tensors)


@register
class Tanh(Op):
    name = "tanh"
    forward_kernel, backward_kernel = K.tanh_forward, K.tanh_backward

    @staticmethod
    def forward(ctx, x):
        out = flat_map(K.tanh_forward, x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return flat_map(K.tanh_backward, grad, *ctx.saved_tensors)
