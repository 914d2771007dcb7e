"""firefly.data: datasets, samplers, default_collate and the DataLoader, with torch as the
oracle."""

from collections import namedtuple

import numpy as np
import pytest

import firefly
from firefly.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    default_collate,
)
from firefly.tensor import Tensor


def collect(loader):
    """The first field's batches as lists, one pass."""
    return [batch[0].numpy().tolist() for batch in loader]


# ----------------------------------------------------------------------------- arrays
def test_in_order_batches_with_a_short_last_one():
    X, y = np.arange(20, dtype=np.float64).reshape(10, 2), np.arange(10)
    loader = DataLoader(X, y, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    assert all(isinstance(b, list) and all(isinstance(t, Tensor) for t in b) for b in batches)
    assert [b[1].numpy().tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert np.array_equal(batches[2][0].numpy(), X[8:])


def test_drop_last():
    loader = DataLoader(np.zeros((10, 1)), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [b[0].shape for b in loader] == [(4, 1), (4, 1)]
    assert len(DataLoader(np.zeros((8, 1)), batch_size=4, drop_last=True)) == 2


def test_dtypes_floats_kept_integer_and_bool_labels_kept():
    X64, X32 = np.zeros((4, 2)), np.zeros((4, 2), dtype=np.float32)
    labels, flags = np.arange(4, dtype=np.int32), np.array([True, False, True, False])
    x64, x32, y, f = next(iter(DataLoader(X64, X32, labels, flags, batch_size=2)))
    assert (x64.dtype, x32.dtype, y.dtype, f.dtype) == (np.float64, np.float32, np.int32, np.bool_)


def test_shuffle_visits_every_sample_once_in_a_new_order_each_pass():
    y = np.arange(100)
    loader = DataLoader(y, batch_size=16, shuffle=True, seed=3)
    first = np.concatenate([b[0].numpy() for b in loader])
    second = np.concatenate([b[0].numpy() for b in loader])
    assert sorted(first.tolist()) == list(range(100)) and sorted(second.tolist()) == list(
        range(100)
    )
    assert not np.array_equal(first, y) and not np.array_equal(first, second)


def test_rows_stay_aligned_across_arrays_when_shuffled():
    X = np.arange(50, dtype=np.float64) * 10.0
    for xb, yb in DataLoader(X, np.arange(50), batch_size=7, shuffle=True, seed=0):
        assert np.array_equal(xb.numpy(), yb.numpy() * 10.0)


def test_seed_and_manual_seed_make_shuffling_reproducible():
    y = np.arange(64)
    assert collect(DataLoader(y, batch_size=8, shuffle=True, seed=5)) == collect(
        DataLoader(y, batch_size=8, shuffle=True, seed=5)
    )
    firefly.manual_seed(11)
    a = collect(DataLoader(y, batch_size=8, shuffle=True))
    firefly.manual_seed(11)
    b = collect(DataLoader(y, batch_size=8, shuffle=True))
    c = collect(DataLoader(y, batch_size=8, shuffle=True))
    assert a == b and b != c


def test_accepts_tensors():
    (batch,) = next(iter(DataLoader(Tensor(np.ones((3, 2))), batch_size=3)))
    assert batch.shape == (3, 2) and batch.dtype == np.float64


def test_default_batch_size_is_one_and_positional_arguments_follow_torch():
    data = [(float(i), i) for i in range(5)]
    assert len(DataLoader(data)) == 5
    # torch's order: batch_size, shuffle, sampler, batch_sampler, num_workers, collate_fn,
    # pin_memory, drop_last
    args = (2, False, None, None, 0, None, False, True)
    loader = DataLoader(data, *args)
    assert loader.batch_size == 2 and loader.drop_last and len(loader) == 2
    torch = pytest.importorskip("torch")
    reference = torch.utils.data.DataLoader(data, *args)
    assert (reference.batch_size, reference.drop_last, len(reference)) == (2, True, 2)


# ----------------------------------------------------------------------------- any dataset
def test_a_list_of_tuples_collates_like_torch():
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6)
    batches = list(DataLoader(list(zip(X, y)), batch_size=4))
    assert len(batches) == 2
    xb, yb = batches[0]
    assert xb.dtype == np.float32 and np.array_equal(xb.numpy(), X[:4])
    assert yb.dtype == np.int64 and yb.numpy().tolist() == [0, 1, 2, 3]
    assert batches[1][0].shape == (2, 2)


def test_python_numbers_dicts_namedtuples_and_strings():
    Pair = namedtuple("Pair", "a b")
    samples = [
        {
            "x": [float(i), 2.0 * i],
            "label": i,
            "flag": i % 2 == 0,
            "name": f"s{i}",
            "pair": Pair(i, 0.5),
        }
        for i in range(3)
    ]
    batch = default_collate(samples)
    assert set(batch) == {"x", "label", "flag", "name", "pair"}
    assert isinstance(batch["x"], list) and batch["x"][1].numpy().tolist() == [0.0, 2.0, 4.0]
    assert batch["x"][0].dtype == np.float64  # Python floats: float64, as torch
    assert batch["label"].dtype == np.int64 and batch["label"].numpy().tolist() == [0, 1, 2]
    assert batch["flag"].dtype == np.bool_ and batch["flag"].numpy().tolist() == [True, False, True]
    assert batch["name"] == ["s0", "s1", "s2"]
    assert isinstance(batch["pair"], Pair) and batch["pair"].b.numpy().tolist() == [0.5, 0.5, 0.5]


def test_mixed_python_numbers_make_a_float_batch():
    batch = default_collate([1, 2.5, True])
    assert batch.dtype == np.float64 and batch.numpy().tolist() == [1.0, 2.5, 1.0]
    assert default_collate([3, True]).dtype == np.int64


@pytest.mark.parametrize(
    "tensors, error, message",
    [
        ((), ValueError, "at least one tensor"),
        (
            (np.zeros(3), np.zeros(2)),
            ValueError,
            r"same first dimension, got shapes \(3,\), \(2,\)",
        ),
        ((np.float32(1.0),), ValueError, "tensor 0 is 0-d"),
        ((np.zeros(2), np.array(["a", "b"])), TypeError, "tensor 1 must hold numbers"),
    ],
)
def test_tensor_dataset_misuse(tensors, error, message):
    with pytest.raises(error, match=message):
        TensorDataset(*tensors)


def test_default_collate_matches_torch():
    pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")
    from torch.utils.data import default_collate as torch_collate

    rng = np.random.default_rng(0)
    samples = [
        (
            rng.normal(size=(3,)).astype(np.float32),
            int(rng.integers(10)),
            {"w": float(rng.normal())},
        )
        for _ in range(5)
    ]
    ours, theirs = default_collate(samples), torch_collate(samples)
    assert isinstance(ours, list) and isinstance(theirs, list)
    for mine, torchs in [
        (ours[0], theirs[0]),
        (ours[1], theirs[1]),
        (ours[2]["w"], theirs[2]["w"]),
    ]:
        assert mine.dtype == np.dtype(str(torchs.dtype).replace("torch.", ""))
        assert np.array_equal(mine.numpy(), torchs.numpy())


def test_a_custom_dataset():
    class Squares(Dataset):
        def __len__(self):
            return 7

        def __getitem__(self, i):
            return np.array([i], dtype=np.float64), i * i

    xs, ys = zip(
        *[
            (xb.numpy()[:, 0].tolist(), yb.numpy().tolist())
            for xb, yb in DataLoader(Squares(), batch_size=3)
        ]
    )
    assert list(xs) == [[0, 1, 2], [3, 4, 5], [6]] and list(ys) == [[0, 1, 4], [9, 16, 25], [36]]


def test_collate_fn_gets_the_list_of_items():
    loader = DataLoader(list(range(5)), batch_size=2, collate_fn=lambda items: tuple(items))
    assert list(loader) == [(0, 1), (2, 3), (4,)]


def test_tensor_dataset_items_and_length():
    ds = TensorDataset(np.arange(6.0).reshape(3, 2), np.array([7, 8, 9]))
    assert len(ds) == 3
    x, y = ds[1]
    assert x.numpy().tolist() == [2.0, 3.0] and y.dtype == np.int64 and y.item() == 8


# ----------------------------------------------------------------------------- samplers
def test_sequential_and_random_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    order = list(RandomSampler(range(20), seed=1))
    assert sorted(order) == list(range(20)) and order != list(range(20))
    assert order == list(RandomSampler(range(20), seed=1))


@pytest.mark.parametrize(
    "length, replicas, drop_last",
    [(10, 3, False), (10, 3, True), (9, 3, False), (2, 4, False), (11, 4, True)],
)
def test_distributed_sampler_shards_are_disjoint_equal_and_cover(length, replicas, drop_last):
    shards = [
        list(
            DistributedSampler(
                range(length), replicas, rank, shuffle=True, seed=4, drop_last=drop_last
            )
        )
        for rank in range(replicas)
    ]
    sizes = {len(s) for s in shards}
    assert len(sizes) == 1 and sizes.pop() == len(
        DistributedSampler(range(length), replicas, 0, drop_last=drop_last)
    )
    flat = [i for s in shards for i in s]
    if drop_last:
        assert len(set(flat)) == len(flat) == (length // replicas) * replicas
    else:
        assert set(flat) == set(range(length))  # padded by wrapping: every index, some twice
        assert len(flat) == -(-length // replicas) * replicas


def test_distributed_sampler_matches_torch_without_shuffle():
    pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")
    from torch.utils.data import DistributedSampler as TorchSampler

    for length, replicas, drop_last in [
        (10, 3, False),
        (10, 3, True),
        (2, 4, False),
        (13, 5, True),
    ]:
        for rank in range(replicas):
            ours = list(
                DistributedSampler(
                    range(length), replicas, rank, shuffle=False, drop_last=drop_last
                )
            )
            theirs = list(
                TorchSampler(range(length), replicas, rank, shuffle=False, drop_last=drop_last)
            )
            assert ours == theirs


def test_distributed_sampler_set_epoch_reshuffles_the_same_way_on_every_rank():
    samplers = [DistributedSampler(range(40), 2, rank, seed=7) for rank in range(2)]
    first = [list(s) for s in samplers]
    for s in samplers:
        s.set_epoch(1)
    second = [list(s) for s in samplers]
    assert first != second
    for shards in (first, second):
        assert sorted(shards[0] + shards[1]) == list(range(40))
    again = DistributedSampler(range(40), 2, 0, seed=7)
    again.set_epoch(1)
    assert list(again) == second[0]


def test_distributed_sampler_defaults_to_a_single_process_without_mpi():
    sampler = DistributedSampler(range(5), shuffle=False)
    assert (sampler.num_replicas, sampler.rank) == (1, 0) and list(sampler) == [0, 1, 2, 3, 4]


def test_dataloader_with_a_distributed_sampler():
    X = np.arange(10.0)
    parts = [
        np.concatenate(
            [
                b[0].numpy()
                for b in DataLoader(
                    X, batch_size=2, sampler=DistributedSampler(X, 2, r, shuffle=False)
                )
            ]
        )
        for r in range(2)
    ]
    assert parts[0].tolist() == [0, 2, 4, 6, 8] and parts[1].tolist() == [1, 3, 5, 7, 9]


# ----------------------------------------------------------------------------- misuse
@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        (
            (np.zeros(5), np.zeros(4)),
            {"batch_size": 2},
            ValueError,
            r"same first dimension, got shapes \(5,\), \(4,\)",
        ),
        ((np.zeros(5),), {"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
        ((np.zeros(5),), {"batch_size": 2.0}, TypeError, "batch_size must be a positive int"),
        ((np.zeros(5),), {"batch_size": True}, TypeError, "got a bool"),
        ((np.float64(1.0),), {"batch_size": 1}, ValueError, "0-d"),
        ((np.array(["a", "b"]),), {"batch_size": 1}, TypeError, "must hold numbers"),
        ((3,), {}, TypeError, "must have __len__ and __getitem__"),
        (
            (np.zeros(5), 2),
            {"batch_size": 2},
            TypeError,
            "multiple values for argument 'batch_size'",
        ),
        (
            ([1, 2],),
            {"shuffle": True, "sampler": [0, 1]},
            ValueError,
            "mutually exclusive with shuffle",
        ),
        (
            ([1, 2],),
            {"sampler": iter([0, 1])},
            TypeError,
            "sampler must be iterable and have a length",
        ),
        (([1, 2],), {"collate_fn": 3}, TypeError, "collate_fn must be callable"),
    ],
)
def test_misuse_is_explained(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        DataLoader(*args, **kwargs)


def test_batch_size_set_later_is_checked_with_the_same_message():
    loader = DataLoader(np.zeros(5), batch_size=2)
    with pytest.raises(ValueError, match="DataLoader: batch_size must be a positive int, got 0"):
        loader.batch_size = 0
    with pytest.raises(TypeError, match="DataLoader: batch_size must be a positive int, got str"):
        loader.batch_size = "4"
    loader.batch_size = 5
    assert len(loader) == 1 and next(iter(loader))[0].shape == (5,)


@pytest.mark.parametrize(
    "items, message",
    [
        (
            [np.zeros(2), np.zeros(2), np.zeros(3)],
            r"item 2: its shape \(3,\) differs from item 0's \(2,\)",
        ),
        ([(1.0, 2), (1.0, None)], r"item 1, field \[1\]: it is a NoneType but item 0 is a number"),
        ([(1.0, 2), (1.0,)], "item 1: it has 1 fields but item 0 has 2"),
        ([{"a": 1}, {"b": 1}], r"item 1: it has keys \['b'\] but item 0 has keys \['a'\]"),
        ([None, None], "item 0: it is a NoneType"),
        ([np.zeros(2), [0.0, 1.0]], "item 1: it is a list but item 0 is a ndarray"),
    ],
)
def test_bad_items_name_the_index(items, message):
    with pytest.raises(TypeError, match=message):
        list(DataLoader(items, batch_size=len(items)))


def test_bad_items_name_the_dataset_index_when_shuffled():
    items = [np.zeros(2)] * 9 + [np.zeros(3)]
    with pytest.raises(TypeError, match=r"cannot collate item 9: its shape \(3,\)"):
        list(DataLoader(items, batch_size=10, shuffle=True, seed=0))


def test_a_failing_getitem_names_the_index():
    class Broken(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            if i == 3:
                raise KeyError("no such sample")
            return float(i)

    with pytest.raises(KeyError) as info:
        list(DataLoader(Broken(), batch_size=2))
    assert "dataset[3]" in "".join(getattr(info.value, "__notes__", [])) or not hasattr(
        info.value, "add_note"
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"num_replicas": 2, "rank": 2}, ValueError, r"invalid rank 2, rank must be in \[0, 1\]"),
        ({"num_replicas": 0, "rank": 0}, ValueError, "num_replicas must be a positive int"),
        ({"num_replicas": 2, "rank": -1}, ValueError, "rank must be a non-negative int"),
    ],
)
def test_distributed_sampler_misuse(kwargs, error, message):
    with pytest.raises(error, match=message):
        DistributedSampler(range(4), **kwargs)
