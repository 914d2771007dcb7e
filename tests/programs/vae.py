"""A variational autoencoder, modelled on pytorch/examples vae/main.py (fc1, fc21, fc22, fc3,
fc4; BCE + KL loss summed over the batch; Adam), on scikit-learn's 8x8 digits in float64.

Differences from the example, made for a deterministic twin run (not for firefly): the
reparameterization noise comes from a seeded NumPy generator (torch.randn_like's stream
differs between the libraries), no shuffling, and smaller layers for 64-pixel images.
"""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn, optim
from torch.utils.data import DataLoader, TensorDataset


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc21 = nn.Linear(32, 4)
        self.fc22 = nn.Linear(32, 4)
        self.fc3 = nn.Linear(4, 32)
        self.fc4 = nn.Linear(32, 64)
        self.rng = np.random.default_rng(0)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.from_numpy(self.rng.standard_normal(tuple(std.shape)))
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 64))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 64), reduction="sum")
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def build_model():
    return VAE().double()


def main(model):
    digits = load_digits()
    data = torch.from_numpy((digits.data / 16.0).astype(np.float64))
    train_loader = DataLoader(TensorDataset(data[:512]), batch_size=64)
    test_loader = DataLoader(TensorDataset(data[1500:]), batch_size=100)
    optimizer = optim.Adam(model.parameters(), lr=1e-2)
    losses, test_losses = [], []
    for _ in range(3):
        model.train()
        for (data_batch,) in train_loader:
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data_batch)
            loss = loss_function(recon_batch, data_batch, mu, logvar)
            loss.backward()
            optimizer.step()
            losses.append(loss.item() / len(data_batch))
        model.eval()
        test_loss = 0
        with torch.no_grad():
            for (data_batch,) in test_loader:
                recon_batch, mu, logvar = model(data_batch)
                test_loss += loss_function(recon_batch, data_batch, mu, logvar).item()
        test_losses.append(test_loss / len(test_loader.dataset))
    return {"losses": losses, "test_losses": test_losses}
