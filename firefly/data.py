"""Datasets, samplers and the DataLoader, with PyTorch's names and semantics.

A dataset is any object with ``__len__`` and ``__getitem__`` (a list of ``(x, y)`` tuples
included); ``TensorDataset`` wraps arrays that share their first dimension. A sampler yields
dataset indices; ``DataLoader`` groups them into batches, fetches the items and collates them
with ``default_collate`` (torch's rules: Tensors and arrays are stacked, Python numbers become
a Tensor, tuples/lists are collated field by field into a list, dicts key by key).
"""

import collections.abc
import math
import numbers

import numpy as np

from firefly import random
from firefly.tensor import Tensor
from firefly.validation import as_int


def _as_tensor(array):
    """A Tensor over ``array``: floats follow the Tensor rules (float32/float64 kept), integer
    and bool arrays keep their dtype (class labels and masks stay what they are)."""
    return Tensor(array, dtype=array.dtype if array.dtype.kind in "iub" else None)


def _numeric_array(owner, value, what):
    array = value._data if isinstance(value, Tensor) else np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{owner}: {what} must hold numbers, got dtype {array.dtype}")
    return array


# ----------------------------------------------------------------------------- datasets
class Dataset:
    """Base class of map-style datasets, as ``torch.utils.data.Dataset``: subclasses define
    ``__getitem__(index)`` and ``__len__()``. Any object with both works as a dataset too."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


class TensorDataset(Dataset):
    """``TensorDataset(*tensors)``: item ``i`` is the tuple of row ``i`` of each tensor (Tensors
    or arrays sharing their first dimension), each row a Tensor."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: give at least one tensor, e.g. TensorDataset(X, y)")
        arrays = []
        for i, t in enumerate(tensors):
            array = _numeric_array("TensorDataset", t, f"tensor {i}")
            if array.ndim == 0:
                raise ValueError(
                    f"TensorDataset: tensor {i} is 0-d; every tensor needs a first (sample) dimension"
                )
            arrays.append(array)
        if len({len(a) for a in arrays}) > 1:
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise ValueError(
                f"TensorDataset: the tensors must have the same first dimension, got shapes {shapes}"
            )
        self.arrays = arrays
        self.tensors = tuple(_as_tensor(a) for a in arrays)

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(_as_tensor(np.asarray(a[index])) for a in self.arrays)

    def _batch(self, indices):
        """The default-collated batch of ``indices``, in one fancy-indexing pass per tensor."""
        return [_as_tensor(a[indices]) for a in self.arrays]


# ----------------------------------------------------------------------------- samplers
class Sampler:
    """Base class of samplers: an iterable of dataset indices with a ``__len__``."""

    def __iter__(self):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    """Indices 0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A new permutation of the indices each pass, drawn from ``seed``'s own generator, or from
    firefly's (``firefly.manual_seed``) when ``seed`` is None."""

    def __init__(self, data_source, seed=None):
        self.data_source = data_source
        self._generator = (
            None
            if seed is None
            else np.random.default_rng(as_int("RandomSampler", "seed", seed, 0))
        )

    def __iter__(self):
        generator = self._generator or random.generator()
        return iter(generator.permutation(len(self.data_source)).tolist())

    def __len__(self):
        return len(self.data_source)


class DistributedSampler(Sampler):
    """``DistributedSampler(dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False)``

    PyTorch's semantics: each of ``num_replicas`` processes gets a disjoint shard of
    ``len(self)`` indices. The (shuffled) index list is padded by wrapping around to a multiple
    of ``num_replicas``, or with ``drop_last`` cut down to one; process ``rank`` takes every
    ``num_replicas``-th index from position ``rank``. The order depends only on ``seed`` and the
    epoch, so every process draws the same permutation; call ``set_epoch(e)`` at the start of
    each epoch to reshuffle. ``num_replicas`` and ``rank`` default to
    ``firefly.distributed.world_size()`` and ``rank()``.
    """

    def __init__(
        self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False
    ):
        if num_replicas is None or rank is None:
            from firefly import distributed  # imported late: only this path needs it

            num_replicas = distributed.world_size() if num_replicas is None else num_replicas
            rank = distributed.rank() if rank is None else rank
        self.num_replicas = as_int("DistributedSampler", "num_replicas", num_replicas, 1)
        self.rank = as_int("DistributedSampler", "rank", rank, 0)
        if self.rank >= self.num_replicas:
            raise ValueError(
                f"DistributedSampler: invalid rank {self.rank}, rank must be in [0, {self.num_replicas - 1}]"
            )
        self.dataset, self.shuffle, self.drop_last = dataset, bool(shuffle), bool(drop_last)
        self.seed = as_int("DistributedSampler", "seed", seed, 0)
        self.epoch = 0
        length = len(dataset)
        if self.drop_last and length % self.num_replicas:
            self.num_samples = math.ceil((length - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(length / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        self.epoch = as_int("DistributedSampler.set_epoch", "epoch", epoch, 0)

    def __iter__(self):
        length = len(self.dataset)
        if self.shuffle:
            indices = np.random.default_rng((self.seed, self.epoch)).permutation(length)
        else:
            indices = np.arange(length)
        if self.total_size > length:  # pad by wrapping around, as often as needed
            indices = np.resize(indices, self.total_size)
        indices = indices[self.rank : self.total_size : self.num_replicas]
        return iter(indices.tolist())

    def __len__(self):
        return self.num_samples


# ----------------------------------------------------------------------------- collate
def default_collate(batch):
    """Merge a list of samples into a batch, as ``torch.utils.data.default_collate``: Tensors and
    arrays are stacked into one Tensor (integer and bool dtypes kept); Python floats become a
    float64 Tensor, ints int64, bools bool; strings stay a list; dicts are collated key by key,
    namedtuples field by field, other tuples and lists field by field into a list."""
    return _collate(list(batch), range(len(batch)), "")


def _describe(value):
    if isinstance(value, (Tensor, np.ndarray)):
        return f"a {type(value).__name__} of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


def _collate(batch, indices, field):
    """``default_collate``; errors name the index (``indices``, the samples' dataset indices)
    and the ``field`` path of the offending item."""

    def fail(position, problem):
        where = f"item {indices[position]}" + (f", field {field}" if field else "")
        raise TypeError(f"DataLoader: cannot collate {where}: {problem}")

    first = batch[0]
    if isinstance(first, (Tensor, np.ndarray, np.generic)):
        arrays = []
        for k, item in enumerate(batch):
            if not isinstance(item, (Tensor, np.ndarray, np.generic)):
                fail(k, f"it is {_describe(item)} but item {indices[0]} is {_describe(first)}")
            array = item._data if isinstance(item, Tensor) else np.asarray(item)
            if array.dtype.kind not in "fiub":
                fail(k, f"it is {_describe(array)}; only numbers can be batched")
            if arrays and array.shape != arrays[0].shape:
                fail(
                    k,
                    f"its shape {array.shape} differs from item {indices[0]}'s {arrays[0].shape}; "
                    "every sample must have the same shape (or pass a collate_fn)",
                )
            arrays.append(array)
        return _as_tensor(np.stack(arrays))
    if isinstance(first, numbers.Number) and not isinstance(first, complex):
        for k, item in enumerate(batch):
            if not isinstance(item, numbers.Number) or isinstance(item, complex):
                fail(k, f"it is {_describe(item)} but item {indices[0]} is a number")
        if all(isinstance(item, (bool, np.bool_)) for item in batch):
            dtype = np.bool_
        elif all(isinstance(item, numbers.Integral) for item in batch):
            dtype = np.int64
        else:  # a float among ints makes the batch float, never a truncated int
            dtype = np.float64
        return _as_tensor(np.array(batch, dtype=dtype))
    if isinstance(first, (str, bytes)):
        return batch
    if isinstance(first, collections.abc.Mapping):
        keys = list(first)
        for k, item in enumerate(batch):
            if not isinstance(item, collections.abc.Mapping) or set(item) != set(keys):
                got = sorted(item) if isinstance(item, collections.abc.Mapping) else _describe(item)
                fail(k, f"it has keys {got} but item {indices[0]} has keys {sorted(keys)}")
        return {
            key: _collate([item[key] for item in batch], indices, f"{field}[{key!r}]")
            for key in keys
        }
    if isinstance(first, collections.abc.Sequence):
        for k, item in enumerate(batch):
            if not isinstance(item, collections.abc.Sequence) or isinstance(item, (str, bytes)):
                fail(
                    k, f"it is {_describe(item)} but item {indices[0]} is a {type(first).__name__}"
                )
            if len(item) != len(first):
                fail(
                    k,
                    f"it has {len(item)} fields but item {indices[0]} has {len(first)}; "
                    "each element in the batch must be of equal size",
                )
        fields = [
            _collate([item[j] for item in batch], indices, f"{field}[{j}]")
            for j in range(len(first))
        ]
        if isinstance(first, tuple) and hasattr(first, "_fields"):  # a namedtuple keeps its type
            return type(first)(*fields)
        return fields
    fail(
        0,
        f"it is {_describe(first)}; default_collate handles Tensors, arrays, numbers, strings, "
        "and dicts, tuples and lists of them (or pass a collate_fn)",
    )


# ----------------------------------------------------------------------------- loader
_POSITIONAL = ("batch_size", "shuffle", "sampler", "drop_last", "collate_fn")
_UNSET = object()


class DataLoader:
    """``DataLoader(dataset, batch_size=1, shuffle=False, sampler=None, drop_last=False, collate_fn=None, *, seed=None)``

    As ``torch.utils.data.DataLoader``: iterating yields one batch per ``batch_size`` indices
    from ``sampler`` (by default in order, or a new random order each pass with ``shuffle``),
    fetched with ``dataset[i]`` and merged by ``collate_fn`` (``default_collate``). ``dataset``
    is any object with ``__len__`` and ``__getitem__``, such as a list of ``(x, y)`` tuples.

    Arrays are accepted as they are: ``DataLoader(X, y, batch_size=32)`` is
    ``DataLoader(TensorDataset(X, y), batch_size=32)``, whose batches are lists ``[xb, yb]``
    taken in one indexing pass per array. With ``shuffle``, the order comes from ``seed``'s own
    generator, or from firefly's (``firefly.manual_seed``). Loading runs in the calling
    process (no worker processes).
    """

    def __init__(
        self,
        dataset,
        *args,
        batch_size=_UNSET,
        shuffle=_UNSET,
        sampler=_UNSET,
        drop_last=_UNSET,
        collate_fn=_UNSET,
        seed=None,
    ):
        options = {
            "batch_size": batch_size,
            "shuffle": shuffle,
            "sampler": sampler,
            "drop_last": drop_last,
            "collate_fn": collate_fn,
        }
        arrays = (np.ndarray, np.generic, Tensor)
        if isinstance(dataset, arrays) and args and all(isinstance(a, arrays) for a in args):
            dataset, args = TensorDataset(dataset, *args), ()
        elif isinstance(dataset, arrays):
            dataset = TensorDataset(dataset)
        if len(args) > len(_POSITIONAL):
            raise TypeError(
                f"DataLoader: got {len(args) + 1} positional arguments; expected at most {len(_POSITIONAL) + 1}"
            )
        for name, value in zip(_POSITIONAL, args):
            if options[name] is not _UNSET:
                raise TypeError(f"DataLoader: got multiple values for argument '{name}'")
            options[name] = value
        defaults = {
            "batch_size": 1,
            "shuffle": False,
            "sampler": None,
            "drop_last": False,
            "collate_fn": None,
        }
        options = {
            name: defaults[name] if value is _UNSET else value for name, value in options.items()
        }

        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"DataLoader: the dataset must have __len__ and __getitem__ (a Dataset, a list of "
                f"samples, or arrays), got {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.batch_size = options["batch_size"]
        self.drop_last = bool(options["drop_last"])
        self.collate_fn = options["collate_fn"]
        if self.collate_fn is not None and not callable(self.collate_fn):
            raise TypeError(
                f"DataLoader: collate_fn must be callable, got {type(self.collate_fn).__name__}"
            )
        sampler, self.shuffle = options["sampler"], bool(options["shuffle"])
        if sampler is not None:
            if self.shuffle:
                raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
            if not hasattr(sampler, "__iter__") or not hasattr(sampler, "__len__"):
                raise TypeError(
                    f"DataLoader: sampler must be iterable and have a length, got {type(sampler).__name__}"
                )
        elif self.shuffle:
            sampler = RandomSampler(dataset, seed=seed)
        else:
            sampler = SequentialSampler(dataset)
        self.sampler = sampler

    @property
    def batch_size(self):
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value):
        self._batch_size = as_int("DataLoader", "batch_size", value, 1)

    def __len__(self):
        count = len(self.sampler)
        if self.drop_last:
            return count // self.batch_size
        return math.ceil(count / self.batch_size)

    def __iter__(self):
        batch_size = self.batch_size
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == batch_size:
                yield self._fetch(batch)
                batch = []
        if batch and not self.drop_last:
            yield self._fetch(batch)

    def _fetch(self, indices):
        dataset = self.dataset
        if self.collate_fn is None and isinstance(dataset, TensorDataset):
            return dataset._batch(np.asarray(indices))
        items = []
        for index in indices:
            try:
                items.append(dataset[index])
            except Exception as exc:
                if hasattr(exc, "add_note"):  # Python 3.11+
                    exc.add_note(
                        f"(raised by the DataLoader's dataset[{index}], {type(dataset).__name__})"
                    )
                raise
        if self.collate_fn is not None:
            return self.collate_fn(items)
        return _collate(items, indices, "")
