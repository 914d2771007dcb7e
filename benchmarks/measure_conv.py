"""Convolutions at issue 17's shapes, fwd+bwd (forward and the three gradients), float32,
firefly and torch alternated in one process, by process CPU time and by wall time.

    python -m benchmarks.measure_conv [--threads T] [--rounds R] [name ...]   (repository root)

On a shared machine a call's wall time mostly measures the scheduler: a process under load
gets a core a fraction of the time, and pytest-benchmark's wall-clock minimum swings by tens of
percent between runs. Process CPU time (``time.process_time``, all of the process's threads)
does not count the time the process waited for a core, so at one thread the CPU-time ratio is
the one to read there; at more threads it also counts threads that spin while they wait
(torch's OpenMP workers), and the wall ratios are printed beside it. Each round samples firefly,
then torch, then the sgemm peak (512^3 through ``firefly.kernels.cblas.gemm``, NumPy's
OpenBLAS, which the convolution kernels call) for ~0.15 s each; the table gives the minimum
over the rounds and each side's fraction of that peak (one thread: GFLOP/s by CPU time).
Each side runs bench_layers' three passes (forward without a graph, forward + weight gradient,
forward + both gradients); the last columns split the time into forward, weight gradient and
input gradient (differences of the passes' minima, CPU time at one thread and wall time
otherwise) and give firefly's three as fractions of the peak, each phase being one GEMM's
work. The shapes and their flop counts are ``benchmarks/bench_layers.py``'s;
docs/performance.md has a run.
"""

import argparse
import os
import time

import numba
import numpy as np

from benchmarks.bench_layers import CONV_PASSES, CONV_SHAPES, conv_flops, conv_pass
from firefly.kernels.cblas import gemm

PEAK_SIZE = 512


@numba.njit(cache=True)
def _numba_gemm(a, b, out):
    gemm(a, b, out, 0.0)


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


def phases(passes):
    """Per-phase minimum times from the passes' (forward, fwd+weight-grad, fwd+both grads):
    forward, weight gradient and input gradient, each the difference of two passes' minima."""
    forward, with_weight, full = (min(times) for times in passes)
    return forward, with_weight - forward, full - with_weight


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=0.15, help="per side per round")
    parser.add_argument("names", nargs="*", default=list(CONV_SHAPES))
    args = parser.parse_args()
    import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS too before limiting them)
    import threadpoolctl
    import torch

    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    a = np.random.default_rng(0).random((PEAK_SIZE, PEAK_SIZE), dtype=np.float32)
    product = np.empty_like(a)
    by_cpu = args.threads == 1  # the clock whose minima the peak fractions divide
    with threadpoolctl.threadpool_limits(args.threads, user_api="blas"):
        _numba_gemm(a, a, product)
        print(f"threads {args.threads}, load average {os.getloadavg()[0]:.1f}")
        print(
            f"{'case':16} {'firefly cpu ms':>14} {'torch cpu ms':>12} {'cpu ratio':>9} "
            f"{'wall min':>8} {'wall med':>8} {'ff/peak':>7} {'torch/peak':>10}   "
            f"{'fwd / dw / dx ms, firefly | torch':34} {'ff fwd/dw/dx of peak':>20}"
        )
        peak_cpu, peak_wall = [], []
        for name in args.names:
            steps = {
                (side, kind): conv_pass(name, kind, side)
                for side in ("firefly", "torch")
                for kind in CONV_PASSES
            }
            times = {key: ([], []) for key in steps}
            for step in steps.values():
                step()  # compile or load the kernels, allocate the scratch
            for _ in range(args.rounds):
                for key, step in steps.items():
                    cpu, wall = sample(step, args.seconds / len(CONV_PASSES))
                    times[key][0].extend(cpu)
                    times[key][1].extend(wall)
                cpu, wall = sample(lambda: _numba_gemm(a, a, product), 0.02)
                peak_cpu.extend(cpu)
                peak_wall.extend(wall)
            peak = 2 * PEAK_SIZE**3 / min(peak_cpu if by_cpu else peak_wall)
            work = conv_flops(name)
            full = "fwd+weight+input-grad"
            (f_cpu, f_wall), (t_cpu, t_wall) = times["firefly", full], times["torch", full]
            split = {
                side: phases([times[side, kind][0 if by_cpu else 1] for kind in CONV_PASSES])
                for side in ("firefly", "torch")
            }
            ms = " | ".join(
                "/".join(f"{t * 1e3:.2f}" for t in split[side]) for side in ("firefly", "torch")
            )
            fractions = "/".join(f"{work / max(t, 1e-9) / peak:.2f}" for t in split["firefly"])
            print(
                f"{name:16} {min(f_cpu) * 1e3:14.3f} {min(t_cpu) * 1e3:12.3f} "
                f"{min(f_cpu) / min(t_cpu):9.2f} {min(f_wall) / min(t_wall):8.2f} "
                f"{np.median(f_wall) / np.median(t_wall):8.2f} "
                f"{3 * work / min(f_cpu if by_cpu else f_wall) / peak:7.2f} "
                f"{3 * work / min(t_cpu if by_cpu else t_wall) / peak:10.2f}   "
                f"{ms:34} {fractions:>20}",
                flush=True,
            )
        print(f"sgemm peak {2 * PEAK_SIZE**3 / min(peak_cpu) / 1e9:.1f} GFLOP/s (CPU time)")


if __name__ == "__main__":
    main()
