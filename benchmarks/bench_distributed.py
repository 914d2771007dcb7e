"""Data-parallel training over MPI, measured inside real ``mpiexec`` jobs, one thread per rank
(NUMBA_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1):

- gradient averaging: DDP's step pre-hook (``flat_grads()``, one in-place Allreduce per flat
  buffer, the division by the number of ranks) beside a bare mpi4py ``Allreduce`` of the same
  buffer, and beside that Allreduce plus the division (the least any mean costs), interleaved
  in one 2-rank job, for 10k values, the 784-256-128-10 classifier (235k) and 1M; and, the
  same way, a whole SGD ``step()`` with DDP's averaging beside a bare Allreduce followed by
  ``step()`` without it (whoever touches the reduced buffer first pays for fetching the lines
  the other rank wrote, so this is the overhead as training sees it);
- throughput of one training step of the 784-256-128-10 classifier at a global batch of 256:
  1 rank on the whole batch against 2 ranks on half each, samples per second.

    pytest benchmarks/bench_distributed.py --benchmark-enable -s

The numbers come from ``time.perf_counter`` inside the job on rank 0 (averaging: the median and
the minimum over repeats, ranks aligned by a barrier before each, the minimum being the least
disturbed by other processes; throughput: the mean over the timed steps) and are printed as
tables and stored in the benchmark's ``extra_info``; pytest-benchmark's own time is the whole
job's. Plain test runs (``--benchmark-disable``) run each job once with few repeats, as a smoke
test. Run as a script under mpiexec, this file is the job itself.
"""

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MPIEXEC = Path(sys.executable).parent / "mpiexec"
SIZES = {
    "10k": 10_000,
    "784-classifier": 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10,
    "1M": 1_000_000,
}
GLOBAL_BATCH = 256


# ----------------------------------------------------------------------------- inside the job
def _averaging(repeats):
    """{size name: {method: (median seconds, minimum seconds)}} on rank 0."""
    from mpi4py import MPI

    from firefly import distributed as dist
    from firefly import nn
    from firefly.optim import SGD

    dist.init()
    comm, world = MPI.COMM_WORLD, dist.world_size()
    results = {}
    for name, size in SIZES.items():
        model = nn.Sequential(
            nn.Linear(size // 10, 10, bias=False)
        )  # one float32 buffer of `size` values
        optimizer = SGD(model.get_parameters(), lr=0.1)
        ddp = dist.DistributedDataParallel(model, optimizer)
        optimizer.zero_grad()
        averager = ddp._averagers[0]
        (bare,) = optimizer.flat_grads()  # every method works on this same buffer

        def allreduce(bare=bare):
            comm.Allreduce(MPI.IN_PLACE, bare, op=MPI.SUM)

        def allreduce_mean(bare=bare):
            comm.Allreduce(MPI.IN_PLACE, bare, op=MPI.SUM)
            np.divide(bare, world, out=bare)

        def ddp_average(averager=averager, optimizer=optimizer):
            averager.hook(optimizer, (), {})

        # DDP's hook is off (require_sync False) for this one
        def allreduce_step(bare=bare, optimizer=optimizer):
            comm.Allreduce(MPI.IN_PLACE, bare, op=MPI.SUM)
            optimizer.step()

        methods = {
            "bare Allreduce": allreduce,
            "bare Allreduce + mean": allreduce_mean,
            "DDP averaging": ddp_average,
            "bare Allreduce + step()": allreduce_step,
            "DDP step()": optimizer.step,
        }
        times = {method: [] for method in methods}
        order = list(methods)
        for repeat in range(repeats):
            for method in (
                order[repeat % len(order) :] + order[: repeat % len(order)]
            ):  # no method always first
                bare.fill(1.0)
                run = methods[method]
                ddp.require_sync = method != "bare Allreduce + step()"
                comm.Barrier()
                start = time.perf_counter()
                run()
                times[method].append(time.perf_counter() - start)
        results[name] = {method: (statistics.median(t), min(t)) for method, t in times.items()}
        results[name]["values"] = bare.size
    return results


def _throughput(steps):
    """Mean seconds per training step of the 784 classifier over ``steps`` steps (after 3 warm-up
    steps and a barrier), each rank on its share of the batch; and the median time of the
    phases on rank 0: forward + backward, and ``step()`` (averaging + update)."""
    import firefly
    from firefly import distributed as dist
    from firefly import nn
    from firefly.optim import SGD

    world, rank = dist.world_size(), dist.rank()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(GLOBAL_BATCH, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=GLOBAL_BATCH)
    firefly.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    optimizer = SGD(model.get_parameters(), lr=0.01, momentum=0.9)
    ddp = dist.DistributedDataParallel(model, optimizer)
    inputs, targets = firefly.Tensor(X[rank::world]), y[rank::world]
    loss_fn = nn.CrossEntropyLoss()
    compute, update = [], []
    for step in range(steps + 3):  # 3 warm-up steps: kernels compiled or loaded from the cache
        if step == 3:
            dist.barrier()
            start = time.perf_counter()
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss_fn(ddp(inputs), targets).backward()
        t1 = time.perf_counter()
        optimizer.step()
        compute.append(t1 - t0)
        update.append(time.perf_counter() - t1)
    return {
        "step_s": (time.perf_counter() - start) / steps,
        "world": world,
        "forward_backward_s": statistics.median(compute[3:]),
        "optimizer_step_s": statistics.median(update[3:]),
    }


def _job(mode, count):
    result = _averaging(count) if mode == "averaging" else _throughput(count)
    from firefly import distributed as dist

    if dist.rank() == 0:
        print("RESULT " + json.dumps(result))


# ----------------------------------------------------------------------------- the benchmarks
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or not MPIEXEC.exists(),
    reason="needs mpi4py and MPICH's mpiexec in this Python's environment: "
    'pip install ".[distributed]"',
)


def _run_job(ranks, mode, count):
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [str(MPIEXEC), "-n", str(ranks), sys.executable, __file__, mode, str(count)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@needs_mpi
def test_gradient_averaging_against_bare_allreduce(benchmark):
    repeats = 3 if benchmark.disabled else 500
    results = benchmark.pedantic(_run_job, args=(2, "averaging", repeats), rounds=1, iterations=1)
    for statistic, which in (("median", 0), ("minimum", 1)):
        print(f"\ngradient averaging on 2 ranks, float32, {statistic} of {repeats} (ms):")
        print(
            f"{'buffer':>16} {'values':>9} {'bare Allreduce':>15} {'+ mean':>8} {'DDP':>8} "
            f"{'DDP/bare':>9} {'DDP/(bare+mean)':>16}"
        )
        for name, r in results.items():
            bare, mean, ddp = (
                r[m][which] for m in ("bare Allreduce", "bare Allreduce + mean", "DDP averaging")
            )
            print(
                f"{name:>16} {r['values']:>9} {bare * 1e3:>15.3f} {mean * 1e3:>8.3f} "
                f"{ddp * 1e3:>8.3f} "
                f"{ddp / bare:>9.2f} {ddp / mean:>16.2f}"
            )
        print(
            f"within an SGD step: {'buffer':>16} {'bare Allreduce + step()':>24} "
            f"{'DDP step()':>11} {'ratio':>6}"
        )
        for name, r in results.items():
            bare, ddp = r["bare Allreduce + step()"][which], r["DDP step()"][which]
            print(f"{'':>20}{name:>16} {bare * 1e3:>24.3f} {ddp * 1e3:>11.3f} {ddp / bare:>6.2f}")
    benchmark.extra_info.update(results)


@needs_mpi
def test_two_ranks_against_one_on_the_784_classifier(benchmark):
    steps = 2 if benchmark.disabled else 200

    def both():
        return _run_job(1, "throughput", steps), _run_job(2, "throughput", steps)

    one, two = benchmark.pedantic(both, rounds=1, iterations=1)
    print(
        f"\n784-256-128-10 classifier, global batch {GLOBAL_BATCH}, SGD momentum, "
        f"one thread per rank, mean of {steps} steps:"
    )
    for r in (one, two):
        print(
            f"  {r['world']} rank(s): {r['step_s'] * 1e3:.2f} ms/step, "
            f"{GLOBAL_BATCH / r['step_s']:.0f} samples/s "
            f"(median forward+backward {r['forward_backward_s'] * 1e3:.2f} ms, "
            "step() with averaging "
            f"{r['optimizer_step_s'] * 1e3:.2f} ms)"
        )
    print(f"  speed-up 2 ranks / 1 rank: {one['step_s'] / two['step_s']:.2f}x")
    benchmark.extra_info.update({"1 rank": one, "2 ranks": two})


if __name__ == "__main__":
    _job(sys.argv[1], int(sys.argv[2]))
