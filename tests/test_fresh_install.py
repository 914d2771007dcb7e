"""The README's first command, run as a newcomer runs it: a fresh clone, a fresh virtual
environment, nothing else installed. A missing install step makes this test fail.

(The README's second command, the test suite itself, is proven the same way by ``.ci/run``.)
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


README = REPO_ROOT / "README.md"


def readme_commands():
    """The shell commands of the README's fenced blocks without a language, in order."""
    return [block.strip() for block in re.findall(r"```\n(.*?)```", README.read_text(), re.S)]


@pytest.mark.skipif(shutil.which("git") is None, reason="cloning the repository needs git")
@pytest.mark.skipif(
    not (REPO_ROOT / ".git").exists(), reason="not a git checkout: nothing to clone"
)
def test_readme_install_and_demo_work_in_a_fresh_clone_and_venv(tmp_path):
    command = readme_commands()[0]
    assert "pip install" in command and "firefly demo" in command, command
    clone, venv = tmp_path / "clone", tmp_path / "venv"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])  # `python3` is the venv's
    result = subprocess.run(
        ["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    epochs = re.findall(r"^Epoch \[(\d+)/100\], Loss: ([0-9.]+)", result.stdout, re.M)
    assert [int(e) for e, _ in epochs] == [1, *range(10, 101, 10)], result.stdout
    losses = [float(loss) for _, loss in epochs]
    assert losses[-1] < losses[0] / 100, losses
    left_behind = [name for name in ("build", "firefly.egg-info") if (clone / name).exists()]
    assert not left_behind, f"`pip install .` left {left_behind} in the clone"
