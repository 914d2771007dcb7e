"""The example scripts run as a user runs them and do what they say."""

import re


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
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    result = run_python("-c", hide_torch_and_run)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == "", result.stdout  # nothing trained, not even the banner
    assert result.stderr.splitlines() == [
        "digits_cnn.py --torch needs PyTorch, which is not installed: pip install torch==2.13.0"
    ], result.stderr
