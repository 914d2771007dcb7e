"""Numba kernels on plain contiguous float32/float64 ndarrays. No Tensor, no autograd here:
kernels trust their inputs, and the ops in ``firefly.ops`` validate them first.

Plugin authors build their kernels with the same decorators as the built-in ones:
``kernel`` (serial), ``memory_bound`` and ``transcendental`` (a prange loop compiled serially
and in parallel, the build chosen by size).
"""
from firefly.kernels._jit import kernel, memory_bound, transcendental

__all__ = ["kernel", "memory_bound", "transcendental"]
