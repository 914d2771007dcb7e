"""``python -m firefly warmup``: fill Numba's on-disk kernel cache for the built-in ops and
optimizers, so that the first training step of a later process loads kernels instead of
compiling them.

Each task runs one registered op's ``sample_inputs`` forward and backward on the shapes
``firefly.testing.check_op`` uses (0-d to 3-d: Numba compiles one specialization per number
of dimensions), or two steps of every built-in optimizer (and two LBFGS iterations), in one
dtype. Tasks run in
worker processes, one per core by default; Numba writes each cache file atomically, so
workers can share the cache folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike

if TYPE_CHECKING:
    from tqdm import tqdm

    from firefly.tensor import Tensor

# A task: (kind, name, dtype name); kind is "op" or "optimizers".
Task = tuple[str, str, str]
# What run_task returns: (task, seconds, kernels compiled, kernels loaded, error or None).
TaskResult = tuple[Task, float, int, int, str | None]

DTYPES: dict[str, tuple[type[np.floating[Any]], ...]] = {
    "float32": (np.float32,),
    "float64": (np.float64,),
    "all": (np.float32, np.float64),
}


def _warm_optimizers(dtype: DTypeLike) -> None:
    """Two steps of every built-in fused optimizer (found by registration) with its defaults,
    and with each of its ``warmup_hyperparameters``: a kernel has one specialization per dtype
    (hyperparameters are run-time fields), so that compiles each kernel it may pick.
    Optimizers defined outside firefly are left to their packages, as plugin ops."""
    import firefly
    from firefly.optim.optimizer import fused_optimizers

    for cls in fused_optimizers().values():
        if not cls.__module__.startswith("firefly."):
            continue
        params = [
            firefly.Tensor(np.ones((3, 2), dtype=dtype), requires_grad=True),
            firefly.Tensor(np.ones(2, dtype=dtype), requires_grad=True),
        ]
        # Each optimizer's __init__(params, <hyperparameters>) is generated when its class is
        # created; mypy sees only FusedOptimizer's (params, defaults). Settings beyond the
        # defaults reach kernels the optimizer picks for them (SGD's with momentum).
        for settings in cls.warmup_hyperparameters:
            optimizer = cls(params, **settings)  # type: ignore[call-arg]
            for _ in range(2):
                optimizer.zero_grad()
                for p in params:
                    p.grad = firefly.Tensor(np.full(p.shape, 0.5, dtype=dtype))
                optimizer.step()
    # LBFGS is not fused (it runs firefly.kernels.lbfgs between closure calls): two
    # iterations of it on a quadratic compile those.
    point = firefly.Tensor(np.array([1.0, -2.0], dtype=dtype), requires_grad=True)
    lbfgs = firefly.optim.LBFGS([point], max_iter=2)

    def closure() -> Tensor:
        lbfgs.zero_grad()
        loss = (point * point).sum()
        loss.backward()
        return loss

    lbfgs.step(closure)


def _warm_op(name: str, dtype: DTypeLike) -> None:
    import firefly
    from firefly import autograd
    from firefly.ops import registry
    from firefly.testing import default_shapes

    op = registry.get(name)
    for k, shape in enumerate(default_shapes(np.random.default_rng(0))):
        arrays, attrs = op.sample_inputs(np.random.default_rng(k), shape, dtype)
        leaves = [firefly.Tensor(np.asarray(a, order="C"), requires_grad=True) for a in arrays]
        out = autograd.apply(op, *leaves, **attrs)
        if out.requires_grad:
            out.backward(firefly.Tensor(np.ones(out.shape, dtype=out.dtype)))


def run_task(task: Task) -> TaskResult:
    """Run one task in this process: ``(kind, name, dtype name)``. Returns
    ``(task, seconds, kernels compiled, kernels loaded, error or None)``."""
    from firefly.kernels._jit import kernel_load_counts

    kind, name, dtype = task
    loaded_before, compiled_before = kernel_load_counts()
    start = time.perf_counter()
    error: str | None = None
    try:
        if kind == "op":
            _warm_op(name, np.dtype(dtype))
        else:
            _warm_optimizers(np.dtype(dtype))
    except Exception as exc:  # one op's failure must not stop the others from warming
        error = f"{type(exc).__name__}: {exc}"
    loaded, compiled = kernel_load_counts()
    return (
        task,
        time.perf_counter() - start,
        compiled - compiled_before,
        loaded - loaded_before,
        error,
    )


def tasks(dtypes: Iterable[DTypeLike], ops: Sequence[str] | None = None) -> list[Task]:
    """The tasks for ``dtypes``: the optimizers, and each op of ``ops`` (default: every
    built-in op; plugin ops are left to their packages, which a worker may not load alike)."""
    from firefly.ops import registry

    if ops is None:
        ops = [name for name in registry.names() if registry.origin(name) == "built-in"]
    else:
        for name in ops:
            registry.get(name)  # an unknown name fails here, before any work
    out: list[Task] = []
    for dtype in dtypes:
        name = np.dtype(dtype).name
        out.append(("optimizers", "optimizers", name))
        out.extend(("op", op_name, name) for op_name in ops)
    return out


def _progress_bar(total: int) -> tqdm[Any] | None:
    """A tqdm bar over the tasks on stderr when tqdm is installed (the examples extra) and stderr
    is a terminal; None otherwise."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bar = tqdm(total=total, desc="warmup", unit="task", disable=None, dynamic_ncols=True)
    if bar.disable:
        bar.close()
        return None
    return bar


def warm(
    dtypes: Iterable[DTypeLike] = (np.float32,),
    ops: Sequence[str] | None = None,
    processes: int | None = None,
    log: Callable[[str], object] = print,
) -> int:
    """Run the tasks; returns the number that failed. ``processes``: worker processes
    (default: one per core; 1 runs in this process). A progress bar shows on a terminal when
    tqdm is installed; the per-task lines go to ``log`` either way."""
    todo = tasks(dtypes, ops)
    processes = processes or os.cpu_count() or 1
    start = time.perf_counter()
    totals = [0, 0]
    failures = 0
    bar = _progress_bar(len(todo))

    def report(i: int, result: TaskResult) -> None:
        nonlocal failures
        (kind, name, dtype), seconds, compiled, loaded, error = result
        totals[0] += compiled
        totals[1] += loaded
        status = f"FAILED {error}" if error else f"compiled {compiled}, loaded {loaded}"
        failures += error is not None
        line = f"[{i:>3}/{len(todo)}] {name:<24} {dtype:<8} {seconds:6.2f} s  {status}"
        if bar is None:
            log(line)
            return
        with bar.external_write_mode():  # the line above the bar, not through it
            log(line)
        bar.set_postfix(compiled=totals[0], loaded=totals[1], refresh=False)
        bar.update(1)

    if processes == 1:
        for i, task in enumerate(todo, 1):
            report(i, run_task(task))
    else:
        import multiprocessing

        # spawn: workers import firefly afresh rather than inheriting a forked Numba state
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            for i, result in enumerate(pool.imap_unordered(run_task, todo), 1):
                report(i, result)
    if bar is not None:
        bar.close()
    log(
        f"warmup: {len(todo)} tasks on {processes} process(es) "
        f"in {time.perf_counter() - start:.1f} s; "
        f"compiled {totals[0]} kernel specialization(s), loaded {totals[1]} from the cache"
        + (f"; {failures} task(s) failed" if failures else "")
    )
    return failures
