"""Suite-wide hooks.

``FIREFLY_TORCH_SKIPS=<file>`` writes the node ids of the tests that were skipped because torch
is missing, one per line, so that ``.ci/run`` can install the optional torch oracle and run
exactly those tests a second time.

``FIREFLY_SUITE_PROFILE=<folder>`` writes, for every test, its wall seconds, the CPU seconds of
its process and, apart, of the interpreters it started (on Unix), how many kernel
specialisations it compiled and loaded, and each compile (kernel, serial or parallel build,
argument types, CPU seconds of its own and with the kernels it compiled inside it), as one JSON
line in ``<folder>/<worker>.jsonl`` (one file per xdist worker), with each worker's collection
and total times: on the shared machine CPU seconds, and the compile counts, say where the
suite's time goes when wall seconds cannot.

``pytest -n N`` distributes the tests with ``--dist worksteal`` unless another ``--dist`` is
given.
"""

import json
import os
import re
import time

import pytest

TORCH_MISSING = re.compile(r"\btorch\b")


def _skip_reason(report):
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)


def _record_if_torch_skip(report):
    path = os.environ.get("FIREFLY_TORCH_SKIPS")
    if path and report.skipped and TORCH_MISSING.search(_skip_reason(report)):
        with open(path, "a") as f:
            f.write(report.nodeid + "\n")


def pytest_runtest_logreport(report):
    if report.when == "setup" or report.when == "call":
        _record_if_torch_skip(report)


def pytest_collectreport(report):
    _record_if_torch_skip(report)  # a module-level pytest.importorskip("torch")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    # worksteal gives each worker one contiguous half of the suite, then moves tests from the
    # busier one. On an empty kernel cache the two workers then compile different kernels;
    # xdist's default (load) hands both the same module's tests, and both compile its kernels at
    # once. Before xdist's own hook, which turns "no" into "load" when -n is given.
    if getattr(config.option, "numprocesses", None) and config.option.dist == "no":
        config.option.dist = "worksteal"


def _children_cpu():
    """CPU seconds (user + sys) of the interpreters and tools this process started and waited
    for; 0 where the platform cannot say (Windows has no ``resource``)."""
    try:
        import resource
    except ImportError:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _compile_times():
    """A listener of Numba's ``numba:compile`` events (see ``_CompileTimes``), made when the
    profile is asked for: Numba is imported then, not by every test run."""
    from numba.core import event

    class _CompileTimes(event.Listener):
        """Numba's ``numba:compile`` events, timed in CPU seconds: each compile's own time, and its
        time with the compiles nested in it (a kernel's compile compiles the helpers it calls)."""

        def __init__(self):
            # [name, parallel, argument types, own CPU s, CPU s with nested ones, outermost]
            self.done = []
            self._open = []  # [start CPU s, CPU s of nested compiles] of each compile under way

        def on_start(self, ev):
            self._open.append([time.process_time(), 0.0])

        def on_end(self, ev):
            start, nested = self._open.pop()
            total = time.process_time() - start
            if self._open:
                self._open[-1][1] += total
            dispatcher = ev.data["dispatcher"]
            parallel = bool(dispatcher.targetoptions.get("parallel"))
            name = dispatcher.py_func.__qualname__
            outermost = not self._open
            self.done.append(
                [name, parallel, str(ev.data["args"]), total - nested, total, outermost]
            )

    return _CompileTimes()


class _SuiteProfile:
    """Writes one JSON line per test and per phase of this worker (see the module's docstring)."""

    def __init__(self, folder, worker):
        from numba.core import event

        os.makedirs(folder, exist_ok=True)
        self.file = open(os.path.join(folder, f"{worker}.jsonl"), "a", buffering=1)
        self.start = (time.perf_counter(), time.process_time())
        self.compiles = _compile_times()
        event.register("numba:compile", self.compiles)

    def write(self, **fields):
        self.file.write(json.dumps(fields) + "\n")

    def since_start(self, event):
        wall, cpu = time.perf_counter() - self.start[0], time.process_time() - self.start[1]
        self.write(event=event, wall=wall, cpu=cpu)

    @staticmethod
    def kernel_counts():
        from firefly.kernels._jit import kernel_load_counts  # firefly is imported by then

        return kernel_load_counts()

    @staticmethod
    def compiled_signatures():
        """The (kernel name, signature) pairs this process compiled so far: which kernels a
        test compiled, not only how many."""
        from firefly.kernels._jit import _dispatchers

        compiled = set()
        for dispatcher in _dispatchers:
            if dispatcher.is_complete:
                hits, name = dispatcher.stats.cache_hits, dispatcher.py_func.__name__
                compiled.update((name, sig) for sig in dispatcher.signatures if sig not in hits)
        return compiled

    def pytest_collection_finish(self):
        self.since_start("collected")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item):
        wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
        loaded, compiled = self.kernel_counts()
        signatures = self.compiled_signatures()
        self.compiles.done = []
        yield
        now_loaded, now_compiled = self.kernel_counts()
        new = sorted({name for name, _ in self.compiled_signatures() - signatures})
        self.write(
            test=item.nodeid,
            wall=time.perf_counter() - wall,
            cpu=time.process_time() - cpu,
            children_cpu=_children_cpu() - children,
            compiled=now_compiled - compiled,
            loaded=now_loaded - loaded,
            kernels=new,
            compiles=self.compiles.done,
        )

    def pytest_sessionfinish(self):
        self.since_start("finished")
        self.file.close()


def pytest_configure(config):
    folder = os.environ.get("FIREFLY_SUITE_PROFILE")
    # xdist's controller runs no tests (its workers have `workerinput`): those that do, write
    controller = getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput")
    if folder and not controller:
        # (not PYTEST_XDIST_WORKER, which a pytest this worker starts would inherit)
        worker = getattr(config, "workerinput", {}).get("workerid", "main")
        config.pluginmanager.register(_SuiteProfile(folder, worker), "firefly-suite-profile")
