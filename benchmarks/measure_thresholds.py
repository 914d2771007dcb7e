"""Measure where the parallel (prange) build of a kernel starts to beat the serial one.

    python -m benchmarks.measure_thresholds [--repeats N] [--layers]   (from the repository root)

For memory-bound kernels (add, a row sum, layer norm forward and backward), a transcendental
one (exp) and softmax backward, the row kernels over rows of 1000, all float32, it times the
serial and the parallel build of the same SizedKernel over sizes 1e2..1e7 (best of N runs of
enough calls to last ~20 ms) and prints the table and the crossover: the smallest size from
which the parallel build is faster at every larger size measured. Set
``PARALLEL_MIN_MEMORY_BOUND`` and ``PARALLEL_MIN_TRANSCENDENTAL`` in firefly/kernels/_jit.py
(and the cost each kernel is built with) from it. Run it on a quiet machine:
other load makes the parallel build look worse.

With ``--layers`` it runs itself once per Numba threading layer (workqueue, omp, tbb; tbb needs
the ``tbb`` pip package) and prints
each layer's table: the 100-element row is the layer's fork/join cost. docs/performance.md has
the measurements and the choice made from them.

The crossovers it prints are those in isolation. firefly/kernels/_jit.py sets its thresholds
higher and says why: in a training step the parallel kernels share the cores
with multithreaded BLAS calls, and lose there what they win here.
"""

import argparse
import os
import subprocess
import sys
import time

import numba
import numpy as np

from firefly.ops import get

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


ROW = 1000  # elements per row of the row kernels' cases (a row of ``size`` below that)


def cases(size):
    rng = np.random.default_rng(size)
    a, b = (rng.uniform(-1, 1, size).astype(np.float32) for _ in range(2))
    out = np.empty_like(a)
    # The row kernels over rows of ROW: a row sum, softmax backward, layer norm.
    rows = (size // min(size, ROW), min(size, ROW))
    x, g, y = a.reshape(rows), b.reshape(rows), out.reshape(rows)
    weight, bias = np.ones(rows[1], np.float32), np.zeros(rows[1], np.float32)
    mean, rstd = np.empty(rows[0]), np.empty(rows[0])
    dweight, dbias = np.empty_like(weight), np.empty_like(weight)
    dx = np.empty_like(x)
    return {
        "add (memory-bound)": (
            get("add").forward_kernel[0],
            (a, b, out),
        ),  # the flat (equal shapes) kernel
        "exp (transcendental)": (get("exp").forward_kernel, (a, out)),
        "row sum (rows)": (
            get("sum").forward_kernel[1],
            (x.reshape(rows + (1,)), 1.0, np.empty((rows[0], 1), np.float32)),
        ),
        "softmax backward (rows)": (
            get("softmax").backward_kernel,
            (g.reshape(rows + (1,)), x.reshape(rows + (1,)), dx.reshape(rows + (1,))),
        ),
        "layer_norm forward (rows)": (
            get("layer_norm").forward_kernel,
            (x, weight, bias, 1e-5, mean, rstd, y),
        ),
        "layer_norm backward (rows)": (
            get("layer_norm").backward_kernel,
            (g, x, weight, mean, rstd, True, dx, dweight, dbias),
        ),
    }


def crossover(rows):
    """Smallest size from which parallel beats serial at every larger size, or None."""
    winner = None
    for size, serial, parallel in reversed(rows):
        if parallel >= serial:
            break
        winner = size
    return winner


LAYERS = ("workqueue", "omp", "tbb")


def run_per_layer(repeats):
    """This script once per threading layer, each in a process of its own (Numba picks its
    layer once per process)."""
    for layer in LAYERS:
        # firefly loads pip's libtbb itself (firefly/kernels/_threading.py): no library path.
        env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
        command = [sys.executable, "-m", "benchmarks.measure_thresholds", "--repeats", str(repeats)]
        print(f"\n===== threading layer {layer}", flush=True)
        subprocess.run(command, env=env, check=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", action="store_true", help="one table per threading layer")
    args = parser.parse_args()
    if args.layers:
        run_per_layer(args.repeats)
        return
    results = {}
    for size in SIZES:
        for label, (kernel, call_args) in cases(size).items():
            serial = best_time(lambda k=kernel, a=call_args: k.serial(*a), args.repeats)
            parallel = best_time(lambda k=kernel, a=call_args: k.parallel(*a), args.repeats)
            results.setdefault(label, []).append((size, serial, parallel))
    print(f"threading layer {numba.threading_layer()}, {numba.get_num_threads()} threads")
    for label, rows in results.items():
        print(f"\n{label}\n{'size':>10} {'serial µs':>11} {'parallel µs':>12} {'ratio':>6}")
        for size, serial, parallel in rows:
            ratio = serial / parallel
            print(f"{size:>10} {serial * 1e6:>11.2f} {parallel * 1e6:>12.2f} {ratio:>6.2f}")
        print(f"crossover: {crossover(rows)}")


if __name__ == "__main__":
    main()
