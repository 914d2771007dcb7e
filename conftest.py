"""Suite-wide hooks.

``FIREFLY_TORCH_SKIPS=<file>`` writes the node ids of the tests that were skipped because torch
is missing, one per line, so that ``.ci/run`` can install the optional torch oracle and run
exactly those tests a second time.
"""

import os
import re

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
