"""firefly.data.DataLoader: batching, shuffling, seeding, dtypes and misuse."""
import numpy as np
import pytest

import firefly
from firefly.data import DataLoader
from firefly.tensor import Tensor


def collect(loader):
    """The first array's batches as lists, one pass."""
    return [batch[0].numpy().tolist() for batch in loader]


def test_in_order_batches_with_a_short_last_one():
    X, y = np.arange(20, dtype=np.float64).reshape(10, 2), np.arange(10)
    loader = DataLoader(X, y, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert all(isinstance(b, tuple) and all(isinstance(t, Tensor) for t in b) for b in batches)
    assert [b[1].numpy().tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert np.array_equal(batches[2][0].numpy(), X[8:])


def test_drop_last():
    loader = DataLoader(np.zeros((10, 1)), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [b[0].shape for b in loader] == [(4, 1), (4, 1)]
    assert len(DataLoader(np.zeros((8, 1)), batch_size=4, drop_last=True)) == 2


def test_dtypes_floats_kept_integer_labels_stay_integer():
    X64, X32 = np.zeros((4, 2)), np.zeros((4, 2), dtype=np.float32)
    labels, flags = np.arange(4, dtype=np.int32), np.array([True, False, True, False])
    x64, x32, y, f = next(iter(DataLoader(X64, X32, labels, flags, batch_size=2)))
    assert (x64.dtype, x32.dtype, y.dtype, f.dtype) == (np.float64, np.float32, np.int32, np.float32)
    (lists,) = next(iter(DataLoader([[1, 2], [3, 4]], batch_size=2)))
    assert lists.dtype == np.int64  # a nested list of ints is an integer array, like labels


def test_shuffle_visits_every_sample_once_in_a_new_order_each_pass():
    y = np.arange(100)
    loader = DataLoader(y, batch_size=16, shuffle=True, seed=3)
    first = np.concatenate([b[0].numpy() for b in loader])
    second = np.concatenate([b[0].numpy() for b in loader])
    assert sorted(first.tolist()) == list(range(100)) and sorted(second.tolist()) == list(range(100))
    assert not np.array_equal(first, y) and not np.array_equal(first, second)


def test_rows_stay_aligned_across_arrays_when_shuffled():
    X = np.arange(50, dtype=np.float64) * 10.0
    for xb, yb in DataLoader(X, np.arange(50), batch_size=7, shuffle=True, seed=0):
        assert np.array_equal(xb.numpy(), yb.numpy() * 10.0)


def test_seed_and_manual_seed_make_shuffling_reproducible():
    y = np.arange(64)
    assert collect(DataLoader(y, batch_size=8, shuffle=True, seed=5)) == collect(DataLoader(y, batch_size=8, shuffle=True, seed=5))
    firefly.manual_seed(11)
    a = collect(DataLoader(y, batch_size=8, shuffle=True))
    firefly.manual_seed(11)
    b = collect(DataLoader(y, batch_size=8, shuffle=True))
    c = collect(DataLoader(y, batch_size=8, shuffle=True))
    assert a == b and b != c


def test_accepts_tensors():
    (batch,) = next(iter(DataLoader(Tensor(np.ones((3, 2))), batch_size=3)))
    assert batch.shape == (3, 2) and batch.dtype == np.float64


@pytest.mark.parametrize("args, kwargs, error, message", [
    ((), {"batch_size": 2}, ValueError, "at least one array"),
    ((np.zeros(5), np.zeros(4)), {"batch_size": 2}, ValueError, r"same first dimension, got shapes \(5,\), \(4,\)"),
    ((np.zeros(5),), {"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
    ((np.zeros(5),), {"batch_size": 2.0}, TypeError, "batch_size must be a positive int"),
    ((np.zeros(5),), {"batch_size": True}, TypeError, "got a bool"),
    ((np.float64(1.0),), {"batch_size": 1}, ValueError, "0-d"),
    ((np.array(["a", "b"]),), {"batch_size": 1}, TypeError, "must hold numbers"),
])
def test_misuse_is_explained(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        DataLoader(*args, **kwargs)


def test_batch_size_is_keyword_only():
    with pytest.raises(TypeError):
        DataLoader(np.zeros(4), 2)
