"""``python -m firefly demo`` and ``python -m firefly info``, run as a user would."""
import re

import numpy as np
import pytest

import firefly

EPOCH_LINE = re.compile(r"Epoch \[(\d+)/(\d+)\], Loss: (\S+), step: (\S+) ms$")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_demo_trains_and_summarizes(run_python, dtype):
    result = run_python("-m", "firefly", "demo", "--epochs", "6", "--lr", "0.05", "--dtype", dtype, "--seed", "4")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert dtype in lines[0] and "lr=0.05" in lines[0] and "seed=4" in lines[0]
    epochs = [EPOCH_LINE.match(line) for line in lines[1:-1]]
    assert len(epochs) == 6 and all(epochs), result.stdout
    assert [(int(m.group(1)), int(m.group(2))) for m in epochs] == [(i, 6) for i in range(1, 7)]
    losses = [float(m.group(3)) for m in epochs]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    summary = re.match(r"final loss (\S+) \| median step (\S+) ms .*\| total (\S+) s$", lines[-1])
    assert summary, lines[-1]
    assert float(summary.group(2)) > 0 and float(summary.group(3)) > 0
    # The final loss is the last epoch's, and the seed makes the run reproducible.
    assert float(summary.group(1)) == losses[-1]
    again = run_python("-m", "firefly", "demo", "--epochs", "6", "--lr", "0.05", "--dtype", dtype, "--seed", "4")
    assert [line.split(", step")[0] for line in again.stdout.splitlines()[1:-1]] == [
        line.split(", step")[0] for line in lines[1:-1]]


@pytest.mark.parametrize("args, message", [
    (["demo", "--epochs", "0"], "must be a positive int"),
    (["demo", "--lr", "-1"], "must be a positive number"),
    (["demo", "--dtype", "float16"], "invalid choice"),
    (["demo", "--seed", "-2"], "must be a non-negative int"),
    ([], "required"),
])
def test_bad_arguments_exit_with_usage(run_python, args, message):
    result = run_python("-m", "firefly", *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_info_lists_versions_threading_cache_and_ops(run_python):
    import numba

    result = run_python("-m", "firefly", "info")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(rf"^firefly\s+{re.escape(firefly.__version__)}$", out, re.M)
    assert re.search(rf"^numpy\s+{re.escape(np.__version__)}$", out, re.M)
    assert re.search(rf"^numba\s+{re.escape(numba.__version__)}$", out, re.M)
    assert re.search(r"^threading\s+\w+ layer, \d+ threads$", out, re.M)
    assert re.search(r"^kernel cache\s+\S", out, re.M)
    listed = dict(re.findall(r"^  (\w+)\s+(.+)$", out, re.M))
    assert set(firefly.ops.names()) <= set(listed)
    assert listed["cross_entropy"] == "built-in" and listed["linear"] == "built-in"
