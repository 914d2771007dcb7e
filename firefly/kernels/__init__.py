"""Numba kernels on plain contiguous float32/float64 ndarrays. No Tensor, no autograd here:
kernels trust their inputs, and the ops in ``firefly.ops`` validate them first.

Most kernels are built by the kernel families (``firefly.kernels.families``) from an op's
scalar math, written with ``scalar`` and the vectorizable functions of
``firefly.kernels.vmath``. Kernels written in full use the same decorators as the built-in
ones: ``kernel`` (serial), ``memory_bound`` and ``transcendental`` (a prange loop run serially
or in shares on all threads, chosen by size: ``_jit.sized_kernel``).
"""

from firefly.kernels._jit import kernel, memory_bound, scalar, transcendental

__all__ = ["kernel", "memory_bound", "scalar", "transcendental"]
