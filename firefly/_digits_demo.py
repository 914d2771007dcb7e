"""``python -m firefly demo --model digits-cnn``: the CNN of examples/digits_cnn.py on
scikit-learn's bundled UCI handwritten digits, with AdamW, reporting each epoch."""
import statistics
import time

import numpy as np


def run(args):
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        print("demo --model digits-cnn needs scikit-learn for its bundled digits data: "
              'pip install "firefly[examples]" (or pip install scikit-learn)')
        return 1
    import firefly
    from firefly import nn
    from firefly.optim import AdamW

    dtype = np.dtype(args.dtype)
    digits = load_digits()
    images = (digits.images / 16.0).astype(dtype)[:, None, :, :]
    X_train, X_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=0.2, stratify=digits.target, random_state=0)
    firefly.manual_seed(args.seed)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    ).to(dtype)
    optimizer = AdamW(model.get_parameters(), lr=args.lr, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(args.seed)

    def accuracy(X, y):
        model.eval()
        with firefly.no_grad():
            predictions = model(firefly.Tensor(X)).numpy().argmax(axis=1)
        model.train()
        return 100.0 * float(np.mean(predictions == y))

    print(f"firefly {firefly.__version__}: digits CNN ({dtype}, {args.epochs} epochs, AdamW lr={args.lr}, "
          f"seed={args.seed}, batch 64, {len(X_train)} training / {len(X_test)} held-out images)")
    step_times = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        total = 0.0
        order = rng.permutation(len(X_train))
        for start in range(0, len(order), 64):
            idx = order[start:start + 64]
            s0 = time.perf_counter()
            optimizer.zero_grad()
            loss = loss_fn(model(firefly.Tensor(X_train[idx])), y_train[idx])
            loss.backward()
            optimizer.step()
            step_times.append(time.perf_counter() - s0)
            total += loss.item() * len(idx)
        elapsed = time.perf_counter() - t0
        print(f"Epoch [{epoch + 1}/{args.epochs}], loss: {total / len(X_train):.4f}, train accuracy: "
              f"{accuracy(X_train, y_train):.2f}%, held-out accuracy: {accuracy(X_test, y_test):.2f}%, "
              f"time: {elapsed:.2f} s")
    print(f"final held-out accuracy {accuracy(X_test, y_test):.2f}% | median step "
          f"{statistics.median(step_times) * 1e3:.2f} ms (batch 64)")
    return 0
