"""Devices, as torch names them: firefly computes on the CPU, so ``device("cpu")`` is the one
device there is. ``firefly.cuda`` and ``firefly.backends`` answer the availability questions
that device-selection code asks (``torch.cuda.is_available()`` and the like) with "no".

A program that asks for another device gets a ValueError saying so, naming the function and the
value, rather than a silent run on the CPU it did not ask for.
"""

from __future__ import annotations

import operator

# torch's device types: any of these names a device that exists in torch but not in firefly.
_OTHER_TYPES = (
    "cuda",
    "mps",
    "xpu",
    "xla",
    "meta",
    "hip",
    "ipu",
    "mkldnn",
    "opengl",
    "opencl",
    "ideep",
    "ve",
    "fpga",
    "maia",
    "lazy",
    "vulkan",
    "hpu",
    "mtia",
    "privateuseone",
)


class device:  # noqa: N801  (torch's name: firefly.device("cpu"))
    """``device(type)``, ``device("cpu:0")`` or ``device("cpu", 0)``: a device, as
    ``torch.device``. Only ``"cpu"`` exists; ``type`` is ``"cpu"`` and ``index`` is None unless
    given (torch's CPU index is always 0)."""

    __slots__ = ("type", "index")
    type: str
    index: int | None

    def __init__(self, type: str | device, index: int | None = None) -> None:  # noqa: A002
        if isinstance(type, device):
            if index is not None:
                raise TypeError(
                    f"device: give an index only with a device string, got {type!r} and {index!r}"
                )
            self.type, self.index = type.type, type.index
            return
        if not isinstance(type, str):
            raise TypeError(
                f"device: expected a device string such as 'cpu', got {_describe(type)}"
            )
        name, sep, given = type.partition(":")
        if sep:
            if index is not None:
                raise ValueError(
                    f"device: index given both in the string {type!r} and as index={index!r}"
                )
            if not given.isdigit():
                raise ValueError(
                    f"device: invalid device string {type!r}; expected 'cpu' or 'cpu:0'"
                )
            index = int(given)
        _check_type("device", name, type)
        if index is not None:
            if isinstance(index, bool):
                raise TypeError(f"device: index must be an int, got {index!r}")
            index = operator.index(index)
            if index != 0:
                raise ValueError(f"device: the CPU has index 0 only, got index {index} in {type!r}")
        self.type, self.index = "cpu", index

    def __repr__(self) -> str:
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other: object) -> bool:
        # As torch: a device equals a device (not a string) of the same type and index.
        if not isinstance(other, device):
            return NotImplemented
        return (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __reduce__(self):
        return (device, (self.type, self.index))


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _check_type(owner: str, name: str, spec: object) -> None:
    if name == "cpu":
        return
    if name in _OTHER_TYPES:
        raise ValueError(
            f"{owner}: device {str(spec)!r} is not available: firefly runs on the CPU only; "
            "use 'cpu' (or leave the device out)"
        )
    raise ValueError(
        f"{owner}: invalid device {str(spec)!r}; firefly runs on the CPU, whose device is 'cpu'"
    )


def is_device(value: object) -> bool:
    """Whether ``value`` is meant as a device (a ``device``, or a string naming one) rather than
    a dtype: ``to()``'s positional arguments may be either."""
    return isinstance(value, device) or (
        isinstance(value, str) and value.partition(":")[0] in ("cpu", *_OTHER_TYPES)
    )


def as_device(owner: str, value: object) -> device:
    """``value`` (a ``device``, a device string, an int or None) as the CPU device; a ValueError
    naming ``owner`` and the value for any other device, a TypeError for anything else."""
    if value is None or isinstance(value, device):  # every device object is the CPU
        return CPU
    if isinstance(value, str):
        try:
            return device(value)
        except ValueError as exc:
            raise ValueError(str(exc).replace("device:", f"{owner}:", 1)) from None
    if isinstance(value, int) and not isinstance(value, bool):
        # torch reads a bare int as a CUDA ordinal.
        raise ValueError(
            f"{owner}: device {value!r} means CUDA device {value} in torch; firefly runs on the "
            "CPU only; use 'cpu'"
        )
    raise TypeError(
        f"{owner}: device must be a device or a string such as 'cpu', got {_describe(value)}"
    )


def refuse_cuda(owner: str, device: object = None) -> None:
    """Raise the ValueError that every CUDA request gets (``Tensor.cuda()``, ``Module.cuda()``)."""
    _check_type(owner, "cuda", "cuda" if device is None else device)


CPU = device("cpu")  # the device every firefly tensor is on
# What ``device=`` accepts: a device, a string naming one ("cpu"), or None for the CPU.
DeviceLike = str | device | None
