"""Measure where the parallel (prange) build of a kernel starts to beat the serial one.

    python -m benchmarks.measure_thresholds [--repeats N]      (from the repository root)

For a memory-bound kernel (add) and a transcendental one (exp), both float32, it times the
serial and the parallel build of the same SizedKernel over sizes 1e2..1e7 (best of N runs of
enough calls to last ~20 ms) and prints the table and the crossover: the smallest size from
which the parallel build is faster at every larger size measured. Set
``PARALLEL_MIN_MEMORY_BOUND`` and ``PARALLEL_MIN_TRANSCENDENTAL`` in firefly/kernels/_jit.py
from it. Run it on a quiet machine: other load makes the parallel build look worse.

Measured on the 2-core dev machine (numba 0.68, omp layer, --repeats 3) while colleagues'
test runs kept the load average near 2.5, so the parallel column is pessimistic; a second
run under heavier load had parallel calls stalled for ~6.6 ms and no crossover at all.
Re-run on a quiet machine before trusting these.

    add (memory-bound)                          exp (transcendental)
        size   serial µs  parallel µs  ratio        size   serial µs  parallel µs  ratio
         100        0.46         2.21   0.21         100        0.58         2.18   0.27
         300        0.46         2.24   0.21         300        1.12         2.40   0.47
        1000        0.50         2.27   0.22        1000        3.33         4.29   0.78
        3000        0.77         2.43   0.32        3000       11.17         9.74   1.15
       10000        1.65         2.90   0.57       10000       32.07        29.10   1.10
       30000        4.53         4.36   1.04       30000       81.15        80.37   1.01
      100000       16.85        11.03   1.53      100000      315.24       283.84   1.11
      300000       46.82        28.91   1.62      300000      837.30       804.98   1.04
     1000000      186.36        94.50   1.97     1000000     2714.34      2755.32   0.99
     3000000     1397.42       984.43   1.42     3000000     8102.78      7957.27   1.02
    10000000     5967.66      4267.00   1.40    10000000    28550.87     25623.14   1.11
    crossover: 30000                            crossover: 3000000 (noise: parallel first wins at 3000)

add crosses at ~3e4, hence PARALLEL_MIN_MEMORY_BOUND = 32_768. exp's parallel build first
wins at 3e3 but only by 1.0-1.15x under this load (about 1.8x is expected on two idle cores),
so PARALLEL_MIN_TRANSCENDENTAL stays at 8_192, between that and the issue's ~5e3 measurement.
"""
import argparse
import time

import numpy as np

from firefly.kernels import elementwise

SIZES = [100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000]


def best_time(fn, repeats):
    """Best per-call seconds over ``repeats`` batches of calls lasting ~20 ms each."""
    fn()  # compile (or load from cache) outside the timing
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < 0.02:
        fn()
        calls += 1
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def cases(size):
    rng = np.random.default_rng(size)
    a, b = (rng.uniform(-1, 1, size).astype(np.float32) for _ in range(2))
    out = np.empty_like(a)
    # add reads the 3-D broadcast form; equal shapes are one (1, 1, n) run.
    flat3 = (1, 1, size)
    return {
        "add (memory-bound)": (elementwise.add_forward, (a.reshape(flat3), b.reshape(flat3), out.reshape(flat3))),
        "exp (transcendental)": (elementwise.exp_forward, (a, out)),
    }


def crossover(rows):
    """Smallest size from which parallel beats serial at every larger size, or None."""
    winner = None
    for size, serial, parallel in reversed(rows):
        if parallel >= serial:
            break
        winner = size
    return winner


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for size in SIZES:
        for label, (kernel, call_args) in cases(size).items():
            serial = best_time(lambda: kernel.serial(*call_args), args.repeats)
            parallel = best_time(lambda: kernel.parallel(*call_args), args.repeats)
            results.setdefault(label, []).append((size, serial, parallel))
    for label, rows in results.items():
        print(f"\n{label}\n{'size':>10} {'serial µs':>11} {'parallel µs':>12} {'ratio':>6}")
        for size, serial, parallel in rows:
            print(f"{size:>10} {serial * 1e6:>11.2f} {parallel * 1e6:>12.2f} {serial / parallel:>6.2f}")
        print(f"crossover: {crossover(rows)}")


if __name__ == "__main__":
    main()
