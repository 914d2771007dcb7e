"""Roofline: the machine's limits and every built-in kernel's share of them, beside torch and
NumPy, measured in one run.

    pytest benchmarks/bench_roofline.py --benchmark-enable -s

It measures, at the default thread count and at one thread:

- the limits: a STREAM-like copy and triad (``a = b + s * c``) over float32 arrays sized to
  fit in L2, in L3 and in DRAM, each timed serially, in parallel and (copy) through NumPy, the
  best kept per level; and the sgemm peak at 512 x 512 through every BLAS path firefly can
  take (NumPy's ``@``, SciPy's ``sgemm``, and ``np.dot`` inside a Numba kernel, which is
  firefly's matmul path), the best kept;
- every case of ``CASES``: firefly's time, the bytes it must move (or the flops it must do),
  the achieved GB/s (GFLOP/s), that as a fraction of the limit of the level its bytes fit in
  (the sgemm peak for GEMM-bound cases), and the ratio firefly / torch and firefly / NumPy.

It prints one table per thread count and writes them as JSON to ``$FIREFLY_ROOFLINE_JSON``
(default ``.benchmarks/roofline.json``; the folder is git-ignored). The tables can be drawn as a
bar chart (each case's fraction of its limit, firefly beside torch; needs matplotlib) from that
file, ``python benchmarks/bench_roofline.py --plot roofline.png [--json FILE]``
(``--markdown`` prints them as one Markdown table instead), or during the
run by setting ``$FIREFLY_ROOFLINE_PLOT`` to the image's path. docs/performance.md says
how to read it. Implementations are timed round-robin (firefly, torch, NumPy, firefly, ...) so
that load from other processes falls on all of them alike; min and median per call are kept.

Plain test runs (``--benchmark-disable``) run every case once at a small size and check that
firefly, torch and NumPy agree, so that a broken case fails in CI rather than in a measurement.

Adding a case: write a function that takes the scale (``"full"`` or ``"smoke"``) and returns
a ``Case``, decorated with ``@case("name")``. A GEMM-bound case sets ``limit="sgemm"`` and
``work`` to its flops.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import pytest
from numba import prange
from threadpoolctl import threadpool_limits

import firefly
from firefly import Tensor, ops
from firefly.kernels._jit import kernel, memory_bound
from firefly.ops import get

torch = pytest.importorskip("torch")

F32 = 4  # bytes per float32 element


# ----------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Case:
    """One row: the same computation three ways, and the work it must do.

    ``work`` is the bytes that must cross the memory hierarchy at least once (each input read
    and each output written once, STREAM's count: no write-allocate traffic) for
    ``limit="bandwidth"``, or the floating-point operations for ``limit="sgemm"``.
    ``footprint`` (bytes; defaults to ``work``) picks the cache level whose bandwidth is the
    limit. Each callable returns its result (arrays, Tensors or tuples of them), compared in
    smoke runs; ``numpy`` is None where NumPy has no such op.
    """

    firefly: Callable[[], object]
    torch: Callable[[], object]
    numpy: Callable[[], object] | None
    work: float
    limit: str = "bandwidth"
    footprint: float | None = None
    atol: float = 1e-4


CASES: dict[str, Callable[[str], Case]] = {}


def case(name: str) -> Callable:
    """Register a case builder under ``name``; it takes the scale, "full" or "smoke"."""

    def register(builder: Callable[[str], Case]) -> Callable[[str], Case]:
        if name in CASES:
            raise ValueError(f"roofline case {name!r} registered twice")
        CASES[name] = builder
        return builder

    return register


def uniform(shape, seed, low=-2.0, high=2.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32)


def elements(scale: str, size: int) -> int:
    return size if scale == "full" else 4096


# ----------------------------------------------------------------------------- limits
@memory_bound
def _stream_copy(src, dst):
    for i in prange(dst.size):
        dst[i] = src[i]


@memory_bound
def _stream_triad(b, c, scalar, a):
    for i in prange(a.size):
        a[i] = b[i] + scalar * c[i]


@kernel
def _numba_sgemm(a, b, out):
    np.dot(a, b, out)


# Array sizes (elements per array) for each level: the working set of three triad arrays is
# 384 KiB (L2 is 1 MiB per core here), 6 MiB (L3: 32 MiB) and 192 MiB.
LEVEL_ELEMENTS = {"L2": 32_768, "L3": 524_288, "DRAM": 16_777_216}
DRAM_PIECE = 131_072  # elements per timed call at the DRAM level (see stream_rates)
L2_BYTES = 1 << 20  # per core; a case whose footprint fits runs at the L2 limit
L3_BYTES = 24 << 20  # of 32 MiB shared, leaving room for code and the other arrays


def level_of(footprint: float) -> str:
    if footprint <= L2_BYTES:
        return "L2"
    return "L3" if footprint <= L3_BYTES else "DRAM"


def stream_rates(n: int, seconds: float, piece: int | None = None) -> dict[str, float]:
    """GB/s of the copy and triad over float32 arrays of ``n`` elements, each way timed.

    With ``piece``, each call runs on ``piece`` elements, one piece after the next through
    the arrays, so that every call streams from DRAM (the arrays are far larger than L3) yet
    lasts only ~0.1 ms: on a loaded machine a call that long usually keeps its core, where a
    whole 192 MB sweep almost never does."""
    a, b, c = np.empty(n, np.float32), uniform(n, 1), uniform(n, 2)
    scalar = np.float32(3.0)
    piece = piece or n
    starts = range(0, n - piece + 1, piece)
    pieces = [(a[i : i + piece], b[i : i + piece], c[i : i + piece]) for i in starts]
    turn = iter(())

    def next_piece():
        nonlocal turn
        try:
            return next(turn)
        except StopIteration:
            turn = iter(pieces)
            return next(turn)

    def copy(kernel):
        def run():
            pa, pb, _ = next_piece()
            kernel(pb, pa)

        return run

    def triad(kernel):
        def run():
            pa, pb, pc = next_piece()
            kernel(pb, pc, scalar, pa)

        return run

    timings = time_round_robin(
        {
            "copy serial": copy(_stream_copy.serial),
            "copy parallel": copy(_stream_copy.parallel),
            "copy numpy": copy(lambda src, dst: np.copyto(dst, src)),
            "triad serial": triad(_stream_triad.serial),
            "triad parallel": triad(_stream_triad.parallel),
        },
        seconds,
    )
    arrays = {"copy": 2, "triad": 3}  # arrays each way reads or writes once per element
    return {
        way: arrays[way.split()[0]] * piece * F32 / t["min"] / 1e9 for way, t in timings.items()
    }


def measure_limits(seconds: float, scale: str) -> dict:
    limits = {}
    for level, n in LEVEL_ELEMENTS.items():
        n = n if scale == "full" else 1024
        rates = stream_rates(
            n, seconds, DRAM_PIECE if level == "DRAM" and scale == "full" else None
        )
        limits[level] = {
            "elements": n,
            "copy_gbs": max(v for k, v in rates.items() if k.startswith("copy")),
            "triad_gbs": max(v for k, v in rates.items() if k.startswith("triad")),
            "by_way_gbs": rates,
        }
    # 512^3: a call of ~2 ms, short enough to keep its core on a loaded machine, long
    # enough for BLAS to reach its peak.
    n = 512 if scale == "full" else 64
    a, b, out = uniform((n, n), 3), uniform((n, n), 4), np.empty((n, n), np.float32)
    from scipy.linalg.blas import sgemm

    timings = time_round_robin(
        {
            "numpy": lambda: a @ b,
            "scipy sgemm": lambda: sgemm(1.0, a, b),
            "numba np.dot": lambda: _numba_sgemm(a, b, out),
        },
        seconds,
    )
    rates = {way: 2 * n**3 / t["min"] / 1e9 for way, t in timings.items()}
    limits["sgemm"] = {"n": n, "gflops": max(rates.values()), "by_way_gflops": rates}
    return limits


def limit_of(c: Case, limits: dict) -> tuple[str, float]:
    """(the limit's name, its rate in GB/s or GFLOP/s) for a case."""
    if c.limit == "sgemm":
        return "sgemm", limits["sgemm"]["gflops"]
    level = level_of(c.footprint if c.footprint is not None else c.work)
    # A kernel that reads two arrays and writes one is a triad; the triad is also the higher
    # of the two limits on this machine's DRAM, so no kernel gets an easier target.
    return level, max(limits[level]["triad_gbs"], limits[level]["copy_gbs"])


# ----------------------------------------------------------------------------- timing
def time_round_robin(fns: dict[str, Callable[[], object]], seconds: float) -> dict[str, dict]:
    """Per-call seconds of each function, min and median over samples taken in turn (one
    sample of each function, then the next round) for about ``seconds`` per function, at least
    three samples each (one when ``seconds`` is 0). A sample is one call, or as many calls as
    last ~0.2 ms for a faster function, so that the timer's resolution does not count. Short
    samples, many of them: on a loaded machine the minimum is the run that had the cores."""
    calls = {}
    for name, fn in fns.items():
        fn()  # compile or load from cache, fault the pages in
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < 0.002:
            fn()
            count += 1
        calls[name] = max(count // 10, 1)
    samples = {name: [] for name in fns}
    deadline = time.perf_counter() + seconds * len(fns)
    least = 3 if seconds else 1
    while time.perf_counter() < deadline or len(samples[next(iter(fns))]) < least:
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / calls[name])
    return {
        name: {"min": min(s), "median": float(np.median(s)), "samples": len(s)}
        for name, s in samples.items()
    }


def as_arrays(result) -> list[np.ndarray]:
    if isinstance(result, (tuple, list)):
        return [a for r in result for a in as_arrays(r)]
    if isinstance(result, Tensor):
        return [result.numpy()]
    if isinstance(result, torch.Tensor):
        return [result.detach().numpy()]
    return [np.asarray(result)]


def check_agree(name: str, c: Case) -> None:
    want = as_arrays(c.torch())
    for impl, fn in (("firefly", c.firefly), ("numpy", c.numpy)):
        if fn is None:
            continue
        got = as_arrays(fn())
        assert len(got) == len(want), f"{name}: {impl} returns {len(got)} arrays, torch {len(want)}"
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=c.atol, err_msg=f"{name}: {impl}")


def selected_cases() -> dict[str, Callable[[str], Case]]:
    """The cases whose name contains one of the comma-separated words in
    ``$FIREFLY_ROOFLINE_CASES`` (every case when it is unset), to measure a few rows quickly."""
    words = [
        w.strip() for w in os.environ.get("FIREFLY_ROOFLINE_CASES", "").split(",") if w.strip()
    ]
    return {n: b for n, b in CASES.items() if not words or any(w in n for w in words)}


def measure_cases(limits: dict, seconds: float, scale: str) -> list[dict]:
    rows = []
    for name, builder in selected_cases().items():
        c = builder(scale)
        if scale == "smoke":
            check_agree(name, c)
        fns = {"firefly": c.firefly, "torch": c.torch}
        if c.numpy is not None:
            fns["numpy"] = c.numpy
        t = time_round_robin(fns, seconds)
        level, rate = limit_of(c, limits)
        achieved = c.work / t["firefly"]["min"] / 1e9
        rows.append(
            {
                "case": name,
                "limit": level,
                "work": c.work,
                "unit": "GFLOP/s" if c.limit == "sgemm" else "GB/s",
                "firefly_us": {k: v * 1e6 for k, v in t["firefly"].items()},
                "torch_us": {k: v * 1e6 for k, v in t["torch"].items()},
                "numpy_us": None
                if c.numpy is None
                else {k: v * 1e6 for k, v in t["numpy"].items()},
                "achieved": achieved,
                "fraction_of_limit": achieved / rate,
                "vs_torch": t["firefly"]["min"] / t["torch"]["min"],
                "vs_torch_median": t["firefly"]["median"] / t["torch"]["median"],
                "vs_numpy": None if c.numpy is None else t["firefly"]["min"] / t["numpy"]["min"],
            }
        )
    return rows


def format_table(threads: int, limits: dict, rows: list[dict]) -> str:
    lines = [f"roofline at {threads} thread(s), float32; times are min (median) per call"]
    for level in LEVEL_ELEMENTS:
        lim = limits[level]
        kib = lim["elements"] * F32 >> 10
        lines.append(
            f"  {level:<5} {kib:>7} KiB/array  copy {lim['copy_gbs']:6.1f} GB/s"
            f"  triad {lim['triad_gbs']:6.1f} GB/s"
        )
    lines.append(f"  sgemm {limits['sgemm']['n']}^3  {limits['sgemm']['gflops']:6.1f} GFLOP/s")
    head = (
        f"{'case':<34} {'limit':>5} {'firefly us':>17} {'rate':>12} {'of limit':>8}"
        f" {'/torch':>11} {'/numpy':>6}"
    )
    lines += [head, "-" * len(head)]
    for r in rows:
        f = r["firefly_us"]
        rate = f"{r['achieved']:.1f} {'GF/s' if r['unit'] == 'GFLOP/s' else 'GB/s'}"
        vs_numpy = "" if r["vs_numpy"] is None else f"{r['vs_numpy']:.2f}"
        lines.append(
            f"{r['case']:<34} {r['limit']:>5} {f['min']:>8.1f} ({f['median']:>6.1f})"
            f" {rate:>12} {r['fraction_of_limit']:>8.0%}"
            f" {r['vs_torch']:>5.2f} ({r['vs_torch_median']:.2f}) {vs_numpy:>6}"
        )
    return "\n".join(lines)


def plot_tables(tables: dict, path: str) -> None:
    """Write ``tables`` (the JSON file's ``{threads: result}``) as a bar chart to ``path``: one
    panel per thread count, each case's fraction of its limit for firefly and for torch (torch's
    rate is firefly's times firefly's time over torch's, both minima)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    results = [tables[key] for key in sorted(tables, key=lambda k: -int(k))]
    cases = [r["case"] for r in results[0]["rows"]]
    figure, panels = plt.subplots(
        1,
        len(results),
        figsize=(5 * len(results), 0.22 * len(cases) + 1.2),
        squeeze=False,
        sharey=True,
    )
    positions = np.arange(len(cases))
    for axes, result in zip(panels[0], results):
        rows = {r["case"]: r for r in result["rows"]}
        ours = [rows[c]["fraction_of_limit"] if c in rows else 0 for c in cases]
        theirs = [
            rows[c]["fraction_of_limit"] * rows[c]["vs_torch"] if c in rows else 0 for c in cases
        ]
        axes.barh(positions - 0.2, ours, height=0.4, label="firefly")
        axes.barh(positions + 0.2, theirs, height=0.4, label="torch")
        axes.set_yticks(positions, cases, fontsize=7)
        axes.invert_yaxis()
        axes.set_xlabel("fraction of the machine's limit")
        axes.set_title(f"{result['threads']} thread(s), {result['threading_layer']} layer")
        axes.grid(axis="x", alpha=0.3)
        axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ----------------------------------------------------------------------------- elementwise cases
SIZES = {"1e6": 1_000_000, "1e7": 10_000_000}
ROW = 1_000


def _unary(op: str, size: int, torch_fn: Callable, numpy_fn: Callable | None) -> Callable:
    def build(scale: str) -> Case:
        n = elements(scale, size)
        x = uniform(n, n)
        t, tx = Tensor(x), torch.from_numpy(x)
        return Case(
            firefly=lambda: getattr(t, op)(),
            torch=lambda: torch_fn(tx),
            numpy=None if numpy_fn is None else (lambda: numpy_fn(x)),
            work=2 * n * F32,
        )

    return build


def _unary_grad(op: str, size: int, aten: Callable, reads_output: bool) -> Callable:
    backward_kernel = get(op).backward_kernel

    def build(scale: str) -> Case:
        n = elements(scale, size)
        g, x = uniform(n, n), uniform(n, n + 1)
        saved = (
            {"sigmoid": lambda v: 1 / (1 + np.exp(-v)), "tanh": np.tanh}[op](x)
            if reads_output
            else x
        )
        saved = saved.astype(np.float32)
        tg, ts = torch.from_numpy(g), torch.from_numpy(saved)

        def fused():  # as UnaryOp.backward runs it: output allocated per call
            dx = np.empty_like(g)
            backward_kernel(g, saved, dx)
            return dx

        return Case(firefly=fused, torch=lambda: aten(tg, ts), numpy=None, work=3 * n * F32)

    return build


def _binary(op: str, size: int, broadcast: bool) -> Callable:
    numpy_fn = {"add": np.add, "mul": np.multiply}[op]
    torch_fn = {"add": torch.add, "mul": torch.mul}[op]

    def build(scale: str) -> Case:
        n = elements(scale, size)
        a = uniform((n // ROW, ROW) if scale == "full" else (n // 64, 64), n)
        b = uniform(a.shape[1:] if broadcast else a.shape, n + 1)
        ta, tb, xa, xb = Tensor(a), Tensor(b), torch.from_numpy(a), torch.from_numpy(b)
        fwd = (lambda: ta + tb) if op == "add" else (lambda: ta * tb)
        return Case(
            firefly=fwd,
            torch=lambda: torch_fn(xa, xb),
            numpy=lambda: numpy_fn(a, b),
            work=(2 * a.size + b.size) * F32,
        )

    return build


def _mul_grad(size: int, broadcast: bool) -> Callable:
    """fwd+bwd of a * b: the gradients of both inputs, summed back to b's shape if it broadcast."""

    def build(scale: str) -> Case:
        n = elements(scale, size)
        a = uniform((n // ROW, ROW) if scale == "full" else (n // 64, 64), n)
        b = uniform(a.shape[1:] if broadcast else a.shape, n + 1)
        g = uniform(a.shape, n + 2)
        fa, fb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        tg = torch.from_numpy(g)

        def firefly_step():
            fa.grad = fb.grad = None
            (fa * fb).backward(g)
            return fa.grad, fb.grad

        def torch_step():
            ta.grad = tb.grad = None
            (ta * tb).backward(tg)
            return ta.grad, tb.grad

        def numpy_step():
            return g * b, (g * a).sum(axis=0) if broadcast else g * a

        # forward: read a, b, write out; backward: read g, a, b, write da and db
        return Case(
            firefly=firefly_step,
            torch=torch_step,
            numpy=numpy_step,
            work=(3 * a.size + 2 * b.size + 3 * a.size + b.size) * F32,
            footprint=(5 * a.size + b.size) * F32,  # a, b, out, g, da, db (output-sized)
        )

    return build


def _reduction(op: str, size: int, axis: int | None) -> Callable:
    def build(scale: str) -> Case:
        n = elements(scale, size)
        x = uniform((n // ROW, ROW) if scale == "full" else (n // 64, 64), n)
        t, tx = Tensor(x), torch.from_numpy(x)
        if op == "sum":
            tfn = (lambda: tx.sum()) if axis is None else (lambda: tx.sum(dim=axis))
        else:
            tfn = (lambda: tx.max()) if axis is None else (lambda: tx.amax(dim=axis))
        return Case(
            firefly=lambda: getattr(t, op)(axis=axis),
            torch=tfn,
            numpy=lambda: getattr(np, op)(x, axis=axis),
            work=n * F32,
            atol=1e-2,  # float32 sums of a million terms, in different orders
        )

    return build


for _label, _size in SIZES.items():
    for _op, _torch_fn, _numpy_fn in (
        ("relu", torch.relu, lambda v: np.maximum(v, 0.0)),
        ("exp", torch.exp, np.exp),
        ("sigmoid", torch.sigmoid, None),
        ("tanh", torch.tanh, np.tanh),
    ):
        case(f"{_op} {_label}")(_unary(_op, _size, _torch_fn, _numpy_fn))
    case(f"relu grad {_label}")(
        _unary_grad("relu", _size, lambda g, x: torch.ops.aten.threshold_backward(g, x, 0), False)
    )
    case(f"sigmoid grad {_label}")(
        _unary_grad("sigmoid", _size, torch.ops.aten.sigmoid_backward, True)
    )
    case(f"tanh grad {_label}")(_unary_grad("tanh", _size, torch.ops.aten.tanh_backward, True))
    for _op in ("add", "mul"):
        case(f"{_op} {_label}")(_binary(_op, _size, broadcast=False))
        case(f"{_op} (n,1000)+(1000,) {_label}")(_binary(_op, _size, broadcast=True))
    case(f"mul fwd+bwd {_label}")(_mul_grad(_size, broadcast=False))
    case(f"mul fwd+bwd (n,1000)*(1000,) {_label}")(_mul_grad(_size, broadcast=True))
    case(f"sum {_label}")(_reduction("sum", _size, None))
    case(f"sum axis0 {_label}")(_reduction("sum", _size, 0))
    case(f"sum axis1 {_label}")(_reduction("sum", _size, 1))
    case(f"max {_label}")(_reduction("max", _size, None))
    case(f"max axis1 {_label}")(_reduction("max", _size, 1))


# ----------------------------------------------------------------------------- softmax and norms
def _softmax(name: str, shape: tuple, backward: bool) -> Callable:
    def build(scale: str) -> Case:
        sh = shape if scale == "full" else (8, shape[-1] // 8)
        x, g = uniform(sh, 0), uniform(sh, 1)
        size = x.size
        fx, tx = Tensor(x, requires_grad=backward), torch.tensor(x, requires_grad=backward)
        tg = torch.from_numpy(g)
        torch_fn = getattr(torch, name)

        def numpy_forward():
            s = x - x.max(axis=-1, keepdims=True)
            if name == "softmax":
                e = np.exp(s)
                return e / e.sum(axis=-1, keepdims=True)
            return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))

        if not backward:
            return Case(
                firefly=lambda: getattr(fx, name)(axis=-1),
                torch=lambda: torch_fn(tx, dim=-1),
                numpy=numpy_forward,
                work=2 * size * F32,
            )

        def firefly_step():
            fx.grad = None
            getattr(fx, name)(axis=-1).backward(g)
            return fx.grad

        def torch_step():
            tx.grad = None
            torch_fn(tx, dim=-1).backward(tg)
            return tx.grad

        # forward: read x, write y; backward: read g and y, write dx
        return Case(
            firefly=firefly_step,
            torch=torch_step,
            numpy=None,
            work=5 * size * F32,
            footprint=4 * size * F32,  # x, y, g, dx
        )

    return build


def _norm(op: str, shape: tuple, backward: bool, **attrs) -> Callable:
    def build(scale: str) -> Case:
        sh = shape if scale == "full" else (4,) + shape[1:-1] + (8,)
        x, g = uniform(sh, 0), uniform(sh, 1)
        params = sh[-1:] if op == "layer_norm" else sh[1:2]
        w, b = uniform(params, 2, 0.5, 1.5), uniform(params, 3)
        needs = backward
        fx, fw, fb = (Tensor(v, requires_grad=needs) for v in (x, w, b))
        tx, tw, tb = (torch.tensor(v, requires_grad=needs) for v in (x, w, b))
        tg = torch.from_numpy(g)
        F = torch.nn.functional
        fattrs = dict(attrs)
        if op == "layer_norm":
            fattrs["normalized_shape"] = sh[-1:]
            tcall = lambda: F.layer_norm(tx, sh[-1:], tw, tb)  # noqa: E731
        elif op == "batch_norm":
            tcall = lambda: F.batch_norm(tx, None, None, tw, tb, training=attrs["training"])  # noqa: E731
        else:
            tcall = lambda: F.group_norm(tx, attrs["num_groups"], tw, tb)  # noqa: E731
        fcall = lambda: ops.apply(op, fx, fw, fb, **fattrs)  # noqa: E731
        if not backward:
            return Case(firefly=fcall, torch=tcall, numpy=None, work=2 * x.size * F32, atol=1e-3)

        def firefly_step():
            fx.grad = fw.grad = fb.grad = None
            fcall().backward(g)
            return fx.grad, fw.grad, fb.grad

        def torch_step():
            tx.grad = tw.grad = tb.grad = None
            tcall().backward(tg)
            return tx.grad, tw.grad, tb.grad

        # forward: read x, write y; backward: read g and x, write dx (parameters are small)
        return Case(
            firefly=firefly_step,
            torch=torch_step,
            numpy=None,
            work=5 * x.size * F32,
            footprint=4 * x.size * F32,  # x, y, g, dx
            atol=1e-3,
        )

    return build


for _backward in (False, True):
    _dir = "fwd+bwd" if _backward else "fwd"
    for _shape in ((1000, 1000), (10000, 1000)):
        for _name in ("softmax", "log_softmax"):
            case(f"{_name} {_dir} {_shape[0]}x{_shape[1]}")(_softmax(_name, _shape, _backward))
    case(f"layer_norm {_dir} 64x128x256")(_norm("layer_norm", (64, 128, 256), _backward))
    for _shape in ((64, 32, 8, 8), (32, 64, 16, 16), (64, 64, 32, 32)):
        case(f"batch_norm {_dir} {'x'.join(map(str, _shape))}")(
            _norm("batch_norm", _shape, _backward, training=True)
        )
    case(f"group_norm {_dir} 32x64x16x16 g8")(
        _norm("group_norm", (32, 64, 16, 16), _backward, num_groups=8)
    )


# ----------------------------------------------------------------------------- layout and bmm
def _permute(shape: tuple, axes: tuple) -> Callable:
    """A contiguous copy of a permuted array (the transpose op's gather)."""

    def build(scale: str) -> Case:
        sh = shape if scale == "full" else tuple(min(d, 40) for d in shape)
        x = uniform(sh, 0)
        t, tx = Tensor(x), torch.from_numpy(x)
        return Case(
            firefly=lambda: t.permute(*axes),
            torch=lambda: tx.permute(*axes).contiguous(),
            numpy=lambda: np.ascontiguousarray(x.transpose(axes)),
            work=2 * x.size * F32,
        )

    return build


def _slice_grad(shape: tuple) -> Callable:
    """fwd+bwd of x[:, 1:-1]: a strided gather forward, the strided scatter-add backward."""

    def build(scale: str) -> Case:
        sh = shape if scale == "full" else (8, 40)
        x = uniform(sh, 0)
        index = (slice(None), slice(1, -1))
        g = uniform(x[index].shape, 1)
        fx, tx = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        tg = torch.from_numpy(g)

        def firefly_step():
            fx.grad = None
            fx[index].backward(g)
            return fx.grad

        def torch_step():
            tx.grad = None
            tx[index].backward(tg)
            return tx.grad

        def numpy_step():
            np.ascontiguousarray(x[index])  # the forward's copy
            dx = np.zeros_like(x)
            dx[index] += g
            return dx

        # forward: read m, write m; backward: write the zeros (n), read g, add into dx (m each)
        m = g.size
        return Case(
            firefly=firefly_step,
            torch=torch_step,
            numpy=numpy_step,
            work=(2 * m + x.size + 3 * m) * F32,
            footprint=(x.size + 3 * m) * F32,
        )

    return build


def _bmm(shape_a: tuple, shape_b: tuple, backward: bool) -> Callable:
    """A batched product at attention's shapes; GEMM-bound (``limit="sgemm"``)."""

    def build(scale: str) -> Case:
        a = uniform(shape_a if scale == "full" else (2,) + shape_a[1:], 0)
        b = uniform(shape_b if scale == "full" else (2,) + shape_b[1:], 1)
        flops = 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        if not backward:
            fa, fb, ta, tb = Tensor(a), Tensor(b), torch.from_numpy(a), torch.from_numpy(b)
            return Case(
                firefly=lambda: fa @ fb,
                torch=lambda: torch.bmm(ta, tb),
                numpy=lambda: a @ b,
                work=flops,
                limit="sgemm",
                atol=1e-3,
            )
        g = uniform((a.shape[0], a.shape[1], b.shape[2]), 2)
        fa, fb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        tg = torch.from_numpy(g)

        def firefly_step():
            fa.grad = fb.grad = None
            (fa @ fb).backward(g)
            return fa.grad, fb.grad

        def torch_step():
            ta.grad = tb.grad = None
            torch.bmm(ta, tb).backward(tg)
            return ta.grad, tb.grad

        def numpy_step():
            return g @ b.transpose(0, 2, 1), a.transpose(0, 2, 1) @ g

        return Case(
            firefly=firefly_step,
            torch=torch_step,
            numpy=numpy_step,
            work=3 * flops,
            limit="sgemm",
            atol=1e-3,
        )

    return build


for _label, _shape, _axes in (
    ("1000x1000", (1000, 1000), (1, 0)),
    ("(12,64,4,32) heads", (12, 64, 4, 32), (0, 2, 1, 3)),
    ("(48,64,32) last two", (48, 64, 32), (0, 2, 1)),
):
    case(f"transpose {_label}")(_permute(_shape, _axes))
case("slice [:, 1:-1] fwd+bwd 1000x1000")(_slice_grad((1000, 1000)))
case("bmm (48,64,32)@(48,32,64) fwd")(_bmm((48, 64, 32), (48, 32, 64), backward=False))
case("bmm (48,64,32)@(48,32,64) fwd+bwd")(_bmm((48, 64, 32), (48, 32, 64), backward=True))


# ----------------------------------------------------------------------------- the benchmark
def set_threads(threads: int) -> None:
    numba.set_num_threads(threads)
    torch.set_num_threads(threads)


def roofline(threads: int, seconds: float, scale: str) -> dict:
    """Limits and rows at ``threads`` threads (Numba, torch and BLAS alike)."""
    default = numba.get_num_threads()
    set_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            limits = measure_limits(seconds, scale)
            rows = measure_cases(limits, seconds, scale)
    finally:
        set_threads(default)
    return {
        "threads": threads,
        "threading_layer": numba.threading_layer(),
        "firefly": firefly.__version__ if hasattr(firefly, "__version__") else None,
        "torch": torch.__version__,
        "limits": limits,
        "rows": rows,
    }


@pytest.mark.parametrize("threads", ["default", 1])
def test_roofline(benchmark, threads):
    threads = numba.config.NUMBA_NUM_THREADS if threads == "default" else threads
    scale = "smoke" if benchmark.disabled else "full"
    seconds = (
        0.0 if benchmark.disabled else float(os.environ.get("FIREFLY_ROOFLINE_SECONDS", "0.3"))
    )
    benchmark.group = "roofline"
    result = benchmark.pedantic(roofline, args=(threads, seconds, scale), rounds=1, iterations=1)
    assert all(math.isfinite(r["fraction_of_limit"]) for r in result["rows"])
    if benchmark.disabled:
        return
    print("\n" + format_table(threads, result["limits"], result["rows"]))
    path = os.environ.get("FIREFLY_ROOFLINE_JSON", os.path.join(".benchmarks", "roofline.json"))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tables = {}
    if os.path.exists(path):
        with open(path) as f:
            tables = json.load(f)
    tables[str(threads)] = result
    with open(path, "w") as f:
        json.dump(tables, f, indent=1)
    if os.environ.get("FIREFLY_ROOFLINE_PLOT"):
        plot_tables(tables, os.environ["FIREFLY_ROOFLINE_PLOT"])


def test_plot_tables_draws_every_case(tmp_path):
    pytest.importorskip("matplotlib", reason='needs matplotlib: pip install ".[examples]"')
    row = {"case": "add 1e6", "fraction_of_limit": 0.5, "vs_torch": 0.8}
    tables = {
        str(t): {"threads": t, "threading_layer": "tbb", "rows": [row, dict(row, case="exp")]}
        for t in (2, 1)
    }
    plot_tables(tables, str(tmp_path / "roofline.png"))
    assert (tmp_path / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def markdown_table(tables: dict) -> str:
    """``tables`` (the JSON file's ``{threads: result}``) as one Markdown table, a column pair
    per thread count: firefly / torch by min (median), and firefly's fraction of its limit."""
    results = [tables[key] for key in sorted(tables, key=lambda k: -int(k))]
    head = "| case | limit |" + "".join(
        f" {r['threads']} thread(s): / torch | of limit |" for r in results
    )
    lines = [head, "|---|---|" + "---|---|" * len(results)]
    by_threads = [{row["case"]: row for row in r["rows"]} for r in results]
    for name in (row["case"] for row in results[0]["rows"]):
        cells = []
        for rows in by_threads:
            row = rows.get(name)
            if row is None:
                cells.append(" | |")
                continue
            cells.append(
                f" {row['vs_torch']:.2f} ({row['vs_torch_median']:.2f}) |"
                f" {row['fraction_of_limit']:.0%} |"
            )
        level = by_threads[0][name]["limit"]
        lines.append(f"| {name} | {level} |" + "".join(cells))
    limits = "; ".join(
        f"{r['threads']} thread(s): copy L2/L3/DRAM "
        + "/".join(f"{r['limits'][level]['copy_gbs']:.0f}" for level in LEVEL_ELEMENTS)
        + f" GB/s, sgemm {r['limits']['sgemm']['gflops']:.0f} GFLOP/s"
        for r in results
    )
    return "\n".join(lines) + f"\n\nLimits in the same run: {limits}."


def test_markdown_table_has_a_row_per_case():
    limit = {"copy_gbs": 90.0, "triad_gbs": 90.0}
    limits = {**{level: limit for level in LEVEL_ELEMENTS}, "sgemm": {"gflops": 105.0}}
    rows = [
        {"case": c, "limit": "L3", "vs_torch": v, "vs_torch_median": v, "fraction_of_limit": 0.5}
        for c, v in (("add 1e6", 0.8), ("exp", 1.25))
    ]
    tables = {str(t): {"threads": t, "limits": limits, "rows": rows} for t in (2, 1)}
    lines = markdown_table(tables).splitlines()
    assert lines[0].count("/ torch") == 2 and len(lines) == 2 + len(rows) + 2
    assert lines[3] == "| exp | L3 | 1.25 (1.25) | 50% | 1.25 (1.25) | 50% |"
    assert "sgemm 105 GFLOP/s" in lines[-1]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description="Draw saved roofline tables as a bar chart, or print them as Markdown."
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--plot", metavar="FILE.png")
    action.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--json",
        default=os.environ.get(
            "FIREFLY_ROOFLINE_JSON", os.path.join(".benchmarks", "roofline.json")
        ),
        help="the tables a measuring run wrote",
    )
    args = parser.parse_args()
    with open(args.json) as f:
        tables = json.load(f)
    if args.markdown:
        print(markdown_table(tables))
        return
    plot_tables(tables, args.plot)
    print(f"chart written to {args.plot}")


if __name__ == "__main__":
    main()
