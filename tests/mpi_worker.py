"""Programs that tests/test_distributed.py runs under ``mpiexec -n 2``:
``python mpi_worker.py MODE ARGS``, or several modes in one job with
``python mpi_worker.py several MODE:ARG:... MODE ...``.

Each mode checks what it can on every rank with plain asserts (a failed assert aborts the whole
job through firefly.distributed's exception hook, so the test sees a non-zero exit) and rank 0
prints one ``OK <mode>`` line at the end.
"""

import os
import sys

import numpy as np

import firefly
from firefly import distributed as dist
from firefly import nn
from firefly.data import DataLoader, DistributedSampler, TensorDataset
from firefly.nn.optimizers import BaseOptimizer
from firefly.optim import SGD, Adam


def classifier(dtype, seed):
    firefly.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16, dtype=dtype), nn.Tanh(), nn.Linear(16, 3, dtype=dtype))


def flat_weights(model):
    return np.concatenate([p.numpy().ravel() for p in model.parameters()])


class SeedSGD(BaseOptimizer):
    """The seed document's optimizer: no flat buffers, no hooks."""

    def __init__(self, parameters, lr):
        super().__init__(parameters)
        self.lr = lr

    def step(self):
        for param in self.parameters:
            param.update(param.tensor - self.lr * param.tensor.grad)


def make_optimizer(name, params):
    if name == "seed-sgd":
        return SeedSGD(params, lr=0.1)
    if name == "sgd":
        return SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3)
    return Adam(params, lr=0.01)


def assert_same_on_every_rank(array, what):
    gathered = dist.all_gather(np.ascontiguousarray(array))
    for other, value in enumerate(gathered[1:], start=1):
        assert np.array_equal(value, gathered[0]), f"{what}: rank {other} differs from rank 0"


def equivalence(dtype_name, optimizer_name, style):
    """2 ranks on halves of each batch end with the weights of 1 process on the whole batch."""
    dtype = np.dtype(dtype_name)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(96, 6)).astype(dtype), rng.integers(0, 3, size=96)
    dataset, loss_fn = TensorDataset(X, y), nn.CrossEntropyLoss()
    world, rank = dist.world_size(), dist.rank()
    assert world == 2

    # The single-process reference, computed on every rank: whole batches of 16, same order.
    reference = classifier(dtype, seed=0)
    ref_optimizer = make_optimizer(optimizer_name, reference.get_parameters())
    ref_sampler = DistributedSampler(dataset, num_replicas=1, rank=0, seed=3)
    ref_loader = DataLoader(dataset, batch_size=16, sampler=ref_sampler)

    # Rank 1 starts from other weights: DDP must replace them with rank 0's.
    model = classifier(dtype, seed=rank)
    if style in ("ddp", "closure"):  # PyTorch's habit: the optimizer attaches at its first step
        ddp = dist.DistributedDataParallel(model)
        optimizer = make_optimizer(optimizer_name, ddp.parameters())
    elif style == "ddp-ctor":
        optimizer = make_optimizer(optimizer_name, model.get_parameters())
        ddp = dist.DistributedDataParallel(model, optimizer)
    elif style == "bucketed":  # buckets of 256 bytes: many Allreduces per buffer
        optimizer = make_optimizer(optimizer_name, model.get_parameters())
        ddp = dist.DistributedDataParallel(model, optimizer, bucket_cap_mb=256 / 2**20)
    elif style == "manual":  # an optimizer without flat buffers: average_gradients() by hand
        ddp = dist.DistributedDataParallel(model)
        optimizer = make_optimizer(optimizer_name, ddp.parameters())
    else:  # Horovod style: DistributedOptimizer broadcasts and averages; DDP only runs forward
        optimizer = dist.DistributedOptimizer(
            make_optimizer(optimizer_name, model.get_parameters())
        )
        ddp = dist.DistributedDataParallel(model)
    assert np.array_equal(flat_weights(model), flat_weights(reference)), (
        "DDP did not broadcast rank 0's weights"
    )
    sampler = DistributedSampler(dataset, seed=3)
    loader = DataLoader(dataset, batch_size=8, sampler=sampler)

    steps = 0
    for epoch in range(3):
        sampler.set_epoch(epoch)
        ref_sampler.set_epoch(epoch)
        for (xb, yb), (ref_x, ref_y) in zip(loader, ref_loader):
            optimizer.zero_grad()
            if style == "closure":  # gradients computed inside step(): averaged after the closure
                optimizer.step(lambda xb=xb, yb=yb: loss_fn(ddp(xb), yb).backward())
            else:
                loss_fn(ddp(xb), yb).backward()
                if style == "manual":
                    ddp.average_gradients()
                optimizer.step()
            ref_optimizer.zero_grad()
            loss_fn(reference(ref_x), ref_y).backward()
            ref_optimizer.step()
            assert_same_on_every_rank(flat_weights(model), f"weights after step {steps}")
            steps += 1
    assert steps == 18
    mine, theirs = flat_weights(model), flat_weights(reference)
    tolerance = 1e-12 if dtype == np.float64 else 2e-5
    error = np.max(np.abs(mine - theirs))
    assert error <= tolerance * max(1.0, np.max(np.abs(theirs))), (
        f"max |2 ranks - 1 process| = {error}"
    )
    if rank == 0:
        print(f"OK equivalence {dtype_name} {optimizer_name} {style} max_error={error:.3g}")


def accumulation():
    """no_sync: micro-batches accumulate locally; one averaging at the step outside it."""
    dtype = np.float64
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(64, 6)), rng.integers(0, 3, size=64)
    rank, loss_fn = dist.rank(), nn.CrossEntropyLoss()
    reference = classifier(dtype, seed=0)
    ref_optimizer = SGD(reference.get_parameters(), lr=0.1)
    model = classifier(dtype, seed=0)
    ddp = dist.DistributedDataParallel(model)
    optimizer = SGD(ddp.parameters(), lr=0.1)
    ddp.attach(optimizer)
    # Each step: 2 micro-batches of 8 rows; rank r takes rows r::2 of each 16-row micro-batch.
    for step in range(2):
        optimizer.zero_grad()
        ref_optimizer.zero_grad()
        rows = [np.arange(16 * (2 * step + m), 16 * (2 * step + m + 1)) for m in range(2)]
        with ddp.no_sync():
            loss_fn(ddp(X[rows[0][rank::2]]), y[rows[0][rank::2]]).backward()
        local = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
        loss_fn(ddp(X[rows[1][rank::2]]), y[rows[1][rank::2]]).backward()
        optimizer.step()
        for r in rows:
            loss_fn(reference(X[r]), y[r]).backward()
        ref_optimizer.step()
        gathered = dist.all_gather(local)
        assert not np.array_equal(gathered[0], gathered[1]), (
            "no_sync averaged the micro-batch gradients"
        )
    error = np.max(np.abs(flat_weights(model) - flat_weights(reference)))
    assert error <= 1e-12, f"max |2 ranks - 1 process| = {error}"
    if rank == 0:
        print(f"OK accumulation max_error={error:.3g}")


def collectives():
    rank, world = dist.rank(), dist.world_size()
    x = np.array([1.0, 2.0]) * (rank + 1)
    assert dist.all_reduce(x) is x and x.tolist() == [3.0, 6.0]
    t = firefly.Tensor(np.array([1.0, -1.0]) * (rank + 1))
    dist.all_reduce(t, op="mean")
    assert t.numpy().tolist() == [1.5, -1.5]
    m = np.array([rank, -rank], dtype=np.int64)
    assert dist.all_reduce(m, op="max").tolist() == [1, 0]
    m = np.array([rank, -rank], dtype=np.int64)
    assert dist.all_reduce(m, op="min").tolist() == [0, -1]
    b = np.full(3, float(rank))
    dist.broadcast(b, root=1)
    assert b.tolist() == [1.0, 1.0, 1.0]
    parts = dist.all_gather(firefly.Tensor(np.full(2, float(rank), dtype=np.float32)))
    assert [p.numpy().tolist() for p in parts] == [[0.0, 0.0], [1.0, 1.0]] and parts[
        1
    ].dtype == np.float32
    # DistributedSampler, default replicas and rank: disjoint equal shards that cover the data,
    # reshuffled per epoch.
    sampler = DistributedSampler(range(11), seed=5)
    assert (sampler.num_replicas, sampler.rank) == (world, rank)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        shards = dist.all_gather(np.array(list(sampler)))
        assert len(shards[0]) == len(shards[1]) == 6
        assert set(shards[0].tolist()) | set(shards[1].tolist()) == set(range(11))
        assert (
            len(set(shards[0].tolist()) & set(shards[1].tolist())) <= 1
        )  # one index pads by wrapping
        epochs.append(shards)
    assert not np.array_equal(epochs[0][0], epochs[1][0]), "set_epoch did not reshuffle"
    if rank == 0:
        print("OK collectives")


def checkpoint(folder):
    model = classifier(np.float64, seed=dist.rank())
    optimizer = SGD(model.get_parameters(), lr=0.1)
    ddp = dist.DistributedDataParallel(model, optimizer)
    path = os.path.join(folder, "ckpt.npz")
    dist.save({"model": ddp.module.state_dict(), "step": 7}, path)
    # The file exists for every rank right after the call, and only rank 0 wrote (no temp files
    # left).
    assert os.listdir(folder) == ["ckpt.npz"], os.listdir(folder)
    state = firefly.load(path)
    assert state["step"] == 7
    fresh = classifier(np.float64, seed=10 + dist.rank())
    fresh.load_state_dict(state["model"])
    assert np.array_equal(flat_weights(fresh), flat_weights(model))
    assert_same_on_every_rank(flat_weights(fresh), "loaded weights")
    if dist.rank() == 0:
        print("OK checkpoint")


def mismatch():
    """A rank that built another model: every rank gets the same error, naming the rank and the
    parameter."""
    firefly.manual_seed(0)
    width = 16 if dist.rank() == 0 else 17
    model = nn.Sequential(
        nn.Linear(6, width, dtype=np.float64), nn.Tanh(), nn.Linear(width, 3, dtype=np.float64)
    )
    try:
        dist.DistributedDataParallel(model)
    except ValueError as exc:
        message = str(exc)
    else:
        raise AssertionError("DistributedDataParallel accepted different models")
    messages = dist.all_gather(
        np.frombuffer(message.ljust(400).encode()[:400], dtype=np.uint8).copy()
    )
    assert all(np.array_equal(m, messages[0]) for m in messages), (
        "the ranks reported different errors"
    )
    if dist.rank() == 0:
        print("OK mismatch: " + message)


def buffers():
    """Buffers (when the module has them) are broadcast from rank 0 along with the parameters."""

    class WithBuffer(nn.Module):
        def __init__(self, value):
            super().__init__()
            self.fc = nn.Linear(2, 2, dtype=np.float64)
            self.running = firefly.Tensor(np.full(3, value, dtype=np.float32))

        def named_buffers(self):
            yield "running", self.running

        def forward(self, x):
            return self.fc(x)

    model = WithBuffer(float(dist.rank() + 1))
    dist.DistributedDataParallel(model)
    assert model.running.numpy().tolist() == [1.0, 1.0, 1.0], model.running
    if dist.rank() == 0:
        print("OK buffers")


def unattached():
    """DDP with parameters updated by hand, by no optimizer it could attach to: the next forward
    raises instead of letting the ranks drift apart."""
    loss_fn = nn.CrossEntropyLoss()
    model = classifier(np.float64, seed=0)
    ddp = dist.DistributedDataParallel(model)
    X, y = np.random.default_rng(dist.rank()).normal(size=(4, 6)), np.array([0, 1, 2, 0])
    loss_fn(ddp(X), y).backward()
    for p in model.parameters():
        p.update(p.tensor.to_numpy() - 0.1 * p.tensor.grad.to_numpy())
    try:
        ddp(X)
    except RuntimeError as exc:
        assert "no gradients were averaged" in str(exc) and "attach(optimizer)" in str(exc), exc
    else:
        raise AssertionError("an unattached DDP trained without averaging")
    if dist.rank() == 0:
        print("OK unattached")


def failure():
    """Rank 1 raises while rank 0 waits in a collective: the job must abort, not hang."""
    if dist.rank() == 1:
        raise RuntimeError("deliberate failure on rank 1")
    x = np.ones(4)
    dist.all_reduce(x)  # rank 1 never joins
    print("rank 0 got past the collective")


def early_failure():
    """Rank 1 raises before it ever uses MPI, while rank 0 waits in a collective."""
    if os.environ.get("PMI_RANK") == "1":
        raise RuntimeError("deliberate failure on rank 1 before MPI started")
    x = np.ones(4)
    dist.all_reduce(x)
    print("rank 0 got past the collective")


MODES = {
    "equivalence": equivalence,
    "accumulation": accumulation,
    "collectives": collectives,
    "checkpoint": checkpoint,
    "mismatch": mismatch,
    "unattached": unattached,
    "buffers": buffers,
    "early_failure": early_failure,
    "failure": failure,
}


def several(*jobs):
    """Each ``MODE:ARG:...`` in turn, in this one job: a launch (two interpreters importing
    firefly and starting MPI) costs more CPU than most modes' own checks."""
    for job in jobs:
        mode, *args = job.split(":")
        MODES[mode](*args)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {**MODES, "several": several}[mode](*args)
