"""firefly: a small, fast deep-learning library on NumPy and Numba."""

import gc as _gc
import os as _os

# Importing firefly (and Numba with it) creates some 60,000 objects that the cyclic garbage
# collector tracks, nearly all of which live as long as the process. It would run about 150
# times while they are made, finding almost nothing to free: a sixth of the import's CPU time
# (measured in docs/architecture.md). It is paused for the import and resumed after it. Then
# one full pass frees what is unreachable, and what survives is frozen (``gc.freeze``): the
# collector's later passes, the interpreter's at exit among them, no longer walk 60,000 objects
# that will never be garbage. The pass is full, not of the youngest generation only, so that a
# program importing firefly late freezes none of its own garbage; FIREFLY_GC_FREEZE=0 turns the
# freeze off (a program that imports firefly late and later drops cyclic structures it built
# before the import would otherwise keep them), and a program that disabled the collector
# keeps it as it was.
_collecting = _gc.isenabled()
_gc.disable()

try:
    import numpy as _np

    from firefly import backends, cuda, linalg, nn, ops, optim
    from firefly import creation as _creation
    from firefly import functions as _functions
    from firefly.autograd import (
        enable_grad,
        inference_mode,
        is_grad_enabled,
        no_grad,
        set_grad_enabled,
    )
    from firefly.compile import compile
    from firefly.creation import *  # noqa: F403  (its __all__: tensor, zeros, randn, ...)
    from firefly.devices import device
    from firefly.dlpack import from_dlpack
    from firefly.functions import *  # noqa: F403  (its __all__: PyTorch's firefly.max, firefly.sum, ...)
    from firefly.optim import swa_utils as _swa_utils  # noqa: F401  (firefly.optim.swa_utils, as torch's)
    from firefly.random import Generator, default_generator, initial_seed, manual_seed, seed
    from firefly.serialization import load, save
    from firefly.tensor import Tensor
finally:
    if _collecting:
        _gc.enable()
if _collecting and _os.environ.get("FIREFLY_GC_FREEZE", "1") != "0":
    _gc.collect()
    _gc.freeze()

__version__ = "0.1.0"

# Submodules imported at their first use (``firefly.data``, ``from firefly import onnx``):
# data loading pulls in multiprocessing and shared memory, and a process that only trains
# or runs a model never needs them, nor the ONNX exporter or the distributed package.
_LAZY_SUBMODULES = frozenset({"data", "distributed", "onnx", "utils"})


def __getattr__(name: str) -> object:
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"firefly.{name}")  # which also sets it on firefly
    raise AttributeError(f"module 'firefly' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY_SUBMODULES)


# dtypes under PyTorch's names (NumPy dtypes: firefly tensors hold ndarrays)
float32 = float = _np.float32
float64 = double = _np.float64
int64 = long = _np.int64
int32 = int = _np.int32
bool = _np.bool_

__all__ = [
    "Tensor",
    "from_dlpack",
    "no_grad",
    "enable_grad",
    "inference_mode",
    "set_grad_enabled",
    "is_grad_enabled",
    "ops",
    "nn",
    "optim",
    "linalg",
    "manual_seed",
    "seed",
    "initial_seed",
    "Generator",
    "default_generator",
    "device",
    "cuda",
    "backends",
    "save",
    "load",
    "compile",
    "float32",
    "float64",
    "float",
    "double",
    "int64",
    "long",
    "int32",
    "int",
    "bool",
    "__version__",
    *sorted(_LAZY_SUBMODULES),
    *_creation.__all__,  # the creation functions
    *_functions.__all__,  # the function forms of the ops (firefly.max, firefly.cat, ...)
]
