"""A small CNN on the UCI handwritten digits that ship with scikit-learn (1,797 8x8 images):
Conv2d, BatchNorm2d, ReLU, MaxPool2d, Dropout and Linear, trained with AdamW on a fixed
stratified 80/20 split. Reaches >= 98% held-out accuracy.

Run: python examples/digits_cnn.py [--epochs N] [--seed S] [--torch] [--plot FILE.png]
(``--torch`` trains the same model with PyTorch afterwards, for comparison; ``--plot`` writes
the training and held-out curves.) A progress bar shows each epoch's loss and throughput.
Needs scikit-learn (``pip install "firefly-dl[examples]"``, which also brings tqdm and
matplotlib).
"""

import argparse
import sys
import time

import numpy as np

from firefly.digits import (  # shared with the demo
    accuracy,
    batches,
    build_model,
    evaluate,
    load_split,
)


def train(epochs=12, seed=0, batch_size=64, lr=3e-3, verbose=True, history=None):
    """Train with firefly; returns (held-out accuracy, seconds of training) and appends each
    epoch's losses and accuracies to the lists of ``history`` (a dict) when given."""
    from _progress import EpochBar  # here: tests and benchmarks import this file for its model

    import firefly
    from firefly import nn
    from firefly.optim import AdamW

    X_train, X_test, y_train, y_test = load_split()
    firefly.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(nn)
    optimizer = AdamW(model.get_parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    start = time.perf_counter()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        total, seen = 0.0, 0
        bar = EpochBar(epoch + 1, epochs, len(X_train)) if verbose else None
        for idx in batches(len(X_train), batch_size, rng):
            optimizer.zero_grad()
            loss = loss_fn(model(firefly.Tensor(X_train[idx])), y_train[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            if bar is not None:
                bar.update(len(idx), total / seen)
        elapsed = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        if verbose or history is not None:
            train_accuracy = accuracy(model, X_train, y_train)
            test_loss, test_accuracy = evaluate(model, loss_fn, X_test, y_test)
        if history is not None:
            for name, value in [
                ("train loss", total / seen),
                ("held-out loss", test_loss),
                ("train accuracy", 100 * train_accuracy),
                ("held-out accuracy", 100 * test_accuracy),
            ]:
                history.setdefault(name, []).append(value)
        if verbose:
            print(
                f"Epoch [{epoch + 1}/{epochs}], loss: {total / seen:.4f}, train accuracy: "
                f"{100 * train_accuracy:.2f}%, held-out accuracy: {100 * test_accuracy:.2f}%, "
                f"time: {elapsed:.2f} s"
            )
    seconds = time.perf_counter() - start
    return accuracy(model, X_test, y_test), seconds


def train_torch(epochs=12, seed=0, batch_size=64, lr=3e-3, verbose=True):
    """The same model, data, batches and optimizer in PyTorch; returns (accuracy, seconds)."""
    import torch
    from torch import nn

    X_train, X_test, y_train, y_test = load_split()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(nn)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def accuracy(X, y):
        model.eval()
        with torch.no_grad():
            predictions = model(torch.from_numpy(X)).numpy().argmax(axis=1)
        model.train()
        return float(np.mean(predictions == y))

    start = time.perf_counter()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        for idx in batches(len(X_train), batch_size, rng):
            optimizer.zero_grad()
            loss = loss_fn(model(torch.from_numpy(X_train[idx])), torch.from_numpy(y_train[idx]))
            loss.backward()
            optimizer.step()
        if verbose:
            print(
                f"torch epoch [{epoch + 1}/{epochs}], "
                f"held-out accuracy: {100 * accuracy(X_test, y_test):.2f}%, "
                f"time: {time.perf_counter() - t0:.2f} s"
            )
    return accuracy(X_test, y_test), time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--torch", action="store_true", help="also train the same model with PyTorch"
    )
    parser.add_argument("--plot", metavar="FILE.png", help="write the training curves there")
    args = parser.parse_args(argv)
    if args.plot:  # checked now, not after training
        from _progress import require_matplotlib

        require_matplotlib("digits_cnn.py")
    if args.torch:  # checked now, not after firefly's training
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit(
                "digits_cnn.py --torch needs PyTorch, which is not installed: "
                "pip install torch==2.13.0"
            )
    print(
        "firefly: digits CNN (Conv2d-BatchNorm2d-ReLU x2, MaxPool2d, Dropout, Linear), AdamW, "
        "1437 training / 360 held-out images"
    )
    history = {} if args.plot else None
    accuracy, seconds = train(args.epochs, args.seed, history=history)
    print(f"final held-out accuracy: {100 * accuracy:.2f}% | training time: {seconds:.1f} s")
    if args.plot:
        from _progress import plot_curves

        plot_curves(args.plot, history, "firefly: digits CNN, AdamW")
        print(f"curves written to {args.plot}")
    if args.torch:
        accuracy, seconds = train_torch(args.epochs, args.seed)
        print(
            f"torch final held-out accuracy: {100 * accuracy:.2f}% | training time: {seconds:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
