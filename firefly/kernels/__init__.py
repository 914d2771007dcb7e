"""Numba kernels on plain contiguous float32/float64 ndarrays. No Tensor, no autograd here:
kernels trust their inputs, and the ops in ``firefly.ops`` validate them first."""
