"""Datasets, samplers and the DataLoader, with PyTorch's names and semantics; importable as
``firefly.utils.data`` (torch's layout) and as ``firefly.data`` (the same objects).

A dataset is any object with ``__len__`` and ``__getitem__`` (a list of ``(x, y)`` tuples
included); ``TensorDataset`` wraps arrays that share their first dimension. A sampler yields
dataset indices; ``DataLoader`` groups them into batches, fetches the items and collates them
with ``default_collate`` (torch's rules: Tensors and arrays are stacked, Python numbers become
a Tensor, tuples/lists are collated field by field into a list, dicts key by key).
"""

from __future__ import annotations

import bisect
import collections.abc
import itertools
import math
import multiprocessing
import numbers
import operator
import warnings
import weakref
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any, NoReturn, cast

import numpy as np
from numpy.typing import ArrayLike

from firefly import data_workers, random
from firefly.data_workers import WorkerInfo as WorkerInfo
from firefly.data_workers import get_worker_info as get_worker_info
from firefly.tensor import Tensor
from firefly.validation import as_int


def _as_tensor(array: np.ndarray) -> Tensor:
    """A Tensor over ``array``: floats follow the Tensor rules (float32/float64 kept), integer
    and bool arrays keep their dtype (class labels and masks stay what they are)."""
    return Tensor(array, dtype=array.dtype if array.dtype.kind in "iub" else None)


def _numeric_array(owner: str, value: object, what: str) -> np.ndarray:
    array = value._data if isinstance(value, Tensor) else np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{owner}: {what} must hold numbers, got dtype {array.dtype}")
    return array


# ----------------------------------------------------------------------------- datasets
class Dataset:
    """Base class of map-style datasets, as ``torch.utils.data.Dataset``: subclasses define
    ``__getitem__(index)`` and ``__len__()``. Any object with both works as a dataset too."""

    def __getitem__(self, index: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __add__(self, other: Dataset) -> Dataset:
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """Base class of iterable-style datasets, as ``torch.utils.data.IterableDataset``: subclasses
    define ``__iter__``; the DataLoader batches what it yields, in order (no sampler)."""

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")

    def __getitem__(self, index: Any) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is an IterableDataset: it is iterated, not indexed")

    def __len__(self) -> int:
        # A TypeError (not NotImplementedError): len() and list() read it as "no length".
        raise TypeError(f"{type(self).__name__} is an IterableDataset without __len__")

    def __add__(self, other: Dataset) -> Dataset:
        return ChainDataset([self, other])


class ChainDataset(IterableDataset):
    """``ChainDataset(datasets)``: iterable datasets one after another, as torch's."""

    def __init__(self, datasets: Iterable[Dataset]) -> None:
        self.datasets = datasets

    def __iter__(self) -> Iterator[Any]:
        for i, d in enumerate(self.datasets):
            if not isinstance(d, IterableDataset):
                raise TypeError(
                    f"ChainDataset: dataset {i} is a {type(d).__name__}; ChainDataset only "
                    "supports IterableDataset"
                )
            yield from d

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)


def _index_list(owner: str, indices: object) -> list[int]:
    """``indices`` (a sequence, array or integer Tensor of ints) as a list of Python ints."""
    if isinstance(indices, Tensor):
        indices = indices._data
    array = np.asarray(indices)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise TypeError(
            f"{owner}: indices must be a 1-D sequence of ints, got {type(indices).__name__} "
            f"{array.dtype} of shape {array.shape}"
        )
    return array.astype(np.int64).tolist()


class Subset(Dataset):
    """``Subset(dataset, indices)``: the items of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx: int | list[int]) -> Any:
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __len__(self) -> int:
        return len(self.indices)

    def _batch(self, positions: np.ndarray) -> list[Tensor] | None:
        """A TensorDataset's fast batch, through the subset's indices."""
        inner = getattr(self.dataset, "_batch", None)
        if inner is None:
            return None
        return inner(np.asarray(_index_list("Subset", self.indices))[positions])


class ConcatDataset(Dataset):
    """``ConcatDataset(datasets)``: the datasets one after another; ``cumulative_sizes`` holds
    the running totals."""

    def __init__(self, datasets: Iterable[Any]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: datasets should not be an empty iterable")
        for i, d in enumerate(self.datasets):
            if isinstance(d, IterableDataset):
                raise TypeError(
                    f"ConcatDataset: dataset {i} is an IterableDataset, which has no length "
                    "or indexing; ConcatDataset joins map-style datasets"
                )
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int) -> Any:
        idx = operator.index(idx)
        if idx < 0:
            if -idx > len(self):
                raise ValueError(
                    f"ConcatDataset: index {idx} is out of range for length {len(self)}"
                )
            idx += len(self)
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        if which == len(self.datasets):
            raise IndexError(f"ConcatDataset: index {idx} is out of range for length {len(self)}")
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][idx - start]


def random_split(
    dataset: Any, lengths: Sequence[float], generator: random.Generator | None = None
) -> list[Subset]:
    """Split ``dataset`` into non-overlapping ``Subset``s of the given ``lengths`` (ints that sum
    to ``len(dataset)``, or fractions that sum to 1, the remainder going one by one to the
    first splits), in a random order drawn from ``generator`` (firefly's default when None), as
    ``torch.utils.data.random_split``."""
    random.checked("random_split", generator)
    if not isinstance(lengths, collections.abc.Sequence) or isinstance(lengths, str):
        raise TypeError(
            f"random_split: lengths must be a sequence of ints or fractions, got "
            f"{type(lengths).__name__} {lengths!r}"
        )
    total = len(dataset)
    for i, length in enumerate(lengths):
        if isinstance(length, bool) or not isinstance(length, numbers.Real):
            raise TypeError(
                f"random_split: lengths[{i}] must be an int or a fraction, got "
                f"{type(length).__name__} {length!r}"
            )
    fractions = any(not isinstance(length, numbers.Integral) for length in lengths)
    if fractions and not (math.isclose(sum(lengths), 1) and sum(lengths) <= 1):
        raise ValueError(
            f"random_split: lengths {list(lengths)} hold fractions that sum to {sum(lengths):g}; "
            f"fractions must sum to 1 (or give ints summing to len(dataset) = {total})"
        )
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        sizes = []
        for i, fraction in enumerate(lengths):
            if not 0 <= fraction <= 1:
                raise ValueError(
                    f"random_split: fraction lengths[{i}] = {fraction!r} is not between 0 and 1"
                )
            sizes.append(math.floor(total * fraction))
        for i in range(total - sum(sizes)):
            sizes[i % len(sizes)] += 1
        for i, size in enumerate(sizes):
            if size == 0:
                warnings.warn(
                    f"random_split: length of split at index {i} is 0; this might result in "
                    "an empty dataset",
                    stacklevel=2,
                )
        lengths = sizes
    for i, length in enumerate(lengths):
        if not isinstance(length, numbers.Integral) or length < 0:
            raise ValueError(
                f"random_split: lengths[{i}] = {length!r}; lengths must be non-negative ints "
                "summing to len(dataset), or fractions summing to 1"
            )
    if sum(lengths) != total:
        raise ValueError(
            f"random_split: lengths {list(lengths)} sum to {sum(lengths)}, but the dataset has "
            f"{total} items; the lengths must sum to len(dataset) (or be fractions summing to 1)"
        )
    order = random.generator(generator).permutation(total).tolist()
    ends = itertools.accumulate(lengths)
    return [Subset(dataset, order[end - length : end]) for end, length in zip(ends, lengths)]


class TensorDataset(Dataset):
    """``TensorDataset(*tensors)``: item ``i`` is the tuple of row ``i`` of each tensor (Tensors
    or arrays sharing their first dimension), each row a Tensor."""

    def __init__(self, *tensors: Tensor | ArrayLike) -> None:
        if not tensors:
            raise ValueError("TensorDataset: give at least one tensor, e.g. TensorDataset(X, y)")
        arrays = []
        for i, t in enumerate(tensors):
            array = _numeric_array("TensorDataset", t, f"tensor {i}")
            if array.ndim == 0:
                raise ValueError(
                    f"TensorDataset: tensor {i} is 0-d; "
                    "every tensor needs a first (sample) dimension"
                )
            arrays.append(array)
        if len({len(a) for a in arrays}) > 1:
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise ValueError(
                "TensorDataset: the tensors must have the same first dimension, "
                f"got shapes {shapes}"
            )
        self.arrays = arrays
        self.tensors = tuple(_as_tensor(a) for a in arrays)

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index: Any) -> tuple[Tensor, ...]:
        return tuple(_as_tensor(np.asarray(a[index])) for a in self.arrays)

    def _batch(self, indices: np.ndarray) -> list[Tensor]:
        """The default-collated batch of ``indices``, in one fancy-indexing pass per tensor."""
        return [_as_tensor(a[indices]) for a in self.arrays]


# ----------------------------------------------------------------------------- samplers
class Sampler:
    """Base class of samplers: an iterable of dataset indices with a ``__len__``."""

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class SequentialSampler(Sampler):
    """Indices 0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source: Sized) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """``RandomSampler(data_source, replacement=False, num_samples=None, generator=None)``

    As torch's: a new permutation of the indices each pass (or, with ``replacement``,
    ``num_samples`` indices drawn with replacement), from ``generator`` or firefly's default
    generator (``firefly.manual_seed``). ``seed=`` (firefly's) gives the sampler a generator of
    its own seeded with it."""

    def __init__(
        self,
        data_source: Sized,
        replacement: bool = False,
        num_samples: int | None = None,
        generator: random.Generator | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        self.data_source = data_source
        if not isinstance(replacement, bool):
            raise TypeError(
                f"RandomSampler: replacement should be a boolean value, got {replacement!r}"
            )
        self.replacement = replacement
        self._num_samples = (
            None if num_samples is None else as_int("RandomSampler", "num_samples", num_samples, 1)
        )
        self.generator = random.checked("RandomSampler", generator)
        if seed is not None:
            if generator is not None:
                raise TypeError("RandomSampler: give generator or seed, not both")
            self.generator = random.Generator().manual_seed(
                as_int("RandomSampler", "seed", seed, 0)
            )

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self) -> Iterator[int]:
        rng = random.generator(self.generator)
        n = len(self.data_source)
        if self.replacement:
            return iter(rng.integers(0, n, size=self.num_samples).tolist())
        passes = [rng.permutation(n) for _ in range(-(-self.num_samples // max(n, 1)))]
        order = np.concatenate(passes) if passes else np.zeros(0, np.int64)
        return iter(order[: self.num_samples].tolist())

    def __len__(self) -> int:
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """``SubsetRandomSampler(indices, generator=None)``: ``indices`` in a new random order each
    pass."""

    def __init__(self, indices: Sequence[int], generator: random.Generator | None = None) -> None:
        self.indices = indices
        self.generator = random.checked("SubsetRandomSampler", generator)

    def __iter__(self) -> Iterator[int]:
        order = random.generator(self.generator).permutation(len(self.indices))
        return iter([self.indices[i] for i in order.tolist()])

    def __len__(self) -> int:
        return len(self.indices)


class WeightedRandomSampler(Sampler):
    """``WeightedRandomSampler(weights, num_samples, replacement=True, generator=None)``:
    ``num_samples`` indices drawn with probability proportional to ``weights``."""

    def __init__(
        self,
        weights: Tensor | ArrayLike,
        num_samples: int,
        replacement: bool = True,
        generator: random.Generator | None = None,
    ) -> None:
        self.num_samples = as_int("WeightedRandomSampler", "num_samples", num_samples, 1)
        if not isinstance(replacement, bool):
            raise TypeError(
                f"WeightedRandomSampler: replacement should be a boolean value, got {replacement!r}"
            )
        array = _numeric_array("WeightedRandomSampler", weights, "weights").astype(np.float64)
        if array.ndim != 1:
            raise ValueError(
                f"WeightedRandomSampler: weights should be a 1-D sequence, got shape {array.shape}"
            )
        if not np.all(np.isfinite(array)) or np.any(array < 0) or array.sum() <= 0:
            raise ValueError(
                "WeightedRandomSampler: weights must be finite, non-negative and not all zero, "
                f"got {array.tolist() if array.size <= 8 else array}"
            )
        if not replacement and self.num_samples > np.count_nonzero(array):
            raise ValueError(
                f"WeightedRandomSampler: cannot draw num_samples={self.num_samples} without "
                f"replacement from {np.count_nonzero(array)} non-zero weights"
            )
        self.weights = Tensor._wrap(array)
        self.replacement = replacement
        self.generator = random.checked("WeightedRandomSampler", generator)

    def __iter__(self) -> Iterator[int]:
        p = self.weights._data / self.weights._data.sum()
        rng = random.generator(self.generator)
        draws = rng.choice(len(p), size=self.num_samples, replace=self.replacement, p=p)
        return iter(draws.tolist())

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """``BatchSampler(sampler, batch_size, drop_last)``: lists of ``batch_size`` indices from
    ``sampler`` (the last shorter unless ``drop_last``)."""

    def __init__(self, sampler: Sampler | Sequence[int], batch_size: int, drop_last: bool) -> None:
        self.batch_size = as_int("BatchSampler", "batch_size", batch_size, 1)
        if not isinstance(drop_last, bool):
            raise TypeError(f"BatchSampler: drop_last should be a boolean value, got {drop_last!r}")
        self.sampler, self.drop_last = sampler, drop_last

    def __iter__(self) -> Iterator[list[int]]:
        batch = []
        for index in self.sampler:
            batch.append(index)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return -(-len(self.sampler) // self.batch_size)


class DistributedSampler(Sampler):
    """``DistributedSampler(dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
    drop_last=False)``

    PyTorch's semantics: each of ``num_replicas`` processes gets a disjoint shard of
    ``len(self)`` indices. The (shuffled) index list is padded by wrapping around to a multiple
    of ``num_replicas``, or with ``drop_last`` cut down to one; process ``rank`` takes every
    ``num_replicas``-th index from position ``rank``. The order depends only on ``seed`` and the
    epoch, so every process draws the same permutation; call ``set_epoch(e)`` at the start of
    each epoch to reshuffle. ``num_replicas`` and ``rank`` default to
    ``firefly.distributed.world_size()`` and ``rank()``.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if num_replicas is None or rank is None:
            from firefly import distributed  # imported late: only this path needs it

            num_replicas = distributed.world_size() if num_replicas is None else num_replicas
            rank = distributed.rank() if rank is None else rank
        self.num_replicas = as_int("DistributedSampler", "num_replicas", num_replicas, 1)
        self.rank = as_int("DistributedSampler", "rank", rank, 0)
        if self.rank >= self.num_replicas:
            raise ValueError(
                f"DistributedSampler: invalid rank {self.rank}, "
                f"rank must be in [0, {self.num_replicas - 1}]"
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

    def set_epoch(self, epoch: int) -> None:
        self.epoch = as_int("DistributedSampler.set_epoch", "epoch", epoch, 0)

    def __iter__(self) -> Iterator[int]:
        length = len(self.dataset)
        if self.shuffle:
            indices = np.random.default_rng((self.seed, self.epoch)).permutation(length)
        else:
            indices = np.arange(length)
        if self.total_size > length:  # pad by wrapping around, as often as needed
            indices = np.resize(indices, self.total_size)
        indices = indices[self.rank : self.total_size : self.num_replicas]
        return iter(indices.tolist())

    def __len__(self) -> int:
        return self.num_samples


# ----------------------------------------------------------------------------- collate
def default_collate(batch: Sequence[Any]) -> Any:
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
# torch's positional order, so DataLoader(ds, 32, True) and longer positional calls port.
_POSITIONAL = (
    "batch_size",
    "shuffle",
    "sampler",
    "batch_sampler",
    "num_workers",
    "collate_fn",
    "pin_memory",
    "drop_last",
    "timeout",
    "worker_init_fn",
    "multiprocessing_context",
    "generator",
)
_DEFAULTS = {
    "batch_size": 1,
    "shuffle": None,
    "sampler": None,
    "batch_sampler": None,
    "num_workers": 0,
    "collate_fn": None,
    "pin_memory": False,
    "drop_last": False,
    "timeout": 0,
    "worker_init_fn": None,
    "multiprocessing_context": None,
    "generator": None,
}
_UNSET = object()


def default_convert(data: Any) -> Any:
    """What an un-batched DataLoader (``batch_size=None``) yields: arrays become Tensors
    (integer and bool dtypes kept), containers are converted item by item, the rest is kept."""
    if isinstance(data, np.ndarray) and data.dtype.kind in "fiub":
        return _as_tensor(np.ascontiguousarray(data))
    if isinstance(data, collections.abc.Mapping):
        return {key: default_convert(value) for key, value in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, (list, tuple)):
        return [default_convert(d) for d in data]
    return data


class DataLoader:
    """``DataLoader(dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
    num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
    worker_init_fn=None, multiprocessing_context=None, generator=None, *, prefetch_factor=None,
    persistent_workers=False, pin_memory_device="", in_order=True, seed=None)``

    As ``torch.utils.data.DataLoader``: iterating yields one batch per ``batch_size`` indices
    from ``sampler`` (by default in order, or a new random order each pass with ``shuffle``,
    drawn from ``generator`` or firefly's default generator), or one per list of indices from
    ``batch_sampler``, fetched with ``dataset[i]`` and merged by ``collate_fn``
    (``default_collate``). ``batch_size=None`` yields the items one by one, un-batched. An
    ``IterableDataset`` is iterated and its items batched in order.

    ``dataset`` is any object with ``__len__`` and ``__getitem__``, such as a list of
    ``(x, y)`` tuples. Arrays are accepted as they are: ``DataLoader(X, y, batch_size=32)`` is
    ``DataLoader(TensorDataset(X, y), batch_size=32)``, batched in one indexing pass per
    array. ``seed=`` (firefly's) shuffles with a generator of the loader's own.

    ``num_workers=N`` loads in N worker processes (``firefly.data_workers``), as torch: each
    worker gets batches of indices in turn, ``prefetch_factor`` (default 2) per worker in
    flight, and the batches come out in the sampler's order, the same batches as with
    ``num_workers=0``. A worker is seeded with ``base_seed + worker_id`` (Python's ``random``,
    NumPy's global generator and firefly's default generator), ``base_seed`` being drawn from
    ``generator`` at each ``iter()``; ``worker_init_fn(worker_id)`` runs next, and
    ``get_worker_info()`` tells the dataset which worker it runs in. Batches travel through
    shared memory. A worker's exception is raised again here with its traceback; a worker
    that dies, or a batch slower than ``timeout`` seconds (0: no limit), raises a
    RuntimeError. The workers end with the pass (or, with ``persistent_workers``, with the
    loader), also after an exception, a ``break`` or a KeyboardInterrupt. Workers start with
    'fork' where available (``multiprocessing_context`` chooses another start method; 'spawn'
    needs a picklable dataset). ``pin_memory`` is accepted and does nothing (CPU only).
    """

    def __init__(
        self,
        dataset: Any,
        *args: Any,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        unknown = sorted(set(kwargs) - set(_POSITIONAL))
        if unknown:
            raise TypeError(f"DataLoader: got an unexpected keyword argument {unknown[0]!r}")
        options: dict[str, Any] = dict.fromkeys(_POSITIONAL, _UNSET)
        options.update(kwargs)
        arrays = (np.ndarray, np.generic, Tensor)
        if isinstance(dataset, arrays) and args and all(isinstance(a, arrays) for a in args):
            dataset, args = TensorDataset(dataset, *args), ()
        elif isinstance(dataset, arrays):
            dataset = TensorDataset(dataset)
        if len(args) > len(_POSITIONAL):
            raise TypeError(
                f"DataLoader: got {len(args) + 1} positional arguments; expected at most "
                f"{len(_POSITIONAL) + 1}"
            )
        given = set(kwargs)
        for name, value in zip(_POSITIONAL, args):
            if name in given:
                raise TypeError(f"DataLoader: got multiple values for argument '{name}'")
            options[name] = value
            given.add(name)
        options = {
            name: _DEFAULTS[name] if value is _UNSET else value for name, value in options.items()
        }

        iterable = isinstance(dataset, IterableDataset)
        if not iterable and not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"DataLoader: the dataset must have __len__ and __getitem__ (a Dataset, a list of "
                f"samples, or arrays) or be an IterableDataset, got {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.num_workers = as_int("DataLoader", "num_workers", options["num_workers"], 0)
        self.timeout: float = options["timeout"]
        if not isinstance(self.timeout, numbers.Real) or self.timeout < 0:
            raise ValueError(
                f"DataLoader: timeout option should be non-negative, got {self.timeout!r}"
            )
        self.pin_memory = bool(options["pin_memory"])
        self.worker_init_fn = options["worker_init_fn"]
        if self.worker_init_fn is not None and not callable(self.worker_init_fn):
            raise TypeError(
                "DataLoader: worker_init_fn must be callable, got "
                f"{type(self.worker_init_fn).__name__}"
            )
        self.multiprocessing_context = _checked_context(
            options["multiprocessing_context"], self.num_workers
        )
        if prefetch_factor is None:
            prefetch_factor = 2 if self.num_workers else None
        elif not self.num_workers:
            raise ValueError(
                "DataLoader: prefetch_factor option could only be specified in multiprocessing; "
                "let num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor "
                "to None"
            )
        else:
            prefetch_factor = as_int("DataLoader", "prefetch_factor", prefetch_factor, 1)
        if persistent_workers and not self.num_workers:
            raise ValueError("DataLoader: persistent_workers option needs num_workers > 0")
        self.prefetch_factor, self.persistent_workers = prefetch_factor, bool(persistent_workers)
        # The pool of persistent workers, started by the first iter():
        self._workers: data_workers.WorkerPool | None = None
        self.pin_memory_device, self.in_order = pin_memory_device, in_order
        self.generator = random.checked("DataLoader", options["generator"])
        self.collate_fn = options["collate_fn"]
        if self.collate_fn is not None and not callable(self.collate_fn):
            raise TypeError(
                f"DataLoader: collate_fn must be callable, got {type(self.collate_fn).__name__}"
            )
        batch_size, drop_last = options["batch_size"], options["drop_last"]
        # Any iterables with a length (_check_sampler), or None:
        sampler: Any = options["sampler"]
        batch_sampler: Any = options["batch_sampler"]
        shuffle = options["shuffle"]
        if shuffle not in (None, True, False):
            raise TypeError(f"DataLoader: shuffle must be a bool, got {shuffle!r}")
        self.shuffle = bool(shuffle)
        if seed is not None:
            if self.generator is not None:
                raise TypeError("DataLoader: give generator or seed, not both")
            self.generator = random.Generator().manual_seed(as_int("DataLoader", "seed", seed, 0))

        if iterable:
            if self.shuffle:
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified shuffle option, but "
                    f"got shuffle={shuffle}"
                )
            if sampler is not None or batch_sampler is not None:
                which = "sampler" if sampler is not None else "batch_sampler"
                raise ValueError(
                    f"DataLoader with IterableDataset: expected unspecified {which} option, "
                    f"but got {which}={(sampler if sampler is not None else batch_sampler)!r}"
                )
        elif batch_sampler is not None:
            if batch_size != 1 or self.shuffle or sampler is not None or drop_last:
                raise ValueError(
                    "DataLoader: batch_sampler option is mutually exclusive with batch_size, "
                    f"shuffle, sampler, and drop_last (got batch_size={batch_size!r}, "
                    f"shuffle={shuffle!r}, sampler={sampler!r}, drop_last={drop_last!r})"
                )
            _check_sampler("batch_sampler", batch_sampler)
            batch_size, drop_last = None, False
        if sampler is not None:
            if self.shuffle:
                raise ValueError("DataLoader: sampler option is mutually exclusive with shuffle")
            _check_sampler("sampler", sampler)
        elif not iterable:
            sampler = (
                RandomSampler(dataset, generator=self.generator)
                if self.shuffle
                else SequentialSampler(dataset)
            )
        if batch_size is None:
            if drop_last:
                raise ValueError(
                    "DataLoader: batch_size=None option disables auto-batching and is mutually "
                    "exclusive with drop_last"
                )
        else:
            batch_size = as_int("DataLoader", "batch_size", batch_size, 1)
            if not iterable and batch_sampler is None:
                batch_sampler = BatchSampler(sampler, batch_size, bool(drop_last))
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self._batch_size, self.drop_last = batch_size, bool(drop_last)

    @property
    def batch_size(self) -> int | None:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self._batch_size = as_int("DataLoader", "batch_size", value, 1)
        if isinstance(self.batch_sampler, BatchSampler):
            self.batch_sampler.batch_size = self._batch_size

    def __len__(self) -> int:
        if isinstance(self.dataset, IterableDataset):
            length = len(self.dataset)  # a TypeError unless the dataset defines __len__
            if self._batch_size is None:
                return length
            if self.drop_last:
                return length // self._batch_size
            return -(-length // self._batch_size)
        if self.batch_sampler is None:
            return len(self.sampler)
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[Any]:
        # The base seed of the workers is drawn first, whether or not there are workers (as
        # torch does), so the sampler's draws, and the batches, are the same for any
        # num_workers.
        base_seed = int(random.generator(self.generator).integers(0, 2**63 - 2**16))
        fetcher = _Fetcher(
            self.dataset,
            self._batch_size,
            self.drop_last,
            self.collate_fn,
            batched=self.batch_sampler is not None,
        )
        if fetcher.iterable:
            tasks = None
        else:
            tasks = iter(self.batch_sampler if fetcher.batched else self.sampler)
        if self.num_workers == 0:
            return fetcher.stream() if tasks is None else map(fetcher.fetch, tasks)
        if self.persistent_workers:
            if self._workers is None or not self._workers.alive:
                self._workers = self._start_workers(fetcher, base_seed)
                self._workers_finalizer = weakref.finalize(self, self._workers.shutdown)
            pool, owns_pool = self._workers, False
        else:
            pool, owns_pool = self._start_workers(fetcher, base_seed), True
        return data_workers.WorkerIterator(
            pool,
            tasks,
            cast(int, self.prefetch_factor),  # an int whenever num_workers > 0
            self.timeout,
            self.in_order,
            owns_pool,
        )

    def _start_workers(self, fetcher, base_seed):
        context = self.multiprocessing_context
        if context is None:
            context = data_workers.default_context()
        elif isinstance(context, str):
            context = multiprocessing.get_context(context)
        return data_workers.WorkerPool(
            fetcher, self.num_workers, context, self.worker_init_fn, base_seed
        )


class _Fetcher:
    """What loading a batch needs apart from the sampler (the dataset, batch size, collate_fn):
    the DataLoader uses one in the calling process, and each worker process gets a copy.
    ``fetch(task)`` loads an index list (``batched``) or one index; ``stream()`` iterates an
    IterableDataset's batches."""

    def __init__(self, dataset, batch_size, drop_last, collate_fn, batched):
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.collate_fn, self.batched = collate_fn, batched
        self.iterable = isinstance(dataset, IterableDataset)

    def fetch(self, task):
        if not self.batched:
            return self._convert(self._item(task))
        indices = list(task)
        fast = getattr(self.dataset, "_batch", None)
        if self.collate_fn is None and fast is not None:
            batch = fast(np.asarray(indices, dtype=np.int64))
            if batch is not None:
                return batch
        return self._collate([self._item(index) for index in indices], indices)

    def stream(self):
        if self.batch_size is None:
            for item in self.dataset:
                yield self._convert(item)
            return
        items = iter(self.dataset)
        while True:
            batch = list(itertools.islice(items, self.batch_size))
            if not batch or (self.drop_last and len(batch) < self.batch_size):
                return
            yield self._collate(batch, range(len(batch)))

    def _convert(self, item):
        return default_convert(item) if self.collate_fn is None else self.collate_fn(item)

    def _item(self, index):
        try:
            return self.dataset[index]
        except Exception as exc:
            if hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(
                    f"(raised by the DataLoader's dataset[{index}], {type(self.dataset).__name__})"
                )
            raise

    def _collate(self, items, indices):
        if self.collate_fn is not None:
            return self.collate_fn(items)
        return _collate(items, indices, "")


def _checked_context(context, num_workers):
    """``multiprocessing_context``: None, a start method's name or a multiprocessing context,
    given only with workers (as torch)."""
    if context is None:
        return None
    if not num_workers:
        raise ValueError(
            "DataLoader: multiprocessing_context can only be used with multi-process loading "
            "(num_workers > 0), but got num_workers=0"
        )
    if isinstance(context, str):
        methods = multiprocessing.get_all_start_methods()
        if context not in methods:
            raise ValueError(
                f"DataLoader: multiprocessing_context {context!r} is not a start method here; "
                f"expected one of {methods}"
            )
        return context
    if not hasattr(context, "Process"):
        raise TypeError(
            "DataLoader: multiprocessing_context must be a start method's name or a "
            f"multiprocessing context, got {type(context).__name__}"
        )
    return context


def _check_sampler(name, sampler):
    if not hasattr(sampler, "__iter__") or not hasattr(sampler, "__len__"):
        raise TypeError(
            f"DataLoader: {name} must be iterable and have a length, got {type(sampler).__name__}"
        )
