"""Data-parallel training of an MLP on scikit-learn's 8x8 handwritten digits, over MPI.

    mpiexec -n 2 python examples/ddp_digits.py      # 2 ranks, each on half of every batch
    python examples/ddp_digits.py                   # 1 process: the same program, unchanged

Every rank builds the model, DistributedDataParallel gives all of them rank 0's weights, a
DistributedSampler hands each rank its shard of every epoch, and the optimizer's step averages
the gradients across ranks, so all ranks hold the same weights throughout. Only rank 0 prints.
Set NUMBA_NUM_THREADS and OPENBLAS_NUM_THREADS so that ranks x threads <= cores.
Needs scikit-learn for the data: pip install "firefly-dl[examples]".
"""

import sys

import numpy as np

import firefly
from firefly import distributed as dist
from firefly import nn
from firefly.data import DataLoader, DistributedSampler, TensorDataset
from firefly.digits import accuracy, load_split
from firefly.install import install_hint
from firefly.optim import Adam


def load_digits_split(seed):
    """(X_train, y_train, X_test, y_test): flat pixels in [0, 1], the digits examples' split."""
    try:
        X_train, X_test, y_train, y_test = load_split(seed)
    except ImportError:
        sys.exit(
            "examples/ddp_digits.py needs scikit-learn for the digits data: "
            + install_hint("examples")
        )
    return X_train.reshape(len(X_train), -1), y_train, X_test.reshape(len(X_test), -1), y_test


def main(epochs=20, batch_size=64, seed=0):
    rank, world = dist.rank(), dist.world_size()
    X_train, y_train, X_test, y_test = load_digits_split(seed)
    firefly.manual_seed(
        seed + rank
    )  # different on each rank on purpose: DDP makes rank 0's weights everyone's
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = Adam(model.get_parameters(), lr=3e-3)
    ddp = dist.DistributedDataParallel(model, optimizer)
    # The global batch is batch_size: each rank takes batch_size / world of it.
    sampler = DistributedSampler(TensorDataset(X_train, y_train), seed=seed)
    loader = DataLoader(
        TensorDataset(X_train, y_train), batch_size=batch_size // world, sampler=sampler
    )
    loss_fn = nn.CrossEntropyLoss()
    if rank == 0:
        print(
            f"digits: {len(X_train)} training and {len(X_test)} test images, {world} rank(s), "
            f"{len(loader)} steps per epoch of {batch_size // world} images per rank"
        )
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        total = 0.0
        for images, labels in loader:
            optimizer.zero_grad()
            loss = loss_fn(ddp(images), labels)
            loss.backward()
            optimizer.step()
            total += loss.item()
        mean_loss = dist.all_reduce(np.array([total / len(loader)]), op="mean")[0]
        if rank == 0:
            print(
                f"Epoch [{epoch + 1}/{epochs}], Loss: {mean_loss:.4f}, "
                f"test accuracy: {accuracy(model, X_test, y_test):.1%}"
            )
    final = accuracy(model, X_test, y_test)
    if rank == 0:
        print(f"final test accuracy: {final:.1%}")
    return final


if __name__ == "__main__":
    main()
