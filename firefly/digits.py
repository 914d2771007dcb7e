"""The UCI handwritten digits that ship with scikit-learn, and the small CNN trained on them:
shared by ``python -m firefly demo --model digits-cnn`` and ``examples/digits_cnn.py`` /
``examples/digits_mlp.py``, so that the demo and the examples train the same model on the same
split."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from types import ModuleType

    from firefly.nn import Module
    from firefly.tensor import Tensor


def load_split(seed: int = 0, dtype: DTypeLike = np.float32) -> list[np.ndarray]:
    """Images (N, 1, 8, 8) scaled to [0, 1] in ``dtype``, int64 labels; scikit-learn's
    stratified 80/20 ``train_test_split`` with ``random_state=seed``. Needs scikit-learn
    (``pip install "firefly-dl[examples]"``).

    The split is kept in the user's cache folder (``$XDG_CACHE_HOME/firefly/datasets``, else
    ``~/.cache/firefly/datasets``) and read from there by later processes: importing
    scikit-learn takes longer than training the CNN for an epoch. The file is keyed on
    scikit-learn's version, since the split is its algorithm's; a damaged file is rebuilt."""
    from importlib import metadata

    try:
        path = os.path.join(
            _datasets_folder(),
            f"digits-split-{seed}-sklearn-{metadata.version('scikit-learn')}.npz",
        )
    except metadata.PackageNotFoundError:
        path = None
    split = None if path is None else _read_split(path)
    if split is None:
        split = _split_with_sklearn(seed)
        if path is not None:
            _write_split(path, split)
    train_images, test_images, train_labels, test_labels = split
    # digits' pixels are the integers 0..16, so the cached uint8 values give the same floats
    # as scaling scikit-learn's float64 images.
    return [
        (train_images / 16.0).astype(dtype)[:, None, :, :],
        (test_images / 16.0).astype(dtype)[:, None, :, :],
        train_labels,
        test_labels,
    ]


def _datasets_folder() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "firefly", "datasets")


def _split_with_sklearn(seed: int) -> list[np.ndarray]:
    """(train images, test images, train labels, test labels): uint8 pixels, int64 labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.uint8)
    labels = digits.target.astype(np.int64)
    return train_test_split(images, labels, test_size=0.2, stratify=labels, random_state=seed)


def _read_split(path: str) -> list[np.ndarray] | None:
    """The split cached at ``path``, or None when the file is missing or is not a whole split
    of the 1,797 digits."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            split = [
                stored[key]
                for key in ("train_images", "test_images", "train_labels", "test_labels")
            ]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    train_images, test_images, train_labels, test_labels = split
    whole = (
        train_images.dtype == test_images.dtype == np.uint8
        and train_labels.dtype == test_labels.dtype == np.int64
        and train_images.shape[1:] == test_images.shape[1:] == (8, 8)
        and len(train_images) == len(train_labels)
        and len(test_images) == len(test_labels)
        and len(train_images) + len(test_images) == 1797
    )
    return split if whole else None


def _write_split(path: str, split: list[np.ndarray]) -> None:
    """Write atomically (a temporary file renamed into place), so that processes reading or
    writing at once never see half a file; a folder that cannot be written only skips it."""
    train_images, test_images, train_labels, test_labels = split
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, suffix=".npz")
    except OSError:
        return
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(
                file,
                train_images=train_images,
                test_images=test_images,
                train_labels=train_labels,
                test_labels=test_labels,
            )
        os.replace(temporary, path)
    except OSError:
        if os.path.exists(temporary):
            os.unlink(temporary)


def build_model(nn: ModuleType) -> Any:
    """The CNN, for firefly.nn or torch.nn alike (same names, same arguments)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def accuracy(model: Module, X: np.ndarray, y: np.ndarray) -> float:
    """The fraction of rows of ``X`` that ``model`` classifies as ``y``, in eval mode and
    without a graph; the model goes back to training mode after."""
    return evaluate(model, None, X, y)[1]


def evaluate(
    model: Module,
    loss_fn: Callable[[Tensor, np.ndarray], Tensor] | None,
    X: np.ndarray,
    y: np.ndarray,
) -> tuple[float | None, float]:
    """``(loss_fn's mean loss or None, accuracy)`` of ``model`` on ``X``, ``y``, in eval mode
    and without a graph; the model goes back to training mode after."""
    import firefly

    model.eval()
    with firefly.no_grad():
        logits = model(firefly.Tensor(X))
        loss = None if loss_fn is None else loss_fn(logits, y).item()
    model.train()
    return loss, float(np.mean(logits.numpy().argmax(axis=1) == y))


def batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Index arrays of one shuffled epoch over ``n`` samples."""
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def run(args: argparse.Namespace) -> int:
    """The demo: train the CNN, report each epoch and the median step time."""
    import firefly
    from firefly import nn
    from firefly.install import install_hint
    from firefly.optim import AdamW

    dtype = np.dtype(args.dtype)
    try:
        X_train, X_test, y_train, y_test = load_split(dtype=dtype)
    except ImportError:
        print(
            "demo --model digits-cnn needs scikit-learn for its bundled digits data: "
            f"{install_hint('examples')} (or pip install scikit-learn)"
        )
        return 1
    firefly.manual_seed(args.seed)
    model = build_model(nn).to(dtype)
    # AdamW's __init__(params, lr=..., weight_decay=...) is generated from its declared
    # hyperparameters when the class is created, so mypy sees only FusedOptimizer's.
    optimizer = AdamW(model.get_parameters(), lr=args.lr, weight_decay=1e-4)  # type: ignore[call-arg]
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(args.seed)

    print(
        f"firefly {firefly.__version__}: digits CNN ({dtype}, {args.epochs} epochs, "
        f"AdamW lr={args.lr}, "
        f"seed={args.seed}, batch 64, {len(X_train)} training / {len(X_test)} held-out images)"
    )
    step_times: list[float] = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        total = 0.0
        for idx in batches(len(X_train), 64, rng):
            s0 = time.perf_counter()
            optimizer.zero_grad()
            loss = loss_fn(model(firefly.Tensor(X_train[idx])), y_train[idx])
            loss.backward()
            optimizer.step()
            step_times.append(time.perf_counter() - s0)
            total += loss.item() * len(idx)
        elapsed = time.perf_counter() - t0
        print(
            f"Epoch [{epoch + 1}/{args.epochs}], loss: {total / len(X_train):.4f}, train accuracy: "
            f"{100 * accuracy(model, X_train, y_train):.2f}%, "
            f"held-out accuracy: {100 * accuracy(model, X_test, y_test):.2f}%, "
            f"time: {elapsed:.2f} s"
        )
    print(
        f"final held-out accuracy {100 * accuracy(model, X_test, y_test):.2f}% | median step "
        f"{statistics.median(step_times) * 1e3:.2f} ms (batch 64)"
    )
    return 0
