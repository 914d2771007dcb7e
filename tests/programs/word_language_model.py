"""A word-level LSTM language model, modelled on pytorch/examples word_language_model (model.py
and main.py): a ``Corpus`` dictionary built from a text, ``batchify`` into columns,
``get_batch`` with BPTT windows, ``RNNModel`` (Embedding, a 2-layer LSTM, a Linear decoder
with its weight tied to the encoder's), ``repackage_hidden`` detaching the hidden state
between batches, ``clip_grad_norm_``, the hand-written SGD update ``p.data.add_(p.grad,
alpha=-lr)``, and the learning rate annealed by 4 when the validation loss stops improving.

Differences from the example, made for a deterministic twin run (not for firefly): a tiny
corpus made up in this file, float64, dropout 0 (the example's dropout draws from the two
libraries' different generators), and a few epochs.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

WORDS = (
    "the cat sat on the mat . the dog sat on the log . a cat saw a dog . "
    "the dog saw the cat on the mat . a bird sat on the dog . the bird saw a cat ."
).split()


class Dictionary:
    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus:
    def __init__(self, words):
        self.dictionary = Dictionary()
        ids = [self.dictionary.add_word(w) for w in words]
        n = len(ids)
        self.train = torch.tensor(ids * 3, dtype=torch.int64)
        self.valid = torch.tensor(ids[n // 2 :] + ids[: n // 2], dtype=torch.int64)


class RNNModel(nn.Module):
    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.0, tie_weights=True):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            if nhid != ninp:
                raise ValueError("When using the tied flag, nhid must be equal to emsize")
            self.decoder.weight = self.encoder.weight
        self.init_weights()
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (
            weight.new_zeros(self.nlayers, bsz, self.nhid),
            weight.new_zeros(self.nlayers, bsz, self.nhid),
        )


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    return data.view(bsz, -1).t().contiguous()


def repackage_hidden(h):
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def get_batch(source, i, bptt):
    seq_len = min(bptt, len(source) - 1 - i)
    data = source[i : i + seq_len]
    target = source[i + 1 : i + 1 + seq_len].view(-1)
    return data, target


CORPUS = Corpus(WORDS)


def build_model():
    return RNNModel(len(CORPUS.dictionary), 12, 12, 2, dropout=0.0).double()


def evaluate(model, data_source, bptt, eval_batch_size):
    model.eval()
    total_loss = 0.0
    hidden = model.init_hidden(eval_batch_size)
    with torch.no_grad():
        for i in range(0, data_source.size(0) - 1, bptt):
            data, targets = get_batch(data_source, i, bptt)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
            total_loss += len(data) * F.nll_loss(output, targets).item()
    return total_loss / (len(data_source) - 1)


def main(model):
    bptt, batch_size, eval_batch_size, clip = 5, 4, 2, 0.25
    train_data = batchify(CORPUS.train, batch_size)
    val_data = batchify(CORPUS.valid, eval_batch_size)
    criterion = nn.NLLLoss()
    lr, best_val_loss = 20.0, None
    losses, val_losses, lrs = [], [], []
    for _ in range(6):
        model.train()
        hidden = model.init_hidden(batch_size)
        for i in range(0, train_data.size(0) - 1, bptt):
            data, targets = get_batch(train_data, i, bptt)
            hidden = repackage_hidden(hidden)
            model.zero_grad()
            output, hidden = model(data, hidden)
            loss = criterion(output, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            losses.append(loss.item())
        val_loss = evaluate(model, val_data, bptt, eval_batch_size)
        val_losses.append(val_loss)
        if not best_val_loss or val_loss < best_val_loss:
            best_val_loss = val_loss
        else:
            lr /= 4.0
        lrs.append(lr)
    return {
        "losses": losses,
        "val_losses": val_losses,
        "lrs": lrs,
        "perplexity": math.exp(best_val_loss),
        "tied": model.decoder.weight is model.encoder.weight,
    }
