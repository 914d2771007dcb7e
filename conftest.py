"""Suite-wide hooks.

``FIREFLY_TORCH_SKIPS=<file>`` writes the node ids of the tests that were skipped because torch
is missing, one per line, so that ``.ci/run`` can install the optional torch oracle and run
exactly those tests a second time.

``pytest -n N`` distributes the tests with ``--dist worksteal`` unless another ``--dist`` is
given.
"""

import os
import re

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
