"""Gradient clipping: ``clip_grad_norm_`` and ``clip_grad_value_`` with torch's signatures and
results.

Gradients that live in an optimizer's flat gradient buffer (the views ``zero_grad()``
installs, see ``firefly.optim.flat``) are clipped in one kernel call per contiguous run of
such slots, usually one per dtype: no per-parameter loop, whatever the number of tensors.
Other gradients get one call each.

The kernels are reached through ``GradientClipping.forward_kernel``, a declaration that
``firefly.ops.base.substituted_kernels`` covers as it covers an op's, and the norm and the
clipping coefficient pass from kernel to kernel in arrays, with no Python branch on their
values: ``firefly.compile`` records and replays a step that clips.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import numpy as np

from firefly.kernels.optim import (
    grad_clamp_,
    grad_clip_coefficient,
    grad_clip_scale_,
    grad_norm_power_sum,
)
from firefly.ops.base import declares_kernels
from firefly.optim.flat import FlatBuffer, buffer_of_grad
from firefly.tensor import Tensor


@declares_kernels
class GradientClipping:
    """The kernels clipping runs, declared where ``firefly.compile``'s recorder finds them:
    the norm's partial sums, the norm and coefficient, the scaling, and clip_grad_value_'s
    clamp."""

    forward_kernel = (grad_norm_power_sum, grad_clip_coefficient, grad_clip_scale_, grad_clamp_)


def _gradient_arrays(parameters: Tensor | Iterable[Tensor], owner: str) -> list[np.ndarray]:
    """The gradient arrays of ``parameters`` (a Tensor/Parameter or an iterable of them; ones
    without a gradient are skipped): flat-buffer runs merged into one slice each. Every
    array is checked to be clippable in place before any is returned."""
    given: list[object]
    if isinstance(parameters, Tensor) or hasattr(parameters, "tensor"):
        given = [parameters]
    else:
        try:
            given = list(parameters)
        except TypeError:
            raise TypeError(
                f"{owner}: parameters must be a Tensor, a Parameter or an iterable of them, "
                f"got {type(parameters).__name__}"
            ) from None
    slots: dict[FlatBuffer, set[int]] = {}  # member indices whose installed gradient view is given
    loose = []
    for position, param in enumerate(given):
        tensor = getattr(param, "tensor", param)
        if not isinstance(tensor, Tensor):
            raise TypeError(
                f"{owner}: parameters[{position}] is a {type(param).__name__}, "
                "not a Tensor or Parameter"
            )
        grad = tensor.grad
        if grad is None:
            continue
        array = grad._data if isinstance(grad, Tensor) else np.asarray(grad)
        if array.dtype.kind != "f":
            raise TypeError(
                f"{owner}: the gradient of parameters[{position}] has dtype {array.dtype}; "
                "only float gradients can be clipped"
            )
        buf = buffer_of_grad(array)
        k = buf.slot.get(id(tensor)) if buf is not None else None
        if buf is not None and k is not None and buf.grad_tensors[k] is grad:
            slots.setdefault(buf, set()).add(k)
        else:
            loose.append(array)
    arrays = []
    for buf, member_set in slots.items():
        members = sorted(member_set)
        first = members[0]
        for previous, k in zip(members, [*members[1:], None]):
            if k != previous + 1:
                arrays.append(buf.grads[buf.elements(first, previous + 1)])
                if k is not None:
                    first = k
    for array in loose:
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError(
                f"{owner}: a gradient of shape {array.shape} is not a contiguous writable "
                "array, so it cannot be clipped in place"
            )
    return arrays + [array.reshape(-1) for array in loose]  # views: kernels take 1-D arrays


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """Scale the gradients of ``parameters`` in place so that their total ``norm_type``-norm
    (over all gradients together, as if concatenated) is at most ``max_norm``; returns that
    total norm (before clipping) as a 0-d Tensor, as ``torch.nn.utils.clip_grad_norm_``.

    The scale is max_norm / (total_norm + 1e-6) when that is below 1. ``norm_type`` is a
    positive number or ``inf`` (the largest absolute value). A non-finite total norm raises
    RuntimeError with ``error_if_nonfinite=True``; otherwise the gradients are scaled by it
    anyway (to NaN or zero), as in torch. ``foreach`` is accepted for torch compatibility:
    firefly always runs fused kernels."""
    owner = "clip_grad_norm_"
    for name, value in (("max_norm", max_norm), ("norm_type", norm_type)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
            raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
    norm_type = float(norm_type)
    if not norm_type > 0.0:
        raise ValueError(f"{owner}: norm_type must be a positive number or inf, got {norm_type}")
    arrays = _gradient_arrays(parameters, owner)
    if not arrays:
        return Tensor(np.zeros((), np.float32))
    power_sum, coefficient_of, scale, _ = GradientClipping.forward_kernel
    total = np.zeros(1)
    for array in arrays:
        power_sum(array, norm_type, total)
    norm = np.empty(1, np.result_type(*arrays))
    coefficient = np.empty(1)
    coefficient_of(total, norm_type, float(max_norm), bool(error_if_nonfinite), norm, coefficient)
    for array in arrays:
        scale(coefficient, array)
    return Tensor(norm.reshape(()))


def clip_grad_value_(
    parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: bool | None = None
) -> None:
    """Clamp the gradients of ``parameters`` in place to [-clip_value, clip_value], as
    ``torch.nn.utils.clip_grad_value_``."""
    owner = "clip_grad_value_"
    if (
        isinstance(clip_value, bool)
        or not isinstance(clip_value, numbers.Real)
        or math.isnan(clip_value)
    ):
        raise TypeError(f"{owner}: clip_value must be a number, got {clip_value!r}")
    clamp = GradientClipping.forward_kernel[3]
    for array in _gradient_arrays(parameters, owner):
        clamp(np.array([-float(clip_value), float(clip_value)], array.dtype), array)
