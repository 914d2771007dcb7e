"""A small MLP, 10 -> 32 -> 1 with ReLU, trained by full-batch SGD on a noisy linear target,
written against firefly's first module paths (``firefly.nn.layers``, ``firefly.nn.optimizers``).
Run: python examples/seed_mlp.py"""

import numpy as np

import firefly
from firefly.nn.layers.linear import Linear
from firefly.nn.module import Module
from firefly.nn.optimizers.sgd import SGD
from firefly.tensor import Tensor


class MLP(Module):
    def __init__(self, input_size=10, hidden_size=32, output_size=1):
        super().__init__()
        self.fc1 = Linear(input_size, hidden_size)
        self.fc2 = Linear(hidden_size, output_size)

    def forward(self, x: Tensor) -> Tensor:
        y = self.fc1(x)
        y = y.relu()
        y = self.fc2(y)
        return y


def main(epochs=100, lr=0.01, seed=0):
    firefly.manual_seed(seed)  # parameter init
    rng = np.random.default_rng(seed)  # data
    n_samples = 1024
    X = Tensor(rng.normal(size=(n_samples, 10)))
    true_weights = np.array(
        [[1.5], [-2.0], [1.0], [1.5], [-2.0], [1.0], [3.0], [-2.0], [1.0], [3.0]]
    )
    y = Tensor(X.numpy() @ true_weights + rng.normal(size=(n_samples, 1)) * 0.1)

    model = MLP()
    print(model)
    loss_fn = firefly.nn.MSELoss()
    optimizer = SGD(model.get_parameters(), lr=lr)
    for epoch in range(epochs):
        optimizer.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()
        if epoch % 10 == 9 or epoch == 0:
            print(f"Epoch [{epoch + 1}/{epochs}], Loss: {loss.item():.6f}")
    return loss.item()


if __name__ == "__main__":
    main()
