"""A character-level language model with a 2-layer LSTM (``nn.LSTM``: one fused kernel per layer
over the whole sequence), in the style of torch's word-language-model example: an embedding, two
LSTM layers of 200, a linear read-out; Adam and ``clip_grad_norm_``.

It trains on real English that needs no download: the text of Python's own documentation
(``pydoc_data.topics``, about 465k characters, shipped with every Python). The last 10% is held
out for validation. It prints the train and validation losses (with a progress bar when tqdm is
installed), saves a checkpoint and samples text with a temperature, carrying the LSTM's state
(h, c) from one character to the next.

Run: python examples/char_lstm.py [--iters N] [--torch] [--plot PNG]
(``--torch`` then trains the same model in PyTorch from the same initial weights, on the same
batches, for comparison; ``--plot`` needs matplotlib: ``pip install "firefly-dl[examples]"``.)
"""

import argparse
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from _progress import IterationBar, plot_loss_curves, require_matplotlib


@dataclass
class Config:
    """torch's word-language-model sizes for the LSTM (2 layers of 200, 35 steps, batch 20),
    with a 64-wide character embedding, Adam at 2e-3 and gradients clipped to norm 1."""

    n_layer: int = 2
    hidden: int = 200
    n_embd: int = 64
    block_size: int = 35
    batch_size: int = 20
    dropout: float = 0.0
    iters: int = 2000
    lr: float = 2e-3
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    dtype: str = "float32"


# ----------------------------------------------------------------------------- data
def load_text():
    """(description, text): Python's documentation topics, joined."""
    from pydoc_data.topics import topics

    return "Python's documentation (pydoc_data.topics)", "\n".join(topics.values())


class CharData:
    """The text as integer character ids, split 90% train / 10% validation (the last 10%)."""

    def __init__(self, text):
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        self.alphabet = np.unique(codes)  # sorted code points; a character's id is its index
        ids = np.searchsorted(self.alphabet, codes).astype(np.int64)
        n_train = int(0.9 * len(ids))
        self.splits = {"train": ids[:n_train], "val": ids[n_train:]}

    @property
    def vocab_size(self):
        return len(self.alphabet)

    def encode(self, text):
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        return np.searchsorted(self.alphabet, codes).astype(np.int64)

    def decode(self, ids):
        return self.alphabet[np.asarray(ids)].astype(np.uint32).tobytes().decode("utf-32-le")

    def batch(self, split, batch_size, block_size, rng):
        """(inputs, targets), each (batch_size, block_size) int64: windows at random offsets,
        the targets shifted one character on."""
        data = self.splits[split]
        starts = rng.integers(0, len(data) - block_size, size=batch_size)
        windows = data[starts[:, None] + np.arange(block_size + 1)]
        return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])


# ----------------------------------------------------------------------------- model
def define_model(lib):
    """The model class written against ``lib``, firefly or torch: the same source builds it in
    both (firefly keeps torch's names and layouts), so ``--torch`` trains the same model."""
    nn, F = lib.nn, lib.nn.functional

    class CharLSTM(nn.Module):
        def __init__(self, config, vocab_size):
            super().__init__()
            self.embed = nn.Embedding(vocab_size, config.n_embd)
            self.lstm = nn.LSTM(
                config.n_embd,
                config.hidden,
                num_layers=config.n_layer,
                dropout=config.dropout,
                batch_first=True,
            )
            self.head = nn.Linear(config.hidden, vocab_size)

        def forward(self, idx, targets=None, state=None):
            """Logits (B, T, vocab) of the next character at every position of ``idx`` (B, T),
            the LSTM's final (h, c), and the mean cross-entropy against ``targets`` when
            given."""
            out, state = self.lstm(self.embed(idx), state)
            logits = self.head(out)
            if targets is None:
                return logits, state, None
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            return logits, state, loss

    return CharLSTM


def build_model(lib, config, vocab_size, initial_state=None):
    """The model in ``lib`` in ``config.dtype``: firefly's with its default initialization
    (torch's: uniform in +-1/sqrt(hidden) for the LSTM) from firefly's generator; torch's
    loaded from ``initial_state`` (a firefly state_dict), so both start from the same weights."""
    model = define_model(lib)(config, vocab_size)
    if initial_state is not None:
        model.load_state_dict({k: lib.as_tensor(np.asarray(v)) for k, v in initial_state.items()})
    return model.to(getattr(lib, config.dtype))


# ----------------------------------------------------------------------------- training
@dataclass
class Run:
    """What a training run leaves: the model and optimizer, every step's training loss, the
    (iteration, train, val) evaluations, and the seconds spent training."""

    model: object
    optimizer: object
    initial_state: dict
    losses: list = field(default_factory=list)
    evaluations: list = field(default_factory=list)
    seconds: float = 0.0


def estimate_loss(lib, model, data, config):
    """{split: mean loss over eval_iters batches}; the same batches at every evaluation (and in
    both libraries), so the curves differ only by the model."""
    rng = np.random.default_rng(config.seed + 1)
    model.eval()
    result = {}
    with lib.no_grad():
        for split in ("train", "val"):
            losses = []
            for _ in range(config.eval_iters):
                x, y = data.batch(split, config.batch_size, config.block_size, rng)
                losses.append(model(lib.from_numpy(x), lib.from_numpy(y))[2].item())
            result[split] = float(np.mean(losses))
    model.train()
    return result


def train(lib, config, data, initial_state=None, name="firefly", verbose=True):
    """Train the model in ``lib`` for config.iters steps on batches drawn from config.seed (the
    same batches in both libraries); returns a Run."""
    if lib.__name__ == "firefly":
        lib.manual_seed(config.seed)
    model = build_model(lib, config, data.vocab_size, initial_state)
    optimizer = lib.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    run = Run(model, optimizer, model.state_dict())
    progress = IterationBar(config.iters, name, verbose)
    start = time.perf_counter()
    for it in range(config.iters + 1):
        if it % config.eval_interval == 0 or it == config.iters:
            losses = estimate_loss(lib, model, data, config)
            run.evaluations.append((it, losses["train"], losses["val"]))
            progress.write(
                f"{name} step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
            )
        if it == config.iters:
            break
        x, y = data.batch("train", config.batch_size, config.block_size, rng)
        _, _, loss = model(lib.from_numpy(x), lib.from_numpy(y))
        optimizer.zero_grad()
        loss.backward()
        lib.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        run.losses.append(loss.item())
        progress.update(run.losses[-1])
    run.seconds = time.perf_counter() - start
    progress.close()
    return run


# ----------------------------------------------------------------------------- sampling
def sample(lib, model, data, prompt, length, temperature=0.8, seed=0):
    """``prompt`` continued by ``length`` characters drawn one at a time from the model's
    next-character distribution sharpened by ``temperature``. The prompt runs through the LSTM
    once; then each new character is one step, from the state (h, c) the last one left."""
    rng = np.random.default_rng(seed)
    ids = list(data.encode(prompt))
    model.eval()
    with lib.no_grad():
        logits, state, _ = model(lib.from_numpy(np.array([ids], dtype=np.int64)))
        for _ in range(length):
            last = np.array(logits[0, -1].numpy(), dtype=np.float64) / temperature
            probs = np.exp(last - last.max())
            next_id = int(rng.choice(len(probs), p=probs / probs.sum()))
            ids.append(next_id)
            step = lib.from_numpy(np.array([[next_id]], dtype=np.int64))
            logits, state, _ = model(step, state=state)
    model.train()
    return data.decode(ids)


# ----------------------------------------------------------------------------- main
def main(argv=None):
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=defaults.iters)
    parser.add_argument("--n-layer", type=int, default=defaults.n_layer)
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument("--n-embd", type=int, default=defaults.n_embd)
    parser.add_argument("--block-size", type=int, default=defaults.block_size)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--eval-interval", type=int, default=defaults.eval_interval)
    parser.add_argument("--eval-iters", type=int, default=defaults.eval_iters)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--dtype", choices=["float32", "float64"], default=defaults.dtype)
    parser.add_argument(
        "--checkpoint", default="char_lstm.npz", help="where to save (firefly.save)"
    )
    parser.add_argument("--sample-chars", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--torch", action="store_true", help="also train the model in PyTorch")
    parser.add_argument("--plot", metavar="PNG", help="write the loss curves (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.torch:  # checked now, not after firefly's training
        try:
            import torch
        except ImportError:
            sys.exit(
                "char_lstm.py --torch needs PyTorch, which is not installed: "
                "pip install torch==2.13.0"
            )
    if args.plot:
        require_matplotlib("char_lstm.py")
    config = Config(**{k: v for k, v in vars(args).items() if k in Config.__dataclass_fields__})
    import firefly

    description, text = load_text()
    data = CharData(text)
    print(
        f"data: {description}: {len(text):,} characters, {data.vocab_size} distinct; "
        f"{len(data.splits['train']):,} train / {len(data.splits['val']):,} validation"
    )
    print(
        f"model: LSTM {config.n_layer} layers of {config.hidden}, embedding {config.n_embd}, "
        f"{config.block_size} steps, batch {config.batch_size}, {config.iters} iterations, "
        f"{config.dtype}"
    )
    runs = {"firefly": train(firefly, config, data)}
    ours = runs["firefly"]
    firefly.save(
        {
            "model": ours.model.state_dict(),
            "optimizer": ours.optimizer.state_dict(),
            "iter": config.iters,
            "config": asdict(config),
            "alphabet": data.alphabet,
        },
        args.checkpoint,
    )
    print(f"saved checkpoint {args.checkpoint}")
    print(f"firefly: final val loss {ours.evaluations[-1][2]:.4f} | training {ours.seconds:.1f} s")
    if args.sample_chars:
        print("sample:")
        print(sample(firefly, ours.model, data, "\n", args.sample_chars, args.temperature))
    if args.torch:
        runs["torch"] = theirs = train(torch, config, data, ours.initial_state, name="torch")
        print(
            f"torch: final val loss {theirs.evaluations[-1][2]:.4f} | "
            f"training {theirs.seconds:.1f} s"
        )
    if args.plot:
        plot_loss_curves(args.plot, {name: run.evaluations for name, run in runs.items()})
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
