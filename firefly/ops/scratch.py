"""Reused memory for kernels' large temporary arrays (im2col matrices and the like).

A fresh multi-megabyte ndarray costs its page faults on first touch: in a digits-CNN training
step, allocating the convolutions' column matrices anew each call made them twice as slow as
the same kernels on reused arrays. Ops take such arrays from ``POOL`` instead:

- ``POOL.take(shape, dtype)`` / ``POOL.give(array)``: scratch that lives within one forward
  or backward call;
- ``POOL.lease(shape, dtype)``: an array saved for backward; its memory returns to the pool when
  the array is garbage-collected (the graph released it), never while anything can read it.

Arrays come back uninitialized. Free arrays are kept per (shape, dtype), up to ``max_bytes``.
"""

import threading
import weakref

import numpy as np


class ScratchPool:
    def __init__(self, max_bytes=256 * 2**20, per_shape=4):
        self.max_bytes, self.per_shape = max_bytes, per_shape
        self._free = {}  # (shape, dtype) -> list of arrays
        self._bytes = 0
        self._lock = threading.Lock()

    def take(self, shape, dtype):
        key = (tuple(shape), np.dtype(dtype))
        with self._lock:
            free = self._free.get(key)
            if free:
                array = free.pop()
                self._bytes -= array.nbytes
                return array
        return np.empty(key[0], dtype=key[1])

    def give(self, array):
        key = (array.shape, array.dtype)
        with self._lock:
            free = self._free.setdefault(key, [])
            if len(free) < self.per_shape and self._bytes + array.nbytes <= self.max_bytes:
                free.append(array)
                self._bytes += array.nbytes

    def lease(self, shape, dtype):
        owner = self.take(shape, dtype)
        view = owner[...]  # what the caller holds; the owner returns to the pool once it is gone
        weakref.finalize(view, self.give, owner)
        return view


POOL = ScratchPool()
