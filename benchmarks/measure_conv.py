"""Convolutions at issue 17's shapes, fwd+bwd (forward and the three gradients), float32,
firefly and torch alternated in one process, by process CPU time and by wall time.

    python -m benchmarks.measure_conv [--threads T] [--rounds R] [name ...]   (repository root)

On a shared machine a call's wall time mostly measures the scheduler: a process under load
gets a core a fraction of the time, and pytest-benchmark's wall-clock minimum swings by tens of
percent between runs. Process CPU time (``time.process_time``, all of the process's threads)
does not count the time the process waited for a core, so at one thread the CPU-time ratio is
the one to read there; at more threads it also counts threads that spin while they wait
(torch's OpenMP workers), and the wall ratios are printed beside it. Each round samples firefly,
then torch, then the sgemm peak (512^3 through Numba's ``np.dot``, the BLAS the convolution
kernels call) for ~0.15 s each; the table gives the minimum over the rounds and each side's
fraction of that peak (one thread: GFLOP/s by CPU time). The shapes and their flop counts are
``benchmarks/bench_layers.py``'s; docs/performance.md has a run.
"""

import argparse
import os
import time

import numba
import numpy as np

from benchmarks.bench_layers import CONV_SHAPES, conv_arrays, conv_flops
from firefly import ops
from firefly.tensor import Tensor

PEAK_SIZE = 512


@numba.njit(cache=True)
def _numba_gemm(a, b, out):
    np.dot(a, b, out)


def conv_step(name, implementation):
    """One fwd+bwd call of case ``name``: the output's gradient is ones."""
    import torch

    attrs = CONV_SHAPES[name][3]
    arrays = conv_arrays(name)
    if implementation == "torch":
        x, w, b = (torch.tensor(a, requires_grad=True) for a in arrays)

        def run():
            out = torch.nn.functional.conv2d(x, w, b, **attrs)
            out.backward(torch.ones_like(out))

        return run
    x, w, b = (Tensor(a, requires_grad=True) for a in arrays)

    def run():
        out = ops.apply("conv2d", x, w, b, **attrs)
        out.backward(np.ones(out.shape, dtype=np.float32))

    return run


def sample(fn, seconds):
    """(CPU seconds, wall seconds) of each call of ``fn`` over at least ``seconds``."""
    cpu, wall = [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(cpu) < 3:
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return cpu, wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=0.15, help="per side per round")
    parser.add_argument("names", nargs="*", default=list(CONV_SHAPES))
    args = parser.parse_args()
    import scipy.linalg.cython_blas  # noqa: F401  (load Numba's BLAS before limiting it)
    import threadpoolctl
    import torch

    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    a = np.random.default_rng(0).random((PEAK_SIZE, PEAK_SIZE), dtype=np.float32)
    product = np.empty_like(a)
    with threadpoolctl.threadpool_limits(args.threads, user_api="blas"):
        _numba_gemm(a, a, product)
        print(f"threads {args.threads}, load average {os.getloadavg()[0]:.1f}")
        print(
            f"{'case':16} {'firefly cpu ms':>14} {'torch cpu ms':>12} {'cpu ratio':>9} "
            f"{'wall min':>8} {'wall med':>8} {'ff/peak':>7} {'torch/peak':>10}"
        )
        peak_cpu, peak_wall = [], []
        for name in args.names:
            steps = {side: conv_step(name, side) for side in ("firefly", "torch")}
            times = {side: ([], []) for side in steps}
            for step in steps.values():
                step()  # compile or load the kernels, allocate the scratch
            for _ in range(args.rounds):
                for side, step in steps.items():
                    cpu, wall = sample(step, args.seconds)
                    times[side][0].extend(cpu)
                    times[side][1].extend(wall)
                cpu, wall = sample(lambda: _numba_gemm(a, a, product), 0.02)
                peak_cpu.extend(cpu)
                peak_wall.extend(wall)
            peak = 2 * PEAK_SIZE**3 / min(peak_cpu if args.threads == 1 else peak_wall)
            work = 3 * conv_flops(name)
            (f_cpu, f_wall), (t_cpu, t_wall) = times["firefly"], times["torch"]
            print(
                f"{name:16} {min(f_cpu) * 1e3:14.3f} {min(t_cpu) * 1e3:12.3f} "
                f"{min(f_cpu) / min(t_cpu):9.2f} {min(f_wall) / min(t_wall):8.2f} "
                f"{np.median(f_wall) / np.median(t_wall):8.2f} "
                f"{work / min(f_cpu if args.threads == 1 else f_wall) / peak:7.2f} "
                f"{work / min(t_cpu if args.threads == 1 else t_wall) / peak:10.2f}",
                flush=True,
            )
        print(f"sgemm peak {2 * PEAK_SIZE**3 / min(peak_cpu) / 1e9:.1f} GFLOP/s (CPU time)")


if __name__ == "__main__":
    main()
