"""DataLoader: mini-batches over arrays that share their first dimension."""
import math

import numpy as np

from firefly import random
from firefly.tensor import Tensor
from firefly.validation import as_int


class DataLoader:
    """``DataLoader(*arrays, batch_size, shuffle=False, drop_last=False, seed=None)``.

    Iterating yields one tuple of Tensors per batch, one Tensor per array, rows taken along the
    first dimension. Float32/float64 arrays keep their dtype; integer arrays (class labels) stay
    integer; anything else becomes float32 as in ``Tensor``. With ``shuffle``, each pass draws
    a new order from ``seed``'s own generator, or from firefly's (``firefly.manual_seed``).
    """

    def __init__(self, *arrays, batch_size, shuffle=False, drop_last=False, seed=None):
        if not arrays:
            raise ValueError("DataLoader: give at least one array, e.g. DataLoader(X, y, batch_size=32)")
        self.arrays = []
        for i, a in enumerate(arrays):
            a = a._data if isinstance(a, Tensor) else np.asarray(a)
            if a.ndim == 0:
                raise ValueError(f"DataLoader: array {i} is 0-d; every array needs a first (sample) dimension")
            if a.dtype.kind not in "fiub":
                raise TypeError(f"DataLoader: array {i} must hold numbers, got dtype {a.dtype}")
            self.arrays.append(a)
        lengths = [len(a) for a in self.arrays]
        if len(set(lengths)) > 1:
            shapes = ", ".join(str(a.shape) for a in self.arrays)
            raise ValueError(f"DataLoader: the arrays must have the same first dimension, got shapes {shapes}")
        batch_size = as_int("DataLoader", "batch_size", batch_size, 1)
        self.batch_size, self.shuffle, self.drop_last = batch_size, bool(shuffle), bool(drop_last)
        self.num_samples = lengths[0]
        self._generator = None if seed is None else np.random.default_rng(seed)

    def __len__(self):
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def _batch(self, array, rows):
        # Integer labels keep their dtype (ops such as cross_entropy need indices).
        dtype = array.dtype if array.dtype.kind in "iu" else None
        return Tensor(array[rows], dtype=dtype)

    def __iter__(self):
        if self.shuffle:
            order = (self._generator or random.generator()).permutation(self.num_samples)
        for b in range(len(self)):
            start = b * self.batch_size
            rows = order[start:start + self.batch_size] if self.shuffle else slice(start, start + self.batch_size)
            yield tuple(self._batch(a, rows) for a in self.arrays)
