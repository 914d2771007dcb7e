"""Command line: ``python -m firefly demo`` trains a small MLP on synthetic regression data
(``--model digits-cnn``: a CNN on real handwritten digits); ``python -m firefly info`` describes
the installation; ``python -m firefly warmup`` fills the kernel cache, and ``python -m firefly
cache clear`` empties it."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from numpy.typing import DTypeLike

if TYPE_CHECKING:
    from firefly.distributed import DistributedDataParallel
    from firefly.nn import Module
    from firefly.optim.optimizer import FusedOptimizer
    from firefly.tensor import Tensor

# The type of a numeric option value (see _number).
_Number = TypeVar("_Number", int, float)

# The demo's default lengths: at lr=0.01 the MLP's loss falls a hundredfold in 100 full-batch
# steps (about 0.1 ms each), where 10 steps barely move it; the CNN's epochs are whole passes.
MLP_EPOCHS = 100
DIGITS_CNN_EPOCHS = 10


def _regression_data(
    rng: np.random.Generator, n_samples: int, dtype: DTypeLike
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic linear-regression data: 10 normal features, y = X @ true_weights + 0.1 * noise."""
    X = rng.normal(size=(n_samples, 10))
    true_weights = np.array(
        [[1.5], [-2.0], [1.0], [1.5], [-2.0], [1.0], [3.0], [-2.0], [1.0], [3.0]]
    )
    y = X @ true_weights + rng.normal(size=(n_samples, 1)) * 0.1
    return X.astype(dtype), y.astype(dtype)


def _data_parallel(
    model: Module, optimizer: FusedOptimizer, inputs: Tensor, targets: Tensor
) -> tuple[DistributedDataParallel, Tensor, Tensor]:
    """``demo --distributed``: DDP over MPI, each rank one share of the batch, only rank 0
    prints."""
    import firefly
    from firefly import distributed

    distributed.init()
    rank, world = distributed.rank(), distributed.world_size()
    if rank != 0:
        sys.stdout = open(os.devnull, "w")
    rows = inputs.numpy()[rank::world]
    print(
        f"data-parallel on {world} ranks over MPI: "
        f"each rank trains on {len(rows)} of the {len(inputs)} rows; "
        "losses are the whole batch's"
    )
    share = firefly.Tensor(rows), firefly.Tensor(targets.numpy()[rank::world])
    return distributed.DistributedDataParallel(model, optimizer), *share


def demo(args: argparse.Namespace) -> int:
    if args.epochs is None:
        args.epochs = DIGITS_CNN_EPOCHS if args.model == "digits-cnn" else MLP_EPOCHS
    if args.model == "digits-cnn":
        from firefly import digits

        return digits.run(args)
    import firefly
    from firefly import nn
    from firefly.kernels._jit import kernel_load_counts
    from firefly.nn.optimizers.sgd import SGD

    dtype = np.dtype(args.dtype)
    firefly.manual_seed(args.seed)
    X, y = _regression_data(np.random.default_rng(args.seed), 1024, dtype)
    inputs, targets = firefly.Tensor(X), firefly.Tensor(y)
    model: Module = nn.Sequential(
        nn.Linear(10, 32, dtype=dtype), nn.ReLU(), nn.Linear(32, 1, dtype=dtype)
    )
    loss_fn = nn.MSELoss()
    # SGD's __init__(params, lr=...) is generated from its declared hyperparameters when the
    # class is created, so mypy sees only FusedOptimizer's (params, defaults).
    optimizer = SGD(model.get_parameters(), lr=args.lr)  # type: ignore[call-arg]
    if args.distributed:
        model, inputs, targets = _data_parallel(model, optimizer, inputs, targets)
    print(
        f"firefly {firefly.__version__}: training an MLP 10-32-1 on synthetic regression data "
        f"({dtype}, {args.epochs} epochs, lr={args.lr}, seed={args.seed}, full batch of 1024)"
    )
    report_every = max(1, args.epochs // 10)  # about ten epoch lines, whatever the epochs
    step_times: list[float] = []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimizer.step()
        step_times.append(time.perf_counter() - t0)
        if args.distributed:  # the whole batch's loss: the mean over the ranks' equal shares
            loss = firefly.Tensor(
                firefly.distributed.all_reduce(np.array([loss.item()]), op="mean")
            )
        if epoch == 0 or (epoch + 1) % report_every == 0 or epoch + 1 == args.epochs:
            print(
                f"Epoch [{epoch + 1}/{args.epochs}], Loss: {loss.item():.6f}, "
                f"step: {step_times[-1] * 1e3:.3f} ms"
            )
        if epoch == 0:
            loaded, compiled = kernel_load_counts()
            first_loss = loss.item()
    total = time.perf_counter() - start
    # The first step compiles every kernel it uses, or loads it from the on-disk cache: it is
    # reported on its own and kept out of the median.
    how = (
        f"compiled {compiled} kernel(s), loaded {loaded} from the cache"
        if compiled
        else f"loaded {loaded} kernel(s) from the cache"
        if loaded
        else "kernels already in memory"
    )
    later = (
        f"; later steps: median {statistics.median(step_times[1:]) * 1e3:.3f} ms "
        f"over {len(step_times) - 1}"
        if len(step_times) > 1
        else ""
    )
    print(f"first step {step_times[0] * 1e3:.1f} ms ({how}){later}")
    print(f"final loss {loss.item():.6f}, down from {first_loss:.6f} | total {total:.3f} s")
    return 0


def _megabytes(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def info(args: argparse.Namespace) -> int:
    import numba

    import firefly
    from firefly.install import DISTRIBUTION
    from firefly.kernels import _cache, _jit
    from firefly.ops import names, origin

    # The threading layer is chosen when it is launched, which asking its thread count does;
    # no kernel needs to compile for it.
    _jit.thread_count()
    print(f"firefly        {firefly.__version__}")
    print(f"distribution   {DISTRIBUTION} (pip install {DISTRIBUTION}; it imports as firefly)")
    print(f"numpy          {np.__version__}")
    print(f"numba          {numba.__version__}")
    print(f"python         {sys.version.split()[0]}")
    print(f"threading      {numba.threading_layer()} layer, {numba.get_num_threads()} threads")
    if _cache.cache_enabled and _cache.root_is_writable():
        folder = _cache.cache_folder()
        print(
            f"kernel cache   {folder} ({_megabytes(_cache.folder_size(folder))}; all versions: "
            f"{_megabytes(_cache.folder_size(_cache.cache_root()))}; "
            "`python -m firefly cache clear` empties it)"
        )
    elif _cache.cache_enabled:
        print(f"kernel cache   {_cache.cache_root()} is not writable: Numba's own folders are used")
    else:
        print(
            "kernel cache   off: no writable cache folder, "
            "kernels recompile each run (set NUMBA_CACHE_DIR)"
        )
    print(
        f"parallel from  {_jit.PARALLEL_MIN_MEMORY_BOUND} elements (memory-bound), "
        f"{_jit.PARALLEL_MIN_TRANSCENDENTAL} (transcendental)"
    )
    ops = names()
    print(f"registered ops ({len(ops)}):")
    width = max(map(len, ops))
    for name in ops:
        print(f"  {name:<{width}}  {origin(name)}")
    return 0


def cache(args: argparse.Namespace) -> int:
    from firefly.kernels import _cache

    root = _cache.cache_root()
    size = _cache.folder_size(root)
    if args.action == "clear":
        _cache.clear()
        print(f"kernel cache   {root}: removed {_megabytes(size)}")
    else:
        print(f"kernel cache   {root}: {_megabytes(size)}")
    return 0


def warmup(args: argparse.Namespace) -> int:
    from firefly.warmup import DTYPES, warm

    ops = [name.strip() for name in args.ops.split(",") if name.strip()] if args.ops else None
    return 1 if warm(DTYPES[args.dtype], ops=ops, processes=args.processes) else 0


def _number(
    text: str, kind: str, parse: Callable[[str], _Number], minimum: _Number, strict: bool
) -> _Number:
    """Parse one option value; argparse prefixes the message with the option's name."""
    value: _Number | None
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not (value > minimum if strict else value >= minimum):
        raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _number(text, "a positive int", int, 0, strict=True)


def _positive_float(text: str) -> float:
    return _number(text, "a positive number", float, 0.0, strict=True)


def _non_negative_int(text: str) -> int:
    return _number(text, "a non-negative int", int, 0, strict=False)


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: ...)" to an option's help, except where the default is None: those
    options say in their own words what leaving them out does."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firefly", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo",
        help="train a small MLP and time each step",
        description="Train an MLP (10-32-1, MSE loss, SGD, full batch) on synthetic linear "
        "regression data, reporting the loss about ten times as it falls and the time per step; "
        "or, with --model digits-cnn, a CNN on scikit-learn's handwritten digits, with AdamW.",
        formatter_class=_DefaultsHelpFormatter,
    )
    demo_parser.add_argument(
        "--model",
        choices=("seed-mlp", "digits-cnn"),
        default="seed-mlp",
        help="the MLP on synthetic regression data, or a CNN on scikit-learn's handwritten digits",
    )
    demo_parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help=f"full-batch steps, default {MLP_EPOCHS} (digits-cnn: epochs, default "
        f"{DIGITS_CNN_EPOCHS})",
    )
    demo_parser.add_argument(
        "--lr", type=_positive_float, default=0.01, help="learning rate (digits-cnn: AdamW's)"
    )
    demo_parser.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="dtype of the data and parameters",
    )
    demo_parser.add_argument(
        "--seed", type=_non_negative_int, default=0, help="seed of the data and the initial weights"
    )
    demo_parser.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over MPI: run as mpiexec -n N python -m firefly demo --distributed",
    )
    demo_parser.set_defaults(run=demo)
    info_parser = commands.add_parser(
        "info", help="versions, threading, kernel cache and registered ops"
    )
    info_parser.set_defaults(run=info)
    cache_parser = commands.add_parser(
        "cache",
        help="show or empty the on-disk kernel cache",
        description="The compiled kernels of every firefly version live in one user-level folder "
        "($NUMBA_CACHE_DIR/firefly, else $XDG_CACHE_HOME/firefly, else ~/.cache/firefly). "
        "`cache` prints its size; `cache clear` empties it.",
    )
    cache_parser.add_argument("action", nargs="?", choices=("size", "clear"), default="size")
    cache_parser.set_defaults(run=cache)
    warmup_parser = commands.add_parser(
        "warmup",
        help="compile the built-in kernels into the on-disk kernel cache",
        description="Compile every built-in op's and optimizer's kernels into the on-disk kernel "
        "cache (see `python -m firefly cache`), so that later processes load them instead of "
        "compiling. Run it after installing, in a Docker image build, or before a benchmark.",
        formatter_class=_DefaultsHelpFormatter,
    )
    warmup_parser.add_argument(
        "--dtype",
        choices=("float32", "float64", "all"),
        default="all",
        help="the dtype(s) to compile kernels for",
    )
    warmup_parser.add_argument(
        "--ops",
        default=None,
        help="comma-separated op names to warm (default: every built-in op)",
    )
    warmup_parser.add_argument(
        "--processes", type=_positive_int, default=os.cpu_count() or 1, help="worker processes"
    )
    warmup_parser.set_defaults(run=warmup)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
