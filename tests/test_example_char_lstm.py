"""examples/char_lstm.py runs as a user runs it and does what it says (in the style of
tests/test_examples.py): a few training steps, the checkpoint, a sample, plain lines without
tqdm, and its first losses equal the torch twin's in float64."""

import re
from pathlib import Path

import numpy as np
import pytest

import firefly

TINY_LSTM = [
    "--hidden", "16", "--n-embd", "8", "--block-size", "16", "--batch-size", "4",
    "--iters", "6", "--eval-interval", "3", "--eval-iters", "2", "--sample-chars", "40",
]  # fmt: skip


def _char_lstm():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import char_lstm
    finally:
        sys.path.pop(0)
    return char_lstm


def _evaluations(stdout, name="firefly"):
    return [
        (int(it), float(train), float(val))
        for it, train, val in re.findall(
            rf"^{name} step (\d+): train loss (\S+), val loss (\S+)$", stdout, re.M
        )
    ]


def test_char_lstm_trains_a_few_steps_saves_a_checkpoint_and_samples(
    run_python, repo_root, tmp_path
):
    result = run_python(repo_root / "examples" / "char_lstm.py", *TINY_LSTM, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    evaluations = _evaluations(result.stdout)
    assert [e[0] for e in evaluations] == [0, 3, 6], result.stdout
    vocab = int(re.search(r"characters, (\d+) distinct", result.stdout).group(1))
    # An untrained model's small logits are nearly uniform: a loss near ln(vocab).
    assert abs(evaluations[0][2] - np.log(vocab)) < 0.1, (evaluations, vocab)
    assert all(np.isfinite(e[1:]).all() for e in evaluations)
    checkpoint = firefly.load(tmp_path / "char_lstm.npz")
    assert checkpoint["iter"] == 6 and checkpoint["config"]["hidden"] == 16
    state = checkpoint["model"]
    assert state["lstm.weight_ih_l0"].shape == (64, 8)  # torch's names and layouts
    assert state["lstm.weight_hh_l1"].shape == (64, 16)
    assert state["head.weight"].shape == (vocab, 16)
    sample = result.stdout.split("sample:\n", 1)[1]
    assert len(sample) >= 40, result.stdout


def test_char_lstm_without_tqdm_prints_plain_lines(run_python, repo_root, tmp_path):
    script = repo_root / "examples" / "char_lstm.py"
    hide_tqdm_and_run = (
        "import runpy, sys\n"
        "sys.modules['tqdm'] = None  # import tqdm now raises ImportError, as without tqdm\n"
        f"sys.argv = [{str(script)!r}, *{TINY_LSTM!r}, '--sample-chars', '0']\n"
        f"sys.path.insert(0, {str(script.parent)!r})  # what `python script.py` does\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    result = run_python("-c", hide_tqdm_and_run, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [e[0] for e in _evaluations(result.stdout)] == [0, 3, 6], result.stdout
    assert "step/s" not in result.stdout + result.stderr  # no progress bar
    assert "sample:" not in result.stdout


def test_char_lstm_with_torch_missing_says_so_in_one_line_before_training(run_python, repo_root):
    script = repo_root / "examples" / "char_lstm.py"
    hide_torch_and_run = (
        "import runpy, sys\n"
        "sys.modules['torch'] = None\n"
        f"sys.argv = [{str(script)!r}, '--torch']\n"
        f"sys.path.insert(0, {str(script.parent)!r})  # what `python script.py` does\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    result = run_python("-c", hide_torch_and_run)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "char_lstm.py --torch needs PyTorch, which is not installed: pip install torch==2.13.0"
    ], result.stderr


def test_char_lstm_holds_out_the_last_tenth_of_the_python_docs():
    char_lstm = _char_lstm()
    description, text = char_lstm.load_text()
    assert "pydoc_data" in description and len(text) > 100_000
    data = char_lstm.CharData(text)
    train, val = data.splits["train"], data.splits["val"]
    assert len(train) == int(0.9 * len(text)) and len(train) + len(val) == len(text)
    assert data.decode(val) == text[len(train) :]


def test_char_lstm_first_losses_match_torch_in_float64_and_sampling_carries_the_state(tmp_path):
    torch = pytest.importorskip(
        "torch", reason="needs torch for the comparison: pip install torch==2.13.0"
    )
    char_lstm = _char_lstm()
    config = char_lstm.Config(
        hidden=24, n_embd=12, block_size=12, batch_size=4, iters=20, eval_interval=20,
        eval_iters=2, dtype="float64",
    )  # fmt: skip
    data = char_lstm.CharData(char_lstm.load_text()[1])
    ours = char_lstm.train(firefly, config, data, verbose=False)
    theirs = char_lstm.train(torch, config, data, ours.initial_state, verbose=False)
    assert len(ours.losses) == 20
    np.testing.assert_allclose(ours.losses, theirs.losses, rtol=1e-9, atol=0)
    np.testing.assert_allclose(ours.evaluations, theirs.evaluations, rtol=1e-9, atol=0)
    assert ours.losses[-1] < ours.losses[0] - 0.3  # it learns
    # Sampling one character at a time from the carried (h, c) draws what the torch twin
    # draws with the same generator.
    ours_text = char_lstm.sample(firefly, ours.model, data, "def ", 30, temperature=0.8)
    theirs_text = char_lstm.sample(torch, theirs.model, data, "def ", 30, temperature=0.8)
    assert ours_text == theirs_text and len(ours_text) == 34
