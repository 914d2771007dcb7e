"""``firefly.nn.init``: torch.nn.init's in-place initializers, drawing from firefly's generator
(so ``firefly.manual_seed`` reproduces them). Each takes a Parameter or a Tensor, fills it in
place without recording a graph, and returns it.

Fans follow torch's convention for a weight of shape (out, in, *kernel): fan_in = in * kernel
size, fan_out = out * kernel size (torch's ``_calculate_fan_in_and_fan_out``).
``firefly.nn.Linear`` stores its weight as torch does, (out_features, in_features), so
``mode="fan_in"`` is its in_features.
"""

from __future__ import annotations

import math
import numbers
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike

from firefly import random
from firefly.tensor import Tensor

__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "constant_",
    "zeros_",
    "ones_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "trunc_normal_",
]

# A Parameter in, the same Parameter out (a Tensor in, a Tensor out).
TensorT = TypeVar("TensorT", bound=Tensor)


def _storage(tensor: Tensor, name: str) -> np.ndarray:
    leaf = getattr(tensor, "tensor", tensor)  # a Parameter's leaf (the Parameter itself later)
    if not isinstance(leaf, Tensor):
        raise TypeError(
            f"init.{name}: expected a Parameter or a Tensor, got {type(tensor).__name__}"
        )
    if leaf.dtype.kind != "f":
        raise TypeError(f"init.{name}: only float tensors can be initialized, got {leaf.dtype}")
    return leaf.numpy()


def _fill(tensor: TensorT, name: str, values: ArrayLike) -> TensorT:
    np.copyto(_storage(tensor, name), values, casting="unsafe")
    return tensor


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """torch's recommended gain for ``nonlinearity``."""
    linear = (
        "linear",
        "conv1d",
        "conv2d",
        "conv3d",
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "sigmoid",
    )
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, numbers.Real):
            raise ValueError(f"calculate_gain: negative_slope {slope!r} is not a number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fans(shape: tuple[int, ...], name: str) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError(
            f"init.{name}: fan in and fan out need at least 2 dimensions, got shape {shape}"
        )
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fan(shape: tuple[int, ...], mode: str, name: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init.{name}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(shape, name)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor: TensorT, a: float = 0.0, b: float = 1.0) -> TensorT:
    shape = _storage(tensor, "uniform_").shape
    return _fill(tensor, "uniform_", random.generator().uniform(a, b, size=shape))


def normal_(tensor: TensorT, mean: float = 0.0, std: float = 1.0) -> TensorT:
    shape = _storage(tensor, "normal_").shape
    return _fill(tensor, "normal_", random.generator().normal(mean, std, size=shape))


def constant_(tensor: TensorT, val: float) -> TensorT:
    return _fill(tensor, "constant_", val)


def zeros_(tensor: TensorT) -> TensorT:
    return _fill(tensor, "zeros_", 0.0)


def ones_(tensor: TensorT) -> TensorT:
    return _fill(tensor, "ones_", 1.0)


def xavier_uniform_(tensor: TensorT, gain: float = 1.0) -> TensorT:
    fan_in, fan_out = _fans(_storage(tensor, "xavier_uniform_").shape, "xavier_uniform_")
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor: TensorT, gain: float = 1.0) -> TensorT:
    fan_in, fan_out = _fans(_storage(tensor, "xavier_normal_").shape, "xavier_normal_")
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(
    tensor: TensorT, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> TensorT:
    fan = _fan(_storage(tensor, "kaiming_uniform_").shape, mode, "kaiming_uniform_")
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(
    tensor: TensorT, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"
) -> TensorT:
    fan = _fan(_storage(tensor, "kaiming_normal_").shape, mode, "kaiming_normal_")
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan))


def trunc_normal_(
    tensor: TensorT, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0
) -> TensorT:
    """Normal(mean, std) truncated to [a, b], by inverting the normal CDF on a uniform draw
    between the bounds' CDF values, as torch does."""
    from scipy.special import erfinv

    if not a < b:
        raise ValueError(f"init.trunc_normal_: need a < b, got a={a}, b={b}")
    shape = _storage(tensor, "trunc_normal_").shape
    lo = (1.0 + math.erf((a - mean) / std / math.sqrt(2.0))) / 2.0
    hi = (1.0 + math.erf((b - mean) / std / math.sqrt(2.0))) / 2.0
    u = random.generator().uniform(2 * lo - 1, 2 * hi - 1, size=shape)
    values = np.clip(erfinv(u) * std * math.sqrt(2.0) + mean, a, b)
    return _fill(tensor, "trunc_normal_", values)
