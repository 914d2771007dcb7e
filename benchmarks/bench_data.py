"""DataLoader throughput with worker processes, beside torch's DataLoader with the same workers.

    python benchmarks/bench_data.py [--runs 5] [--items 2048] [--workers 0,2]
    pytest benchmarks/bench_data.py --benchmark-enable --benchmark-columns=min,median

The Dataset's ``__getitem__`` takes 1 ms (``sleep``: it waits, as a decoder waiting on a disk;
``work``: it computes, as a Python augmentation does) and returns a 3x32x32 float32 image and
an int label; batches of 32 are collated by each library's default collate. A pass counts from
``iter(loader)`` to the last batch, worker start-up included (non-persistent workers, as both
libraries default to). The script prints items per second, min and median over the runs, and
firefly's throughput over torch's measured in the same run; it also times the first batch with
the 'fork' and 'spawn' start methods, which is why firefly uses 'fork' where it can.
"""

import argparse
import statistics
import time

import numpy as np
import pytest

from firefly.data import DataLoader

try:
    import torch
    import torch.utils.data
except ImportError:  # torch is an optional comparison
    torch = None

ITEM_SECONDS = 1e-3
BATCH = 32


class OneMillisecond:
    """``kind`` 'sleep' waits 1 ms per item, 'work' spins the CPU for 1 ms."""

    def __init__(self, items, kind):
        self.items, self.kind = items, kind

    def __len__(self):
        return self.items

    def __getitem__(self, i):
        if self.kind == "sleep":
            time.sleep(ITEM_SECONDS)
        else:
            end = time.perf_counter() + ITEM_SECONDS
            while time.perf_counter() < end:
                pass
        return np.full((3, 32, 32), i, np.float32), i


def loader(impl, dataset, workers, context=None):
    if impl == "torch":
        return torch.utils.data.DataLoader(
            dataset, batch_size=BATCH, num_workers=workers, multiprocessing_context=context
        )
    return DataLoader(
        dataset, batch_size=BATCH, num_workers=workers, multiprocessing_context=context
    )


def one_pass(data):
    """Items loaded in one pass, and the label sum (the same for every loader)."""
    items = total = 0
    for images, labels in data:
        items += images.shape[0]
        total += int(labels.numpy().sum())
    return items, total


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("impl", ["firefly", "torch"])
def test_loader_pass(benchmark, impl, workers):
    if impl == "torch" and torch is None:
        pytest.skip("needs torch for the comparison: pip install torch==2.13.0")
    benchmark.group = f"DataLoader: 128 items of 1 ms (sleep), batch {BATCH}, {workers} workers"
    dataset = OneMillisecond(128, "sleep")
    items, total = benchmark(lambda: one_pass(loader(impl, dataset, workers)))
    assert (items, total) == (128, sum(range(128)))


def _throughputs(impl, dataset, workers, runs):
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        items, _ = one_pass(loader(impl, dataset, workers))
        rates.append(items / (time.perf_counter() - start))
    return rates


def _first_batch_seconds(impl, context, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        next(iter(loader(impl, OneMillisecond(64, "sleep"), 2, context)))
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--items", type=int, default=2048)
    parser.add_argument("--workers", default="0,2")
    args = parser.parse_args()
    impls = ["firefly"] + (["torch"] if torch is not None else [])
    print(f"{args.items} items of 1 ms, batch {BATCH}, {args.runs} runs; items/s (min / median)")
    print(f"{'getitem':8} {'workers':>7} " + " ".join(f"{i:>22}" for i in impls) + "  ff/torch")
    for kind in ("sleep", "work"):
        dataset = OneMillisecond(args.items, kind)
        for workers in map(int, args.workers.split(",")):
            # Alternate the libraries run by run, so that the machine's load falls on both.
            rates = {impl: [] for impl in impls}
            for _ in range(args.runs):
                for impl in impls:
                    rates[impl] += _throughputs(impl, dataset, workers, 1)
            cells = [f"{min(rates[i]):10.0f} / {statistics.median(rates[i]):8.0f}" for i in impls]
            ratio = (
                f"{statistics.median(rates['firefly']) / statistics.median(rates['torch']):8.2f}"
                if torch is not None
                else ""
            )
            print(f"{kind:8} {workers:>7} " + " ".join(f"{c:>22}" for c in cells) + ratio)
    print("\nfirst batch, 2 workers (seconds, min / median):")
    for context in ("fork", "spawn"):
        for impl in impls:
            times = _first_batch_seconds(impl, context, max(2, args.runs // 2))
            print(f"  {context:6} {impl:8} {min(times):.3f} / {statistics.median(times):.3f}")


if __name__ == "__main__":
    main()
