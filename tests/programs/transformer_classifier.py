"""A Transformer-encoder text classifier, modelled on the PyTorch tutorials' text
classification and ``nn.TransformerEncoder`` examples: token and learned position embeddings,
an ``nn.TransformerEncoder`` of ``nn.TransformerEncoderLayer`` (``batch_first=True``),
sequences of different lengths padded with ``pad_sequence`` and masked out with
``src_key_padding_mask``, mean pooling over the real tokens, a Linear head,
``CrossEntropyLoss`` and Adam, with a ``torch.no_grad`` evaluation.

Differences from the tutorials, made for a deterministic twin run (not for firefly): a made-up
task (is the token 1 in the sequence?) with sequences drawn by NumPy, float64, dropout 0, and
batches taken in order.
"""

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence

VOCAB, PAD = 12, 0


def make_data(n, seed):
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for _ in range(n):
        length = int(rng.integers(3, 10))
        tokens = rng.integers(2, VOCAB, size=length)
        label = int(rng.integers(0, 2))
        if label:
            tokens[int(rng.integers(0, length))] = 1
        seqs.append(torch.tensor(tokens.tolist(), dtype=torch.long))
        labels.append(label)
    return seqs, torch.tensor(labels, dtype=torch.long)


class TransformerClassifier(nn.Module):
    def __init__(self, vocab, d_model=16, nhead=2, num_layers=2, num_classes=2, max_len=16):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model, padding_idx=PAD)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward=32, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, tokens, padding_mask):
        positions = torch.arange(tokens.size(1)).unsqueeze(0)
        x = self.embed(tokens) + self.pos(positions)
        x = self.encoder(x, src_key_padding_mask=padding_mask)
        keep = (~padding_mask).unsqueeze(-1).to(x.dtype)
        pooled = (x * keep).sum(dim=1) / keep.sum(dim=1)
        return self.head(pooled)


def collate(seqs):
    tokens = pad_sequence(seqs, batch_first=True, padding_value=PAD)
    return tokens, tokens == PAD


def build_model():
    return TransformerClassifier(VOCAB).double()


def main(model):
    train_seqs, train_labels = make_data(96, seed=1)
    test_seqs, test_labels = make_data(32, seed=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    criterion = nn.CrossEntropyLoss()
    losses, test_losses, accuracies = [], [], []
    batch_size = 16
    for _ in range(4):
        model.train()
        for start in range(0, len(train_seqs), batch_size):
            tokens, mask = collate(train_seqs[start : start + batch_size])
            labels = train_labels[start : start + batch_size]
            optimizer.zero_grad()
            loss = criterion(model(tokens, mask), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            tokens, mask = collate(test_seqs)
            logits = model(tokens, mask)
            test_losses.append(criterion(logits, test_labels).item())
            accuracies.append((logits.argmax(dim=1) == test_labels).float().mean().item())
    return {"losses": losses, "test_losses": test_losses, "accuracies": accuracies}
