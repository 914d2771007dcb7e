"""Training utilities, modelled on the PyTorch "Training with PyTorch" tutorial and the usual
checkpointing/early-stopping recipe: a custom Dataset, Subset train/validation splits, an MLP
with BatchNorm, AdamW with weight decay, gradient clipping, a per-step cosine schedule,
ReduceLROnPlateau on the validation loss, an AverageMeter, checkpoints saved and restored
with torch.save/torch.load, and early stopping that reloads the best state.

Differences from the recipe, made for a deterministic twin run (not for firefly): fixed
index splits instead of random_split, and no shuffling (random streams differ between the
libraries).
"""

import copy
import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import optim
from torch.nn.utils import clip_grad_norm_
from torch.utils.data import DataLoader, Dataset, Subset


class DigitsDataset(Dataset):
    def __init__(self):
        digits = load_digits()
        self.features = (digits.data / 16.0).astype(np.float64)
        self.labels = digits.target.astype(np.int64)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        return torch.tensor(self.features[idx]), int(self.labels[idx])


class AverageMeter:
    """Computes and stores the average and current value."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.val = self.avg = self.sum = 0.0
        self.count = 0

    def update(self, val, n=1):
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


class MLP(nn.Module):
    def __init__(self, in_features=64, hidden=48, classes=10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(F.relu(self.bn1(self.fc1(x))))


def build_model():
    return MLP().double()


def evaluate(model, loader, criterion):
    model.eval()
    meter = AverageMeter()
    correct = 0
    with torch.no_grad():
        for inputs, labels in loader:
            outputs = model(inputs)
            meter.update(criterion(outputs, labels).item(), inputs.size(0))
            correct += (outputs.argmax(1) == labels).sum().item()
    return meter.avg, correct / len(loader.dataset)


def main(model):
    dataset = DigitsDataset()
    train_set = Subset(dataset, list(range(0, 400)))
    val_set = Subset(dataset, list(range(1400, 1600)))
    train_loader = DataLoader(train_set, batch_size=50)
    val_loader = DataLoader(val_set, batch_size=100)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.0)
    optimizer = optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.01)
    epochs = 6
    cosine = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(train_loader))
    plateau = optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=0)
    losses, val_losses, norms, lrs = [], [], [], []
    best_loss, best_state, bad_epochs, patience = float("inf"), None, 0, 2
    checkpoint = os.path.join(tempfile.mkdtemp(), "checkpoint.pt")
    for epoch in range(epochs):
        model.train()
        meter = AverageMeter()
        for inputs, labels in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), labels)
            loss.backward()
            norms.append(float(clip_grad_norm_(model.parameters(), max_norm=1.0)))
            optimizer.step()
            cosine.step()
            meter.update(loss.item(), inputs.size(0))
            losses.append(loss.item())
        val_loss, val_acc = evaluate(model, val_loader, criterion)
        plateau.step(val_loss)
        val_losses.append(val_loss)
        lrs.append(optimizer.param_groups[0]["lr"])
        torch.save(
            {
                "epoch": epoch,
                "model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict(),
                "loss": meter.avg,
            },
            checkpoint,
        )
        if val_loss < best_loss:
            best_loss, best_state, bad_epochs = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            bad_epochs += 1
            if bad_epochs >= patience:
                break
    restored = build_model()
    state = torch.load(checkpoint)
    restored.load_state_dict(state["model_state_dict"])
    resumed_opt = optim.AdamW(restored.parameters(), lr=0.02, weight_decay=0.01)
    resumed_opt.load_state_dict(state["optimizer_state_dict"])
    model.load_state_dict(best_state)
    return {
        "losses": losses,
        "val_losses": val_losses,
        "norms": norms,
        "lrs": lrs,
        "best": evaluate(model, val_loader, criterion),
        "restored": evaluate(restored, val_loader, criterion),
        "epoch": state["epoch"],
    }
