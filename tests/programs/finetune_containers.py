"""Containers and fine-tuning, modelled on the "Finetuning Torchvision Models" tutorial and
multi-task heads: a backbone in Sequential(OrderedDict) with ReLU(inplace=True), pretrained
on digits 0-4; a new model that loads the backbone with load_state_dict(strict=False),
replaces its classifier by a ModuleDict of task heads, learns per-task loss weights in a
ParameterList (uncertainty weighting), trains the heads with the backbone frozen (feature
extraction), then fine-tunes everything with per-group learning rates.

Differences from the tutorial, made for a deterministic twin run (not for firefly): the new
heads start at zero (a random init would differ between the libraries) and there is no
shuffling.
"""

from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset


def backbone():
    return nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(1, 6, kernel_size=3, padding=1)),
                ("bn1", nn.BatchNorm2d(6)),
                ("relu1", nn.ReLU(inplace=True)),
                ("pool1", nn.MaxPool2d(2)),
                ("conv2", nn.Conv2d(6, 12, kernel_size=3, padding=1)),
                ("relu2", nn.ReLU(True)),
                ("pool2", nn.AdaptiveAvgPool2d((1, 1))),
                ("flatten", nn.Flatten()),
            ]
        )
    )


class Pretrained(nn.Module):
    def __init__(self, num_classes=5):
        super().__init__()
        self.features = backbone()
        self.classifier = nn.Linear(12, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x))


class MultiTask(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = backbone()
        self.classifier = nn.ModuleDict({"digit": nn.Linear(12, 10), "parity": nn.Linear(12, 2)})
        self.log_vars = nn.ParameterList([nn.Parameter(torch.zeros(1)) for _ in range(2)])

    def forward(self, x):
        h = self.features(x)
        return {name: head(h) for name, head in self.classifier.items()}


def set_parameter_requires_grad(model, feature_extracting):
    if feature_extracting:
        for param in model.parameters():
            param.requires_grad = False


def build_model():
    return Pretrained().double()


def load_data():
    digits = load_digits()
    x = torch.from_numpy(np.ascontiguousarray((digits.images / 16.0)[:, None]))
    y = torch.from_numpy(digits.target.astype(np.int64))
    parity = torch.from_numpy(digits.target.astype(np.int64) % 2)
    return x, y, parity


def run_epoch(model, loader, optimizer, losses):
    model.train()
    for inputs, labels, parity in loader:
        optimizer.zero_grad()
        outputs = model(inputs)
        parts = [
            F.cross_entropy(outputs["digit"], labels),
            F.cross_entropy(outputs["parity"], parity),
        ]
        loss = sum(torch.exp(-s) * part + s for s, part in zip(model.log_vars, parts)).sum()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())


def main(model):
    x, y, parity = load_data()
    # Stage 1: pretrain on the digits 0-4.
    low = y[:600] < 5
    pretrain = DataLoader(TensorDataset(x[:600][low], y[:600][low]), batch_size=40)
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    pretrain_losses = []
    for _ in range(2):
        for inputs, labels in pretrain:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(inputs), labels)
            loss.backward()
            optimizer.step()
            pretrain_losses.append(loss.item())
    pretrained_state = model.state_dict()

    # Stage 2: a multi-task model that reuses the backbone.
    net = MultiTask().double()
    state = {k: v for k, v in pretrained_state.items() if not k.startswith("classifier")}
    state["classifier.weight"] = pretrained_state["classifier.weight"]
    missing, unexpected = net.load_state_dict(state, strict=False)
    for head in net.classifier.values():
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    loader = DataLoader(TensorDataset(x[600:1000], y[600:1000], parity[600:1000]), batch_size=50)

    set_parameter_requires_grad(net.features, True)
    params_to_update = [p for name, p in net.named_parameters() if p.requires_grad]
    trainable = [name for name, p in net.named_parameters() if p.requires_grad]
    head_optimizer = optim.SGD(params_to_update, lr=0.1, momentum=0.9)
    frozen_before = net.get_parameter("features.conv1.weight").detach().clone()
    extract_losses = []
    run_epoch(net, loader, head_optimizer, extract_losses)
    frozen_kept = bool(torch.equal(frozen_before, net.get_submodule("features.conv1").weight))

    for param in net.features.parameters():
        param.requires_grad = True
    finetune = optim.SGD(
        [
            {"params": net.features.parameters(), "lr": 0.01},
            {"params": list(net.classifier.parameters()) + list(net.log_vars.parameters())},
        ],
        lr=0.1,
        momentum=0.9,
    )
    finetune_losses = []
    for _ in range(2):
        run_epoch(net, loader, finetune, finetune_losses)

    net.eval()
    with torch.no_grad():
        outputs = net(x[1500:])
        accuracy = (outputs["digit"].argmax(1) == y[1500:]).double().mean().item()
    return {
        "losses": pretrain_losses + extract_losses + finetune_losses,
        "missing": sorted(missing),
        "unexpected": sorted(unexpected),
        "trainable": trainable,
        "frozen_kept": frozen_kept,
        "children": [name for name, _ in net.named_children()],
        "log_vars": [p.item() for p in net.log_vars],
        "accuracy": accuracy,
    }
