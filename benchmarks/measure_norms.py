"""Norms and softmax (bench_roofline's cases), firefly beside torch, by process CPU time, with
each case's fraction of the copy bandwidth measured in the same run at the same footprint.

    python -m benchmarks.measure_norms [--threads T] [--rounds R] [word ...]   (repository root)

On a shared machine a call's wall time mostly measures the scheduler; process CPU time
(``time.process_time``) does not count the time the process waited for a core, so at one thread
it is the number to read. At two threads it also counts threads that spin while they wait
(torch's OpenMP workers, Numba's workqueue), so the wall minimum is printed beside it. Each
round samples firefly, torch and a copy (``np.copyto`` of half the case's footprint, src + dst
= the footprint, so the copy runs from the cache level the case's data fits in) for
~``--seconds`` each; min and median per call over all rounds. ``of copy`` is the case's bytes
moved (bench_roofline's count) / its min CPU time, as a fraction of the copy's rate.
"""

import argparse
import functools
import time

import numba
import numpy as np
import torch

from benchmarks.bench_roofline import CASES


def sample(fn, seconds, cpu, wall):
    end = time.perf_counter() + seconds
    calls = 0
    while time.perf_counter() < end or calls < 3:
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        calls += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.1)
    parser.add_argument("words", nargs="*", default=["softmax", "norm"])
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    names = [n for n in CASES if any(w in n for w in args.words)]
    print(
        f"threads {args.threads}; per call, us: min (median) of process CPU time; wall min\n"
        f"{'case':34} {'firefly cpu':>17} {'torch cpu':>17} {'ratio':>11} "
        f"{'ff wall':>8} {'th wall':>8} {'copy GB/s':>9} {'of copy':>7}"
    )
    for name in names:
        case = CASES[name]("full")
        half = int((case.footprint or case.work) // 2)
        src, dst = np.ones(half // 4, np.float32), np.empty(half // 4, np.float32)
        runs = {k: ([], []) for k in ("firefly", "torch", "copy")}
        fns = {
            "firefly": case.firefly,
            "torch": case.torch,
            "copy": functools.partial(np.copyto, dst, src),
        }
        for fn in fns.values():
            fn()  # compile and warm
        for _ in range(args.rounds):
            for key, fn in fns.items():
                sample(fn, args.seconds, *runs[key])
        ff, th, cp = (np.asarray(runs[k][0]) for k in ("firefly", "torch", "copy"))
        copy_rate = 2 * src.nbytes / cp.min()
        print(
            f"{name:34} {ff.min() * 1e6:7.0f} ({np.median(ff) * 1e6:7.0f}) "
            f"{th.min() * 1e6:7.0f} ({np.median(th) * 1e6:7.0f}) "
            f"{ff.min() / th.min():4.2f} ({np.median(ff) / np.median(th):4.2f}) "
            f"{min(runs['firefly'][1]) * 1e6:8.0f} {min(runs['torch'][1]) * 1e6:8.0f} "
            f"{copy_rate / 1e9:9.1f} {case.work / ff.min() / copy_rate:7.0%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
