"""A data pipeline with randomness on every side, modelled on the PyTorch "Datasets &
DataLoaders" and "Optimizing Model Parameters" tutorials: random_split with a seeded
Generator, a shuffling DataLoader driven by its own Generator, an MLP with Dropout, SGD, and
a test loop. The random streams differ between torch and firefly, so the twins are compared
by their final levels, not step by step.

No differences from the tutorials beyond the data (scikit-learn's digits instead of
FashionMNIST) and the sizes.
"""

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, random_split


class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(64, 10),
        )

    def forward(self, x):
        x = self.flatten(x)
        logits = self.linear_relu_stack(x)
        return logits


def train_loop(dataloader, model, loss_fn, optimizer):
    model.train()
    for X, y in dataloader:
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_loop(dataloader, model, loss_fn):
    model.eval()
    size = len(dataloader.dataset)
    num_batches = len(dataloader)
    test_loss, correct = 0, 0
    with torch.no_grad():
        for X, y in dataloader:
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    test_loss /= num_batches
    correct /= size
    return test_loss, correct


def build_model():
    return NeuralNetwork()


def main(model):
    digits = load_digits()
    images = torch.tensor((digits.images / 16.0).astype(np.float32))
    labels = torch.tensor(digits.target.astype(np.int64))
    dataset = TensorDataset(images, labels)
    generator = torch.Generator().manual_seed(42)
    training_data, test_data = random_split(dataset, [0.8, 0.2], generator=generator)
    train_dataloader = DataLoader(training_data, batch_size=64, shuffle=True, generator=generator)
    test_dataloader = DataLoader(test_data, batch_size=64)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = []
    for _ in range(4):
        train_loop(train_dataloader, model, loss_fn, optimizer)
        history.append(test_loop(test_dataloader, model, loss_fn))
    return {
        "sizes": (len(training_data), len(test_data)),
        "final_loss": history[-1][0],
        "final_accuracy": history[-1][1],
    }
