"""``python -m firefly warmup`` fills the kernel cache: a later process compiles nothing."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The seed MLP's step (linear, relu, mse_loss, SGD), reporting (loaded, compiled) kernels.
TRAIN = """
import numpy as np, firefly
from firefly import nn, optim
from firefly.kernels._jit import kernel_load_counts
x = firefly.Tensor(np.ones((8, 10), dtype=np.float32))
y = firefly.Tensor(np.zeros((8, 1), dtype=np.float32))
model = nn.Sequential(nn.Linear(10, 4), nn.ReLU(), nn.Linear(4, 1))
opt = optim.SGD(model.parameters(), lr=0.1)
for _ in range(2):
    opt.zero_grad()
    loss = nn.MSELoss()(model(x), y)
    loss.backward()
    opt.step()
print(*kernel_load_counts())
"""


def _run(args, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )


def test_warmup_leaves_nothing_to_compile(tmp_path):
    warm = _run(
        [
            "-m",
            "firefly",
            "warmup",
            "--dtype",
            "float32",
            "--ops",
            "linear,relu,mse_loss",
            "--processes",
            "2",
        ],
        tmp_path,
    )
    assert warm.returncode == 0, warm.stdout + warm.stderr
    assert "[  4/4]" in warm.stdout and "4 tasks on 2 process(es)" in warm.stdout
    train = _run(["-c", TRAIN], tmp_path)
    assert train.returncode == 0, train.stderr
    loaded, compiled = map(int, train.stdout.split())
    assert compiled == 0 and loaded > 0


def test_warmup_rejects_an_unknown_op(tmp_path):
    result = _run(["-m", "firefly", "warmup", "--ops", "no_such_op"], tmp_path)
    assert result.returncode != 0 and "no_such_op" in result.stderr
