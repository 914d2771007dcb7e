"""A 3-class spiral classifier: an MLP trained with CrossEntropyLoss, Adam and a shuffling
DataLoader on data generated here. Reaches >= 95% training accuracy.
Run: python examples/spiral_classifier.py"""

import numpy as np

import firefly
from firefly import nn
from firefly.data import DataLoader
from firefly.optim import Adam


def make_spirals(points_per_class, classes, rng):
    """Interleaved spiral arms in 2-D (the CS231n toy data set), with integer labels."""
    X = np.empty((points_per_class * classes, 2))
    y = np.empty(points_per_class * classes, dtype=np.int64)
    radius = np.linspace(0.0, 1.0, points_per_class)
    for c in range(classes):
        angle = np.linspace(c * 4.0, (c + 1) * 4.0, points_per_class) + rng.normal(
            scale=0.2, size=points_per_class
        )
        rows = slice(c * points_per_class, (c + 1) * points_per_class)
        X[rows] = np.column_stack([radius * np.sin(angle), radius * np.cos(angle)])
        y[rows] = c
    return X.astype(np.float32), y


def accuracy(model, X, y):
    with firefly.no_grad():
        predictions = model(X).numpy().argmax(axis=1)
    return float(np.mean(predictions == y))


def main(epochs=60, seed=0):
    firefly.manual_seed(seed)  # parameter init and shuffling
    X, y = make_spirals(300, 3, np.random.default_rng(seed))
    model = nn.Sequential(
        nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3)
    )
    loss_fn = nn.CrossEntropyLoss()
    optimizer = Adam(model.get_parameters(), lr=0.01)
    loader = DataLoader(X, y, batch_size=64, shuffle=True)
    print(model)
    for epoch in range(epochs):
        total = 0.0
        for inputs, labels in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), labels)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(labels)
        print(
            f"Epoch [{epoch + 1}/{epochs}], Loss: {total / len(y):.4f}, "
            f"training accuracy: {accuracy(model, X, y):.1%}"
        )
    final = accuracy(model, X, y)
    print(f"final training accuracy: {final:.1%}")
    return final


if __name__ == "__main__":
    main()
