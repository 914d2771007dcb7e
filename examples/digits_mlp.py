"""An MLP on the UCI handwritten digits that ship with scikit-learn, on the same fixed
stratified 80/20 split as digits_cnn.py: Linear, ReLU, Dropout, AdamW. Reaches >= 97%
held-out accuracy.

Run: python examples/digits_mlp.py [--epochs N] [--seed S] [--plot FILE.png]
(``--plot`` writes the training and held-out curves.) A progress bar shows each epoch's loss
and throughput. Needs scikit-learn (``pip install "firefly-dl[examples]"``, which also brings
tqdm and matplotlib).
"""

import argparse
import sys
import time

import numpy as np
from _progress import EpochBar, plot_curves, require_matplotlib

from firefly.digits import accuracy, batches, evaluate, load_split


def train(epochs=30, seed=0, batch_size=64, lr=2e-3, verbose=True, history=None):
    """Returns (held-out accuracy, seconds of training); appends each epoch's losses and
    accuracies to the lists of ``history`` (a dict) when given."""
    import firefly
    from firefly import nn
    from firefly.optim import AdamW

    X_train, X_test, y_train, y_test = (
        a.reshape(len(a), -1) if a.ndim == 4 else a for a in load_split()
    )
    # Standardize each pixel with the training set's statistics (some border pixels are always 0).
    mean, std = X_train.mean(axis=0), X_train.std(axis=0) + 0.1
    X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    firefly.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10))
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
                f"time: {time.perf_counter() - t0:.3f} s"
            )
    return accuracy(model, X_test, y_test), time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="FILE.png", help="write the training curves there")
    args = parser.parse_args(argv)
    if args.plot:  # checked now, not after training
        require_matplotlib("digits_mlp.py")
    print(
        "firefly: digits MLP 64-256-10 (ReLU, Dropout), AdamW, 1437 training / 360 held-out images"
    )
    history = {} if args.plot else None
    accuracy, seconds = train(args.epochs, args.seed, history=history)
    print(f"final held-out accuracy: {100 * accuracy:.2f}% | training time: {seconds:.1f} s")
    if args.plot:
        plot_curves(args.plot, history, "firefly: digits MLP, AdamW")
        print(f"curves written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
