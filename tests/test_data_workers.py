"""DataLoader(num_workers=N): worker processes, with num_workers=0 and torch's DataLoader as the
oracles; every test that starts workers checks that none of them outlives it."""

import gc
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import numba
import numpy as np
import pytest

import firefly
from firefly import data_workers
from firefly.data import DataLoader, Dataset, IterableDataset, get_worker_info

Pair = namedtuple("Pair", "x y")


class Items(Dataset):
    """Item i: a float32 row of i's, i itself, and the pid of the process that loaded it."""

    def __init__(self, n=40, delay=0.0):
        self.n, self.delay = n, delay

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        return np.full(3, i, np.float32), i, os.getpid()


class Nested(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"pair": Pair(np.arange(i, i + 2), float(i)), "name": f"item{i}"}


class Fails(Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, i):
        if i == 7:
            raise KeyError(f"no item {i} here")
        return np.float32(i)


class Dies(Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, i):
        if i == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return np.float32(i)


class DiesOnce(Dataset):
    """Item 3 kills its worker the first time only (a file marks that it happened)."""

    def __init__(self, flag):
        self.flag = flag

    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 3 and not self.flag.exists():
            self.flag.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return np.float32(i)


class Draws(Dataset):
    """Item i: the worker's seed and one draw from each generator a worker seeds."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        info = get_worker_info()
        return (
            info.seed,
            info.id,
            random.random(),
            np.random.random(),
            float(firefly.rand(1).numpy()[0]),
        )


class Sharded(IterableDataset):
    """range(n), each worker taking every num_workers-th number (torch's documented idiom)."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        if info is None:
            return iter(range(self.n))
        return iter(range(info.id, self.n, info.num_workers))


class Exps(Dataset):
    """A firefly op large enough to run its parallel (prange) kernel, in the worker."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        x = firefly.Tensor(np.full(400_000, 0.5, np.float32))
        return float(x.exp().sum().numpy())


def _shared_blocks():
    return {p.name for p in Path("/dev/shm").glob("psm_*")}


def _running(pid):
    """True while ``pid`` is a process that has not ended (a zombie has ended: it waits only
    for its parent, or init, to read its exit status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _gone(pids, within=0.0):
    """True once none of ``pids`` is running, waiting at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while any(_running(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def no_leftovers():
    """Fails a test that leaves a shared memory block behind."""
    before = _shared_blocks()
    yield
    assert _shared_blocks() - before == set()


def _arrays(batches):
    return [[np.asarray(f.numpy() if hasattr(f, "numpy") else f) for f in b] for b in batches]


# ----------------------------------------------------------------------------- batches
@pytest.mark.parametrize("shuffle", [False, True])
def test_same_batches_as_in_process_and_loaded_by_other_processes(shuffle, no_leftovers):
    kwargs = dict(batch_size=6, shuffle=shuffle, seed=3)
    expected = list(DataLoader(Items(), **kwargs))
    got = list(DataLoader(Items(), num_workers=2, **kwargs))
    assert len(got) == len(expected) == 7
    for (x0, i0, _), (x1, i1, _) in zip(expected, got):
        assert x1.dtype == np.float32 and i1.dtype == np.int64
        assert np.array_equal(x0.numpy(), x1.numpy()) and np.array_equal(i0.numpy(), i1.numpy())
    loaders = {int(p) for _, _, pids in got for p in pids.numpy()}
    assert len(loaders) == 2 and os.getpid() not in loaders
    assert _gone(loaders)


def test_nested_batches_strings_and_unbatched_items(no_leftovers):
    first = next(iter(DataLoader(Nested(), batch_size=4, num_workers=2)))
    assert first["name"] == ["item0", "item1", "item2", "item3"]
    pair = first["pair"]
    assert type(pair) is Pair and pair.x.numpy().tolist() == [[0, 1], [1, 2], [2, 3], [3, 4]]
    assert pair.y.dtype == np.float64 and pair.y.numpy().tolist() == [0, 1, 2, 3]
    unbatched = list(DataLoader(Items(5), batch_size=None, num_workers=2))
    assert [int(i) for _, i, _ in unbatched] == [0, 1, 2, 3, 4]
    assert all(isinstance(x, firefly.Tensor) and x.shape == (3,) for x, _, _ in unbatched)


def test_tensor_dataset_and_drop_last_and_in_order_false(no_leftovers):
    X, y = np.random.default_rng(0).random((50, 4)), np.arange(50)
    expected = _arrays(DataLoader(X, y, batch_size=8, drop_last=True))
    got = _arrays(DataLoader(X, y, batch_size=8, drop_last=True, num_workers=2))
    assert len(got) == len(expected) == 6
    assert all(np.array_equal(a, b) for e, g in zip(expected, got) for a, b in zip(e, g))
    unordered = DataLoader(X, y, batch_size=8, num_workers=3, in_order=False)
    labels = sorted(int(v) for _, yb in unordered for v in yb.numpy())
    assert labels == list(range(50))


def _plain(batch):
    return batch.numpy().tolist() if hasattr(batch, "numpy") else batch


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_iterable_dataset_interleaves_workers_as_torch_does(no_leftovers):
    torch = pytest.importorskip("torch")

    class TorchSharded(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            return iter(range(info.id, 23, info.num_workers))

    for workers, batch_size in [(2, 4), (3, 5), (3, None)]:
        theirs = torch.utils.data.DataLoader(
            TorchSharded(), batch_size=batch_size, num_workers=workers
        )
        ours = DataLoader(Sharded(23), batch_size=batch_size, num_workers=workers)
        assert [_plain(b) for b in ours] == [_plain(b) for b in theirs]


def test_batches_travel_through_shared_memory_not_pickled(no_leftovers):
    batch = [firefly.Tensor(np.ones((512, 1024), np.float32)), np.arange(10), "label", 3]
    name, layout, structure = data_workers.to_shared(batch)
    assert len(pickle.dumps(("batch", 1, 0, (name, layout, structure)))) < 1000
    assert name in _shared_blocks()
    back = data_workers.from_shared(name, layout, structure)
    assert name not in _shared_blocks()  # the receiver unlinked it
    assert isinstance(back[0], firefly.Tensor) and back[0].dtype == np.float32
    assert np.array_equal(back[0].numpy(), np.ones((512, 1024))) and back[1].tolist() == list(
        range(10)
    )
    assert back[2:] == ["label", 3]


# ----------------------------------------------------------------------------- seeding
def test_each_worker_seeded_with_base_seed_plus_id_as_torch():
    loader = DataLoader(Draws(), batch_size=None, num_workers=2, seed=11)
    rows = list(loader)
    again = list(DataLoader(Draws(), batch_size=None, num_workers=2, seed=11))
    assert rows == again  # the same generator state gives the same worker seeds and draws
    by_worker = {row[1]: row for row in rows[:2]}  # batch i comes from worker i % 2
    base = by_worker[0][0]
    assert by_worker[1][0] == base + 1
    for worker_id, (seed, _, py, npy, ff) in by_worker.items():
        assert py == random.Random(seed).random()
        words = np.random.SeedSequence([worker_id, base]).generate_state(4)
        assert npy == np.random.RandomState(words).random_sample()
        own = firefly.Generator().manual_seed(seed)
        assert ff == float(firefly.rand(1, generator=own).numpy()[0])
    other = list(DataLoader(Draws(), batch_size=None, num_workers=2, seed=12))
    assert other[0][0] != base


def _record_worker(worker_id):
    np.random.seed(1000 + worker_id)  # worker_init_fn runs after the seeding, and wins


def test_worker_init_fn_runs_after_seeding():
    rows = list(DataLoader(Draws(), batch_size=None, num_workers=2, worker_init_fn=_record_worker))
    assert rows[0][3] == np.random.RandomState(1000).random_sample()
    assert rows[1][3] == np.random.RandomState(1001).random_sample()


# ----------------------------------------------------------------------------- errors
def test_worker_exception_raised_here_with_its_traceback(no_leftovers):
    with pytest.raises(KeyError) as caught:
        for _ in DataLoader(Fails(), batch_size=2, num_workers=2):
            pass
    text = str(caught.value)
    assert "Caught KeyError in DataLoader worker process 1" in text
    assert "no item 7 here" in text and "__getitem__" in text and "Traceback" in text


def _failing_init(worker_id):
    raise ValueError(f"init of worker {worker_id} failed")


def test_worker_init_fn_exception_is_raised():
    with pytest.raises(ValueError, match="init of worker . failed"):
        list(DataLoader(Items(), batch_size=4, num_workers=2, worker_init_fn=_failing_init))


def test_worker_killed_by_a_signal_gives_a_clear_error():
    with pytest.raises(
        RuntimeError, match=r"DataLoader worker 1 \(pid \d+\) was killed by SIGKILL"
    ):
        list(DataLoader(Dies(), batch_size=1, num_workers=2))


def test_persistent_workers_are_replaced_after_one_dies(tmp_path, no_leftovers):
    loader = DataLoader(
        DiesOnce(tmp_path / "died"), batch_size=2, num_workers=2, persistent_workers=True
    )
    with pytest.raises(RuntimeError, match="was killed by SIGKILL"):
        list(loader)
    assert [b.numpy().tolist() for b in loader] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_timeout_raises_and_stops_the_workers():
    loader = DataLoader(Items(8, delay=2.0), batch_size=4, num_workers=2, timeout=0.3)
    it = iter(loader)
    pids = it.pool.pids
    with pytest.raises(RuntimeError, match="timed out after 0.3 seconds"):
        next(it)
    assert _gone(pids)


def test_bad_settings():
    with pytest.raises(ValueError, match="num_workers must be a non-negative int, got -1"):
        DataLoader(Items(), num_workers=-1)
    with pytest.raises(ValueError, match="prefetch_factor option could only be specified"):
        DataLoader(Items(), prefetch_factor=2)
    with pytest.raises(ValueError, match="persistent_workers option needs num_workers > 0"):
        DataLoader(Items(), persistent_workers=True)
    with pytest.raises(ValueError, match="multiprocessing_context can only be used"):
        DataLoader(Items(), multiprocessing_context="fork")
    with pytest.raises(ValueError, match="prefetch_factor must be a positive int, got 0"):
        DataLoader(Items(), num_workers=1, prefetch_factor=0)
    with pytest.raises(TypeError, match="worker_init_fn must be callable"):
        DataLoader(Items(), num_workers=1, worker_init_fn=3)
    loader = DataLoader(Items(4), batch_size=2, num_workers=1, pin_memory=True)
    assert loader.pin_memory and len(list(loader)) == 2  # accepted; nothing to pin on the CPU


# ----------------------------------------------------------------------------- shutdown
def _pids(batch):
    return {int(p) for p in batch[2].numpy()}


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt during the test, as in a terminal, also where the suite
    runs as a background job of a non-interactive shell (which starts it with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_no_worker_left_after_break_exception_interrupt_or_gc(no_leftovers, ctrl_c_raises):
    loader = DataLoader(Items(200), batch_size=2, num_workers=2)
    pids = set()
    for batch in loader:
        pids |= _pids(batch)
        if len(pids) == 2:
            break
    assert len(pids) == 2 and _gone(pids)

    pids = set()
    with pytest.raises(ZeroDivisionError):
        for batch in loader:
            pids |= _pids(batch)
            if len(pids) == 2:
                raise ZeroDivisionError("in the loop body")
    assert len(pids) == 2 and _gone(pids)

    pids = set()
    with pytest.raises(KeyboardInterrupt):
        for batch in loader:
            pids |= _pids(batch)
            if len(pids) == 2:
                signal.raise_signal(signal.SIGINT)  # Ctrl-C, delivered to this process
    assert len(pids) == 2 and _gone(pids)

    it = iter(loader)
    pids = set(it.pool.pids)
    next(it)
    del it
    gc.collect()
    assert len(pids) == 2 and _gone(pids)


def test_persistent_workers_serve_every_epoch_then_end_with_the_loader(no_leftovers):
    kwargs = dict(batch_size=5, shuffle=True, seed=4)
    reference = DataLoader(Items(20), **kwargs)
    loader = DataLoader(Items(20), num_workers=2, persistent_workers=True, **kwargs)
    pids = set()
    for _ in range(3):
        expected = [b[1].numpy().tolist() for b in reference]
        batches = list(loader)
        assert [b[1].numpy().tolist() for b in batches] == expected
        pids |= {p for b in batches for p in _pids(b)}
    assert len(pids) == 2  # the same two processes served all three epochs
    partial = iter(loader)
    next(partial)  # a pass left unfinished: its batches in flight are dropped by the next
    next(iter(reference))
    assert [b[1].numpy().tolist() for b in loader] == [b[1].numpy().tolist() for b in reference]
    del partial, loader
    gc.collect()
    assert _gone(pids)


# ----------------------------------------------------------------------------- start methods
def test_workers_run_parallel_kernels_after_the_parent_has(no_leftovers):
    """Numba's threading layer has started in this process before the workers fork: they must
    not deadlock in a parallel kernel of their own."""
    model = firefly.nn.Sequential(firefly.nn.Linear(512, 512), firefly.nn.Tanh())
    model(firefly.Tensor(np.ones((1024, 512), np.float32))).exp().sum().backward()
    firefly.Tensor(np.full(400_000, 0.5, np.float32)).exp()
    assert numba.threading_layer() in ("tbb", "workqueue", "omp")
    expected = 400_000 * float(np.exp(np.float32(0.5)))
    for value in DataLoader(Exps(), batch_size=None, num_workers=2, timeout=120):
        assert value == pytest.approx(expected, rel=1e-5)


def test_spawn_start_method(no_leftovers):
    loader = DataLoader(Items(12), batch_size=4, num_workers=2, multiprocessing_context="spawn")
    assert [b[1].numpy().tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]


ORPHANS = """
import os, sys, time
import numpy as np
from firefly.data import DataLoader

class Slow:
    def __len__(self):
        return 1000
    def __getitem__(self, i):
        time.sleep(0.01)
        return np.float32(i), os.getpid()

seen = set()
for _, pids in DataLoader(Slow(), batch_size=2, num_workers=2):
    seen.update(pids.numpy().tolist())
    if len(seen) == 2:  # a batch from each worker
        print(*sorted(seen), flush=True)
        os._exit(0)  # the main process ends without any cleanup, as if killed
"""


def test_workers_end_when_the_main_process_dies(run_python):
    result = run_python("-c", ORPHANS, timeout=120)
    assert result.returncode == 0, result.stderr
    pids = [int(p) for p in result.stdout.split()]
    # each worker notices within its poll interval that its parent has gone
    assert len(pids) == 2 and _gone(pids, within=10.0)


CTRL_C = """
import os, signal, time
import numpy as np
from firefly.data import DataLoader

# Ctrl-C raises here as in a terminal's foreground job, also when the suite runs as a
# background job of a non-interactive shell, which starts its children with SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)

class Slow:
    def __len__(self):
        return 100000
    def __getitem__(self, i):
        time.sleep(0.01)
        return np.float32(i), os.getpid()

seen = set()
try:
    for _, pids in DataLoader(Slow(), batch_size=2, num_workers=2):
        seen.update(pids.numpy().tolist())
        if len(seen) == 2:
            print(*sorted(seen), flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_to_the_process_group_ends_the_loop_and_the_workers(repo_root):
    child = subprocess.Popen(
        [sys.executable, "-c", CTRL_C],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(repo_root)),
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    pids = [int(p) for p in child.stdout.readline().split()]
    os.killpg(child.pid, signal.SIGINT)  # what Ctrl-C does: every process of the group
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and out.strip() == "interrupted", out + err
    assert "KeyboardInterrupt" not in err  # no worker printed a traceback of its own
    assert len(pids) == 2 and _gone(pids, within=5.0)
