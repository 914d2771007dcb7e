"""``python -m firefly demo`` and ``python -m firefly info``, run as a user would."""

import re

import numpy as np
import pytest

import firefly
from firefly.__main__ import main

EPOCH_LINE = re.compile(r"Epoch \[(\d+)/(\d+)\], Loss: (\S+), step: (\S+) ms$")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_demo_trains_and_summarizes(run_python, dtype):
    result = run_python(
        "-m", "firefly", "demo", "--epochs", "6", "--lr", "0.05", "--dtype", dtype, "--seed", "4"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert dtype in lines[0] and "lr=0.05" in lines[0] and "seed=4" in lines[0]
    epochs = [EPOCH_LINE.match(line) for line in lines[1:-2]]
    assert len(epochs) == 6 and all(epochs), result.stdout
    assert [(int(m.group(1)), int(m.group(2))) for m in epochs] == [(i, 6) for i in range(1, 7)]
    losses = [float(m.group(3)) for m in epochs]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    timing = re.match(
        r"first step (\S+) ms \((compiled \d+ kernel\(s\), loaded \d+ from the cache|"
        r"loaded \d+ kernel\(s\) from the cache)\); later steps: median (\S+) ms over 5$",
        lines[-2],
    )
    assert timing, lines[-2]
    assert float(timing.group(1)) > 0 and float(timing.group(3)) > 0
    summary = re.match(r"final loss (\S+), down from (\S+) \| total (\S+) s$", lines[-1])
    assert summary, lines[-1]
    # The final loss is the last epoch's, and the seed makes the run reproducible.
    assert float(summary.group(1)) == losses[-1] and float(summary.group(2)) == losses[0]
    if dtype == "float32":
        # The seed makes the run reproducible across processes; the dtype does not bear on
        # that, so one dtype's second process proves it.
        again = run_python(
            "-m",
            "firefly",
            "demo",
            "--epochs",
            "6",
            "--lr",
            "0.05",
            "--dtype",
            dtype,
            "--seed",
            "4",
        )
        assert [line.split(", step")[0] for line in again.stdout.splitlines()[1:-2]] == [
            line.split(", step")[0] for line in lines[1:-2]
        ]


def test_demo_by_default_shows_the_loss_falling_a_hundredfold_in_about_ten_lines(run_python):
    result = run_python("-m", "firefly", "demo")
    assert result.returncode == 0, result.stderr
    epochs = [EPOCH_LINE.match(line) for line in result.stdout.splitlines()]
    epochs = [m for m in epochs if m]
    assert [int(m.group(1)) for m in epochs] == [1, *range(10, 101, 10)], result.stdout
    losses = [float(m.group(3)) for m in epochs]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0] / 100, losses
    assert re.search(r"^first step \S+ ms \((compiled|loaded) ", result.stdout, re.M)


def option_help(help_text, option):
    """An option's help entry in argparse's ``--help`` output, wrapped lines joined."""
    entry = re.search(rf"^\s+{option}\b.*(?:\n\s{{20,}}.*)*", help_text, re.M)
    assert entry, help_text
    return " ".join(entry.group(0).split())


def test_demo_help_lists_every_option_with_its_default(run_python):
    result = run_python("-m", "firefly", "demo", "--help")
    assert result.returncode == 0, result.stderr
    for option, default in [
        ("--lr", "(default: 0.01)"),
        ("--dtype", "(default: float32)"),
        ("--seed", "(default: 0)"),
        ("--epochs", "default 100 (digits-cnn: epochs, default 10)"),
    ]:
        assert default in option_help(result.stdout, option), result.stdout


def test_warmup_help_says_each_default_once(run_python):
    result = run_python("-m", "firefly", "warmup", "--help")
    assert result.returncode == 0, result.stderr
    ops = option_help(result.stdout, "--ops")
    assert ops.endswith("(default: every built-in op)") and ops.count("default") == 1, ops
    assert "(default: all)" in option_help(result.stdout, "--dtype")


@pytest.mark.parametrize(
    "args, message",
    [
        (["demo", "--epochs", "0"], "--epochs: must be a positive int, got '0'"),
        (["demo", "--epochs", "abc"], "--epochs: must be a positive int, got 'abc'"),
        (["demo", "--lr", "fast"], "--lr: must be a positive number, got 'fast'"),
        (["demo", "--lr", "-1"], "must be a positive number"),
        (["demo", "--dtype", "float16"], "invalid choice"),
        (["demo", "--seed", "-2"], "must be a non-negative int"),
        ([], "required"),
    ],
)
def test_bad_arguments_exit_with_usage(capsys, args, message):
    # In this process: argparse rejects them before any command runs, exactly as under
    # `python -m firefly`, whose exit status the next test checks in a process of its own.
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_bad_arguments_exit_the_command_with_status_2_and_usage(run_python):
    result = run_python("-m", "firefly", "demo", "--epochs", "0")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("usage: python -m firefly demo"), result.stderr
    assert "--epochs: must be a positive int, got '0'" in result.stderr, result.stderr


def test_info_lists_versions_threading_cache_and_ops(run_python):
    import numba

    result = run_python("-m", "firefly", "info")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(rf"^firefly\s+{re.escape(firefly.__version__)}$", out, re.M)
    assert re.search(r"^distribution\s+firefly-dl \(pip install firefly-dl;", out, re.M)
    assert re.search(rf"^numpy\s+{re.escape(np.__version__)}$", out, re.M)
    assert re.search(rf"^numba\s+{re.escape(numba.__version__)}$", out, re.M)
    assert re.search(r"^threading\s+\w+ layer, \d+ threads$", out, re.M)
    assert re.search(r"^kernel cache\s+\S", out, re.M)
    listed = dict(re.findall(r"^  (\w+)\s+(.+)$", out, re.M))
    assert set(firefly.ops.names()) <= set(listed)
    assert listed["cross_entropy"] == "built-in" and listed["linear"] == "built-in"
