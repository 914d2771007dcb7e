"""A Conv1d time-series classifier, modelled on the fully convolutional network of Wang et
al. (2017) as commonly written in PyTorch: three Conv1d + BatchNorm1d + ReLU blocks, global
average pooling over time, a linear head, cross-entropy and Adam, with a validation pass
under model.eval() and torch.no_grad().

Differences from the usual code, made for a deterministic twin run (not for firefly): the
series are synthetic (noisy sines whose frequency is the class) from a seeded NumPy
generator, there is no shuffling, and the channels are narrower.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


class FCN(nn.Module):
    def __init__(self, in_channels=1, num_classes=3):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, 8, kernel_size=7, padding=3)
        self.bn1 = nn.BatchNorm1d(8)
        self.conv2 = nn.Conv1d(8, 16, kernel_size=5, padding=2)
        self.bn2 = nn.BatchNorm1d(16)
        self.conv3 = nn.Conv1d(16, 8, kernel_size=3, padding=1)
        self.bn3 = nn.BatchNorm1d(8)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = self.gap(x).squeeze(-1)
        return self.fc(x)


def make_series(rng, n, length=48):
    labels = rng.integers(0, 3, size=n)
    t = np.linspace(0, 1, length)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    x = np.sin(2 * np.pi * (labels[:, None] + 1) * 2 * t + phase)
    x = x + 0.3 * rng.standard_normal((n, length))
    return x[:, None, :].astype(np.float64), labels.astype(np.int64)


def build_model():
    return FCN().double()


def main(model):
    rng = np.random.default_rng(1)
    x_train, y_train = make_series(rng, 192)
    x_val, y_val = make_series(rng, 96)
    train_loader = DataLoader(
        TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train)), batch_size=32
    )
    val_loader = DataLoader(
        TensorDataset(torch.from_numpy(x_val), torch.from_numpy(y_val)), batch_size=48
    )
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses, val_losses, val_accs = [], [], []
    for _ in range(4):
        model.train()
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        total, correct, count = 0.0, 0, 0
        with torch.no_grad():
            for xb, yb in val_loader:
                logits = model(xb)
                total += criterion(logits, yb).item() * len(yb)
                correct += (logits.argmax(dim=1) == yb).sum().item()
                count += len(yb)
        val_losses.append(total / count)
        val_accs.append(correct / count)
    return {"losses": losses, "val_losses": val_losses, "val_accs": val_accs}
