"""What a user waits for: whole processes, from the interpreter's start to its exit, with an
empty kernel cache and with a warm one, beside torch's equivalent where there is one.

    python benchmarks/bench_startup.py [--runs 5] [--only import,seed,tour,cnn,tests]

For each process it prints the wall time (median and min over the runs), the CPU time (the
machine is shared: CPU seconds move less than wall seconds when other processes compete), and
how the process's own time splits between importing, compiling kernels, loading kernels from
the cache and running, and how many kernel specialisations it compiled (c) and loaded (l).
The split comes from the process itself:

- compiling: Numba's event API (``numba.core.event``, the ``numba:compile`` event) times each
  compile of a firefly kernel, type inference and LLVM together;
- loading: firefly's cache object times each read of the on-disk cache (it includes Numba's
  one-time set-up of its CPU target, which the first kernel of a process pays, loaded or not).

Beside a process that has a torch twin, a "floor" row runs Numba's import and compiles as many
one-line loops as that process compiled kernels on an empty cache. No kernel compiles faster, so
an empty-cache process cannot take less than that row plus its warm run's running time, which
the row adds up.

``NUMBA_DEBUG_CACHE=1`` only logs which index and data files are read and written, with no
times, so it cannot give the split.

"empty" runs each get a new cache folder (``NUMBA_CACHE_DIR``); "warm" runs share one that a
first, uncounted run filled. "empty" means the kernel cache: every process, torch's too, reads
the digits split that ``firefly.digits.load_split`` keeps in the user's cache folder, prepared
once before the first run in a folder of the benchmark's own (``XDG_CACHE_HOME``), as a
dataset is downloaded once. A plain test run executes ``test_startup_cheaply`` once:
``import firefly`` and the seed script, one run each, on the user's cache.
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The project's shared/ folder: in the checkout, beside it, or beside a worktree's parent.
SEED_SCRIPT = next(
    (
        path
        for folder in (REPO, REPO.parent, REPO.parent.parent)
        if (path := folder / "shared" / "seed" / "seed_training_script.py").exists()
    ),
    REPO / "shared" / "seed" / "seed_training_script.py",
)
# A large test module that runs in one process (a module that spawns interpreters of its own
# would hide their compiling from the split). Not yet confirmed as the suite's slowest: the
# whole suite's `--durations` could not be measured on the loaded machine; change it here.
SLOWEST_TEST_MODULE = "tests/test_layers.py"
CNN_EPOCHS = 3
MARKER = "@@startup "
# XDG_CACHE_HOME of the measured processes (where load_split keeps the digits split), set by
# main(); a plain test run leaves it None and the user's own folder is used.
DATA_HOME = None

# Runs in the measured process: one workload, then its split as one JSON line.
CHILD = r"""
import json, os, sys, time
start = time.perf_counter()
spec = json.loads(sys.argv[1])
kind = spec["kind"]
compile_s = load_s = 0.0
loaded = compiled = 0
if kind == "numba-import":  # the floor under `import firefly`
    import numba
    imported = time.perf_counter()
elif kind == "numba-floor":  # the floor under an empty cache: as many one-line loops compiled
    import numba, numpy  # as the firefly process compiled kernels
    imported = time.perf_counter()
    a = numpy.ones(64, numpy.float32)
    for i in range(spec["kernels"]):
        namespace = {}
        exec(f"def axpy(a, b, out):\n    for j in range(a.shape[0]):\n"
             f"        out[j] = a[j] * {i + 1.0} + b[j]\n", namespace)
        numba.njit(namespace["axpy"])(a, a, numpy.empty_like(a))
elif kind.startswith("torch"):
    import torch
    imported = time.perf_counter()
    if kind == "torch-cnn":  # the example's torch twin, without importing firefly
        import importlib.util
        sys.path.insert(0, os.path.dirname(spec["script"]))
        for name, path in (("firefly.digits", spec["digits"]), ("digits_cnn", spec["script"])):
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        sys.modules["digits_cnn"].train_torch(spec["epochs"], verbose=False)
else:
    import firefly
    imported = time.perf_counter()
    if kind == "script":
        import runpy
        sys.argv = [spec["path"], *spec["args"]]
        sys.path.insert(0, os.path.dirname(spec["path"]))  # as `python script.py` has it
        try:
            runpy.run_path(spec["path"], run_name="__main__")
        except SystemExit as exc:  # a script that ends with sys.exit(main())
            assert exc.code in (0, None), f"exit code {exc.code}"
    elif kind == "code":
        os.chdir(spec["cwd"])
        exec(compile(spec["code"], "README.md", "exec"), {"__name__": "__main__"})
    elif kind == "pytest":
        import pytest
        code = pytest.main(["-q", "-p", "no:cacheprovider", spec["path"]])
        assert code == 0, f"pytest exit code {code}"
if "firefly" in sys.modules:
    from firefly.kernels._jit import kernel_load_counts, kernel_seconds
    compile_s, load_s = kernel_seconds()
    loaded, compiled = kernel_load_counts()
end = time.perf_counter()
print("@@startup " + json.dumps(dict(
    import_s=imported - start, compile_s=compile_s, load_s=load_s,
    run_s=end - imported - compile_s - load_s, inside_s=end - start,
    compiled=compiled, loaded=loaded)))
"""


def readme_tour():
    """The README's tour: the first Python block after a heading that names the tour (else
    the longest block), as tests/test_readme.py runs it."""
    text = (REPO / "README.md").read_text()
    tour = re.search(r"^#+ .*tour.*$(.*?)```python\n(.*?)```", text, re.M | re.S | re.I)
    if tour:
        return tour.group(2)
    return max(re.findall(r"```python\n(.*?)```", text, re.S), key=len)


def workloads():
    """name -> (firefly spec, torch spec or None)."""
    digits = str(REPO / "firefly" / "digits.py")
    cnn = str(REPO / "examples" / "digits_cnn.py")
    return {
        "import": ({"kind": "firefly-import"}, {"kind": "torch-import"}),
        "seed": ({"kind": "script", "path": str(SEED_SCRIPT), "args": []}, None),
        "tour": ({"kind": "code", "code": readme_tour()}, None),
        "cnn": (
            {"kind": "script", "path": cnn, "args": ["--epochs", str(CNN_EPOCHS)]},
            {"kind": "torch-cnn", "digits": digits, "script": cnn, "epochs": CNN_EPOCHS},
        ),
        "tests": ({"kind": "pytest", "path": str(REPO / SLOWEST_TEST_MODULE)}, None),
    }


def run_once(spec, cache=None):
    """Runs one process; returns its measurements (seconds) as a dict."""
    env = dict(os.environ, PYTHONPATH=str(REPO), FIREFLY_DISABLE_PLUGIN_AUTOLOAD="1")
    if DATA_HOME is not None:
        env["XDG_CACHE_HOME"] = DATA_HOME
    # A user's interpreter reads bytecode from __pycache__: with PYTHONDONTWRITEBYTECODE set
    # (as in the project's CI), the measured import would compile every module's source again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if cache is not None:
        env["NUMBA_CACHE_DIR"] = str(cache)
    with tempfile.TemporaryDirectory() as cwd:  # the tour writes a checkpoint
        spec = dict(spec, cwd=cwd)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(spec)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{spec['kind']} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len(MARKER) :])
    result["wall_s"] = wall
    result["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def measure(spec, cache_state, runs, root):
    """``runs`` processes on an empty cache (each its own) or a warm one (filled first)."""
    results = []
    warm = root / "warm"
    if cache_state == "warm" and not spec["kind"].startswith("torch"):
        run_once(spec, warm)  # fills the cache; not counted
    for i in range(runs):
        cache = root / f"empty-{i}" if cache_state == "empty" else warm
        results.append(run_once(spec, cache))
    return results


def prepare_digits():
    """Fill DATA_HOME with the digits split, from a process that imports only firefly.digits."""
    digits = str(REPO / "firefly" / "digits.py")
    code = (
        "import importlib.util; "
        f"spec = importlib.util.spec_from_file_location('digits', {digits!r}); "
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
        "module.load_split()"
    )
    env = dict(os.environ, XDG_CACHE_HOME=DATA_HOME)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600)


def summary(results):
    median = {key: statistics.median(r[key] for r in results) for key in results[0]}
    median["wall_min_s"] = min(r["wall_s"] for r in results)
    return median


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default=",".join(workloads()))
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",")]
    global DATA_HOME
    data_home = tempfile.TemporaryDirectory(prefix="bench-startup-data-")
    DATA_HOME = data_home.name
    if "cnn" in chosen:
        prepare_digits()
    print(
        f"{'process':<8} {'cache':<6} {'wall med':>9} {'wall min':>9} {'CPU med':>8} "
        f"{'import':>7} {'compile':>8} {'load':>6} {'run':>7} {'kernels':>9} "
        f"{'torch wall':>11} {'ratio':>6} "
        f"{'torch CPU':>10} {'ratio':>6}"
    )
    for name in chosen:
        firefly_spec, torch_spec = workloads()[name]
        if name == "seed" and not SEED_SCRIPT.exists():
            print(f"{name:<8} skipped: {SEED_SCRIPT} is absent (the shared/ folder)")
            continue
        torch = None
        compiled_empty, run_warm = 0, 0.0
        if torch_spec is not None:
            with tempfile.TemporaryDirectory() as root:
                torch = summary(measure(torch_spec, "empty", args.runs, Path(root)))
        if name == "import":  # Numba's own import is the floor under firefly's
            with tempfile.TemporaryDirectory() as root:
                s = summary(measure({"kind": "numba-import"}, "empty", args.runs, Path(root)))
            print(
                f"{'numba':<8} {'-':<6} {s['wall_s']:>8.2f}s {s['wall_min_s']:>8.2f}s "
                f"{s['cpu_s']:>7.2f}s {s['import_s']:>6.2f}s",
                flush=True,
            )
        for state in ("empty", "warm"):
            with tempfile.TemporaryDirectory() as root:
                s = summary(measure(firefly_spec, state, args.runs, Path(root)))
            if state == "empty":
                compiled_empty = round(s["compiled"])
            else:
                run_warm = s["run_s"]
            if torch:
                torch_text = (
                    f"{torch['wall_s']:>10.2f}s {s['wall_s'] / torch['wall_s']:>6.2f} "
                    f"{torch['cpu_s']:>9.2f}s {s['cpu_s'] / torch['cpu_s']:>6.2f}"
                )
            else:
                torch_text = f"{'-':>11} {'-':>6} {'-':>10} {'-':>6}"
            print(
                f"{name:<8} {state:<6} {s['wall_s']:>8.2f}s {s['wall_min_s']:>8.2f}s "
                f"{s['cpu_s']:>7.2f}s {s['import_s']:>6.2f}s {s['compile_s']:>7.2f}s "
                f"{s['load_s']:>5.2f}s {s['run_s']:>6.2f}s "
                f"{s['compiled']:>4.0f}c{s['loaded']:>4.0f}l {torch_text}",
                flush=True,
            )
        if torch and compiled_empty:
            # What no kernel can go below on an empty cache: Numba's import and its compile of
            # as many of the simplest loops as the process compiled kernels.
            floor = {"kind": "numba-floor", "kernels": compiled_empty}
            with tempfile.TemporaryDirectory() as root:
                s = summary(measure(floor, "empty", args.runs, Path(root)))
            bound = s["wall_s"] + run_warm
            print(
                f"{'floor':<8} {'empty':<6} {s['wall_s']:>8.2f}s {s['wall_min_s']:>8.2f}s "
                f"{s['cpu_s']:>7.2f}s {s['import_s']:>6.2f}s  (numba: {compiled_empty} one-line "
                f"loops compiled); with the warm run's {run_warm:.2f}s: {bound:.2f}s = "
                f"{bound / torch['wall_s']:.2f}x torch's wall",
                flush=True,
            )
    print(
        f"({args.runs} run(s) each; load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores)"
    )
    return 0


def test_startup_cheaply():
    """One process each: ``import firefly`` (nothing compiles nor loads), and the seed script
    on the user's cache, whose time must split into parts that add up."""
    imported = run_once(workloads()["import"][0])
    assert imported["compile_s"] == 0 and imported["load_s"] == 0
    assert imported["compiled"] == 0 and imported["loaded"] == 0
    assert 0 < imported["import_s"] <= imported["inside_s"] < imported["wall_s"]
    if SEED_SCRIPT.exists():
        seed = run_once(workloads()["seed"][0])
        assert seed["compile_s"] + seed["load_s"] > 0  # its first step compiles or loads
        assert seed["compiled"] + seed["loaded"] >= 10  # linear, relu, sub, mul, sum, sgd, ...
        parts = seed["import_s"] + seed["compile_s"] + seed["load_s"] + seed["run_s"]
        assert abs(parts - seed["inside_s"]) < 1e-6 and seed["run_s"] > 0


if __name__ == "__main__":
    sys.exit(main())
