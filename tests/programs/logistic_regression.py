"""Binary logistic regression, modelled on the usual scikit-learn-dataset tutorial in
PyTorch: the breast-cancer data standardised, a model with one nn.Linear (the sigmoid
applied at prediction time), BCEWithLogitsLoss with pos_weight, SGD with weight decay and
Nesterov momentum, full-batch training, and accuracy from a 0.5 threshold.

No differences from the tutorial beyond the float64 dtype.
"""

import numpy as np
import torch
import torch.nn as nn
from sklearn.datasets import load_breast_cancer


class LogisticRegression(nn.Module):
    def __init__(self, n_input_features):
        super().__init__()
        self.linear = nn.Linear(n_input_features, 1)

    def forward(self, x):
        return self.linear(x)


def build_model():
    return LogisticRegression(30).double()


def main(model):
    data = load_breast_cancer()
    X = (data.data - data.data.mean(0)) / data.data.std(0)
    X_train = torch.from_numpy(X[:400])
    y_train = torch.from_numpy(data.target[:400].astype(np.float64)).view(-1, 1)
    X_test = torch.from_numpy(X[400:])
    y_test = torch.from_numpy(data.target[400:].astype(np.float64)).view(-1, 1)
    pos_weight = (y_train == 0).sum() / (y_train == 1).sum()
    criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight.double())
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3
    )
    losses = []
    for _ in range(100):
        logits = model(X_train)
        loss = criterion(logits, y_train)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    with torch.no_grad():
        y_predicted = torch.sigmoid(model(X_test))
        acc = ((y_predicted > 0.5).double() == y_test).sum() / float(y_test.shape[0])
    return {"losses": losses, "accuracy": acc.item()}
