"""Elementwise ops at 1e6 and 1e7 elements, float32, firefly and torch each alone in a process
of its own, the processes alternated, at the default thread count.

    python -m benchmarks.measure_elementwise [--sizes 1e6,1e7] [--processes 2]   (repository root)

Side by side in one process the ratio measures whose threads spin: torch's OpenMP workers
busy-wait after each parallel region, and on a machine with few cores a spinning worker holds
the core that firefly's threading-layer worker needs next (and the other way round:
``OMP_WAIT_POLICY=passive`` turns a 1.6x add into 0.68x; docs/performance.md, session 33).
A user runs one of the two, so each runs here in a process without the other, and the table
gives each op's minimum and median over the processes' rounds, and firefly's ratio to torch.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROUNDS = 15
OPS = ("add", "mul", "relu", "sum")


def _ops(library, a, b):
    if library == "firefly":
        import firefly

        x, y = firefly.tensor(a), firefly.tensor(b)
    else:
        import torch

        x, y = torch.from_numpy(a), torch.from_numpy(b)
    return {
        "add": lambda: x + y,
        "mul": lambda: x * y,
        "relu": lambda: x.relu(),
        "sum": lambda: x.sum(),
    }


def measure(library, size):
    """Seconds per call of each op, ROUNDS rounds, in this process."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(size).astype(np.float32)
    b = rng.standard_normal(size).astype(np.float32)
    ops = _ops(library, a, b)
    calls = max(1, int(1e8 // size))  # about 0.1 s of memory traffic per sample
    for fn in ops.values():
        fn()
    times = {name: [] for name in ops}
    for _ in range(ROUNDS):
        for name, fn in ops.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times[name].append((time.perf_counter() - start) / calls)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e6,1e7")
    parser.add_argument("--processes", type=int, default=2, help="processes per library")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        library, size = args.child
        print(json.dumps(measure(library, int(float(size)))))
        return
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    print(f"load average {os.getloadavg()[0]:.1f}; microseconds, min / median over the rounds")
    print(f"{'op':6s} {'size':>9s} {'firefly':>17s} {'torch':>17s} {'ratio min/med':>14s}")
    for size in sizes:
        runs = {"firefly": {op: [] for op in OPS}, "torch": {op: [] for op in OPS}}
        for _ in range(args.processes):
            for library in ("firefly", "torch"):
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.measure_elementwise", "--child"]
                    + [library, str(size)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                for op, seconds in json.loads(out.splitlines()[-1]).items():
                    runs[library][op] += seconds
        for op in OPS:
            ours, theirs = np.array(runs["firefly"][op]), np.array(runs["torch"][op])
            print(
                f"{op:6s} {size:9.0e} {ours.min() * 1e6:8.1f}/{np.median(ours) * 1e6:8.1f}"
                f" {theirs.min() * 1e6:8.1f}/{np.median(theirs) * 1e6:8.1f}"
                f" {ours.min() / theirs.min():7.2f}/{np.median(ours) / np.median(theirs):.2f}"
            )


if __name__ == "__main__":
    main()
