"""``torch.utils.data`` ported by changing the prefix: random_split (lengths and fractions),
Subset, ConcatDataset, IterableDataset, the samplers, batch_sampler, batch_size=None and
Generators (issue 21). Random draws differ from torch's (another generator), so random
results are compared by their structure; deterministic ones by value."""

import numpy as np
import pytest
from idiom_twins import run_beside_torch

import firefly
import firefly.data
import firefly.utils.data

X = np.arange(20, dtype=np.float32).reshape(10, 2)
Y = np.arange(10)


def splits(torch, nn, data):
    dataset = torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(Y))
    g = torch.Generator().manual_seed(0)
    train, val = torch.utils.data.random_split(dataset, [0.7, 0.3], generator=g)
    a, b, c = torch.utils.data.random_split(range(7), [0.34, 0.33, 0.33])
    seen = sorted(int(y) for _, y in train) + sorted(int(y) for _, y in val)
    loader = torch.utils.data.DataLoader(train, batch_size=3, shuffle=True, generator=g)
    sizes = [len(xb) for xb, _ in loader]
    return {
        "lengths": (len(train), len(val), len(a), len(b), len(c)),
        "types": type(train).__name__,
        "covers": sorted(seen),
        "sizes": sizes,
        "loader_len": len(loader),
        "seed": g.initial_seed(),
    }


def fixed_order(torch, nn, data):
    utils = torch.utils.data
    dataset = utils.TensorDataset(torch.tensor(X), torch.tensor(Y))
    subset = utils.Subset(dataset, [9, 0, 4])
    both = utils.ConcatDataset([subset, utils.Subset(dataset, [1, 2])])
    batches = list(utils.BatchSampler(utils.SequentialSampler(range(7)), 3, drop_last=False))
    dropped = list(utils.BatchSampler(range(7), 3, True))
    by_batches = [yb for _, yb in utils.DataLoader(dataset, batch_sampler=[[3, 1], [7]])]
    unbatched = list(utils.DataLoader(subset, batch_size=None))

    class Stream(utils.IterableDataset):
        def __iter__(self):
            return iter(range(7))

    streamed = list(utils.DataLoader(Stream(), batch_size=3))
    streamed_drop = list(utils.DataLoader(Stream(), batch_size=3, drop_last=True))
    return {
        "subset": [subset[i][1] for i in range(len(subset))],
        "concat": [both[i][1] for i in range(len(both))] + [both[-1][1]],
        "cumulative": both.cumulative_sizes,
        "batches": batches,
        "dropped": dropped,
        "by_batches": by_batches,
        "unbatched": [(type(x).__name__, y) for x, y in unbatched],
        "streamed": streamed,
        "streamed_drop": streamed_drop,
        "add": len(subset + subset),
    }


def samplers(torch, nn, data):
    utils = torch.utils.data
    g = torch.Generator().manual_seed(3)
    weighted = list(utils.WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], 50, generator=g))
    no_repeat = list(utils.WeightedRandomSampler([1.0, 1.0, 0.0, 1.0], 3, replacement=False))
    subset = list(utils.SubsetRandomSampler([2, 4, 6], generator=g))
    replaced = list(utils.RandomSampler(range(5), replacement=True, num_samples=12, generator=g))
    longer = list(utils.RandomSampler(range(5), num_samples=12, generator=g))
    return {
        "weighted": (len(weighted), sorted(set(weighted)) in ([3], [1, 3])),
        "no_repeat": sorted(no_repeat),
        "subset": sorted(subset),
        "replaced": (len(replaced), all(0 <= i < 5 for i in replaced)),
        "longer": (len(longer), sorted(longer[:5]), sorted(longer[5:10])),
    }


def test_random_split_and_shuffling_match_torch_in_structure():
    result = run_beside_torch(splits)
    assert result["lengths"] == [7, 3, 3, 2, 2] and result["covers"] == list(range(10))


def test_deterministic_pipelines_match_torch():
    run_beside_torch(fixed_order)


def test_samplers_match_torch_in_structure():
    run_beside_torch(samplers)


def test_utils_data_is_the_data_module():
    assert firefly.utils.data.DataLoader is firefly.data.DataLoader
    assert firefly.utils.data.random_split is firefly.data.random_split
    from firefly.utils.data.dataloader import default_collate
    from firefly.utils.data.dataset import Subset
    from firefly.utils.data.sampler import BatchSampler

    assert (default_collate, Subset, BatchSampler) == (
        firefly.data.default_collate,
        firefly.data.Subset,
        firefly.data.BatchSampler,
    )


def test_a_seeded_generator_reproduces_every_random_draw():
    def draws(seed):
        g = firefly.Generator().manual_seed(seed)
        split = firefly.utils.data.random_split(range(10), [5, 5], generator=g)
        order = [int(b) for b in firefly.utils.data.DataLoader(range(6), shuffle=True, generator=g)]
        return (
            list(split[0].indices),
            order,
            firefly.randn(3, generator=g).tolist(),
            firefly.rand(2, generator=g).tolist(),
            firefly.randint(0, 9, (4,), generator=g).tolist(),
            firefly.randperm(5, generator=g).tolist(),
        )

    assert draws(11) == draws(11)
    assert draws(11) != draws(12)
    g = firefly.Generator()
    assert g.manual_seed(5) is g and g.initial_seed() == 5
    state = g.get_state()
    first = firefly.randn(2, generator=g).tolist()
    g.set_state(state)
    assert firefly.randn(2, generator=g).tolist() == first
    assert firefly.manual_seed(4) is firefly.default_generator
    assert firefly.initial_seed() == 4


def test_the_default_generator_is_untouched_by_a_private_one():
    firefly.manual_seed(0)
    expected = firefly.randn(3).tolist()
    firefly.manual_seed(0)
    firefly.randn(5, generator=firefly.Generator().manual_seed(1))
    assert firefly.randn(3).tolist() == expected


def test_fractions_follow_torch_remainder_rule():
    torch = pytest.importorskip("torch")
    for n, fractions in [(10, [0.5, 0.5]), (11, [0.3, 0.3, 0.4]), (3, [0.1, 0.9]), (7, [1.0])]:
        ours = [len(s) for s in firefly.utils.data.random_split(range(n), fractions)]
        theirs = [len(s) for s in torch.utils.data.random_split(range(n), fractions)]
        assert ours == theirs, (n, fractions)


def chained(torch, nn, data):
    utils = torch.utils.data

    class Count(utils.IterableDataset):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(self.n))

    both = Count(2) + Count(3)
    return {
        "type": type(both).__name__,
        "items": list(utils.ChainDataset([Count(2), Count(1)])),
        "added": list(both),
        "batches": list(utils.DataLoader(both, batch_size=2)),
        "worker": utils.get_worker_info(),
    }


def test_chained_iterable_datasets_match_torch():
    run_beside_torch(chained)
