"""DLPack: ``from_dlpack(obj)`` (``Tensor.__dlpack__``/``__dlpack_device__`` are the other way),
sharing memory with NumPy, torch, JAX and any other DLPack producer or consumer on the CPU.

A firefly tensor is always a C-contiguous, writeable ndarray (kernels are compiled for that
one array type, and optimizers write parameters in place). So a source that is contiguous and
writeable is shared, as torch shares it; a strided view (a transpose) or read-only memory is
copied, where torch would share it.
"""

from typing import Any

import numpy as np

from firefly.dtypes import tensor_dtype
from firefly.tensor import Tensor

# DLPack's DLDeviceType codes (dlpack.h), for error messages.
DEVICE_TYPES = {
    1: "CPU",
    2: "CUDA",
    3: "CUDA host",
    4: "OpenCL",
    7: "Vulkan",
    8: "Metal",
    9: "VPI",
    10: "ROCm",
    11: "ROCm host",
    13: "CUDA managed",
    14: "oneAPI",
}
CPU = 1


def from_dlpack(obj: Any) -> Tensor:
    """A Tensor on the memory of ``obj``, any object with ``__dlpack__`` and
    ``__dlpack_device__`` on the CPU (a torch tensor, a NumPy or JAX array, a firefly Tensor).
    The memory is shared when it is C-contiguous and writeable, and copied otherwise."""
    device = getattr(obj, "__dlpack_device__", None)
    if device is None or not hasattr(obj, "__dlpack__"):
        raise TypeError(
            f"from_dlpack: expected an object with __dlpack__ and __dlpack_device__ (a torch "
            f"tensor, a NumPy or JAX array), got {type(obj).__name__}"
        )
    device_type, device_id = device()
    if device_type != CPU:
        name = DEVICE_TYPES.get(int(device_type), f"device type {device_type}")
        raise ValueError(
            f"from_dlpack: the {type(obj).__name__} is on a {name} device (id {device_id}); "
            "firefly tensors live in CPU memory: copy it there first (torch: .cpu())"
        )
    array = np.from_dlpack(obj)
    tensor_dtype("from_dlpack", array.dtype)
    if not (array.flags.c_contiguous and array.flags.writeable):
        array = np.array(array, order="C")  # a writeable, contiguous copy
    return Tensor._wrap(array)
