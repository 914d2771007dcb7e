"""Knowledge distillation, modelled on the PyTorch "Knowledge Distillation Tutorial": a
deeper teacher is trained with cross-entropy, then a lighter student learns from the
teacher's temperature-softened outputs (the KL term written out as in the tutorial, scaled
by T**2) plus the labels, and both are evaluated. The two networks live in one ModuleDict.

Differences from the tutorial, made for a deterministic twin run (not for firefly): MLPs on
scikit-learn's 8x8 digits in float64 instead of CNNs on CIFAR-10, and no shuffling.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset


class DeepNN(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.classifier = nn.Sequential(
            nn.Linear(64, 64),
            nn.ReLU(),
            nn.Linear(64, 32),
            nn.ReLU(),
            nn.Linear(32, num_classes),
        )

    def forward(self, x):
        return self.classifier(x)


class LightNN(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.classifier = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, num_classes))

    def forward(self, x):
        return self.classifier(x)


def train(model, train_loader, epochs, learning_rate, losses):
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=learning_rate)
    model.train()
    for _ in range(epochs):
        for inputs, labels in train_loader:
            optimizer.zero_grad()
            outputs = model(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())


def test(model, test_loader):
    model.eval()
    correct = 0
    total = 0
    with torch.no_grad():
        for inputs, labels in test_loader:
            outputs = model(inputs)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    return 100 * correct / total


def train_knowledge_distillation(
    teacher, student, train_loader, epochs, learning_rate, T, soft_weight, ce_weight, losses
):
    ce_loss = nn.CrossEntropyLoss()
    optimizer = optim.Adam(student.parameters(), lr=learning_rate)
    teacher.eval()
    student.train()
    for _ in range(epochs):
        for inputs, labels in train_loader:
            optimizer.zero_grad()
            with torch.no_grad():
                teacher_logits = teacher(inputs)
            student_logits = student(inputs)
            soft_targets = nn.functional.softmax(teacher_logits / T, dim=-1)
            soft_prob = nn.functional.log_softmax(student_logits / T, dim=-1)
            soft_targets_loss = (
                torch.sum(soft_targets * (soft_targets.log() - soft_prob))
                / soft_prob.size()[0]
                * (T**2)
            )
            label_loss = ce_loss(student_logits, labels)
            loss = soft_weight * soft_targets_loss + ce_weight * label_loss
            loss.backward()
            optimizer.step()
            losses.append(loss.item())


def build_model():
    return nn.ModuleDict({"teacher": DeepNN(), "student": LightNN()}).double()


def main(model):
    digits = load_digits()
    x = torch.from_numpy((digits.data / 16.0).astype(np.float64))
    y = torch.from_numpy(digits.target.astype(np.int64))
    train_loader = DataLoader(TensorDataset(x[:600], y[:600]), batch_size=60)
    test_loader = DataLoader(TensorDataset(x[1400:], y[1400:]), batch_size=100)
    teacher, student = model["teacher"], model["student"]
    teacher_losses, student_losses = [], []
    train(teacher, train_loader, epochs=3, learning_rate=0.005, losses=teacher_losses)
    train_knowledge_distillation(
        teacher,
        student,
        train_loader,
        epochs=3,
        learning_rate=0.005,
        T=2,
        soft_weight=0.25,
        ce_weight=0.75,
        losses=student_losses,
    )
    total_params = sum(p.numel() for p in student.parameters())
    return {
        "losses": teacher_losses + student_losses,
        "teacher_accuracy": test(teacher, test_loader),
        "student_accuracy": test(student, test_loader),
        "student_params": total_params,
    }
