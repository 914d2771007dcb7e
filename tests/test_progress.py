"""Progress bars and training curves: the examples' helper (examples/_progress.py), the
digits examples' --plot, and `python -m firefly warmup`'s bar on a terminal. (The MLP
example's --plot run is test_digits.py's: one run of the example checks its accuracy and its
curves.)"""

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
import _progress  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_epoch_bar_shows_loss_and_throughput_on_a_terminal():
    pytest.importorskip("tqdm", reason='needs tqdm: pip install ".[examples]"')
    stream = Terminal()
    bar = _progress.EpochBar(2, 5, samples=128, stream=stream)
    bar.update(64, 0.75)
    bar.update(64, 0.5)
    bar.bar.refresh()  # tqdm redraws at most every 0.1 s by itself
    shown = stream.getvalue()
    bar.close()
    assert "epoch 2/5" in shown and "128/128" in shown
    assert "loss=0.5000" in shown and "img/s" in shown


def test_epoch_bar_is_silent_off_a_terminal_and_without_tqdm(monkeypatch):
    stream = io.StringIO()
    bar = _progress.EpochBar(1, 1, samples=10, stream=stream)
    bar.update(10, 1.0)
    bar.close()
    assert stream.getvalue() == ""
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now fails, as without it
    bar = _progress.EpochBar(1, 1, samples=10, stream=Terminal())
    assert bar.bar is None
    bar.update(10, 1.0)
    bar.close()


def test_plot_curves_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason='needs matplotlib: pip install ".[examples]"')
    history = {
        "train loss": [1.0, 0.5, 0.2],
        "held-out loss": [1.1, 0.6, 0.4],
        "train accuracy": [80.0, 90.0, 95.0],
        "held-out accuracy": [78.0, 88.0, 91.0],
    }
    path = tmp_path / "curves.png"
    _progress.plot_curves(path, history, "test")
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5_000


@pytest.mark.parametrize("script", ["digits_mlp.py", "digits_cnn.py"])
def test_plot_without_matplotlib_says_so_before_training(run_python, script):
    path = REPO / "examples" / script
    hide_matplotlib_and_run = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(path.parent)!r})\n"
        "sys.modules['matplotlib'] = None  # import matplotlib now fails, as without it\n"
        f"sys.argv = [{str(path)!r}, '--plot', 'x.png']\n"
        f"runpy.run_path({str(path)!r}, run_name='__main__')\n"
    )
    result = run_python("-c", hide_matplotlib_and_run)
    assert result.returncode == 1 and result.stdout == "", result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f'{script} --plot needs matplotlib: pip install "firefly-dl[examples]"'
    ]


def test_warmup_shows_a_bar_on_a_terminal():
    pytest.importorskip("tqdm", reason='needs tqdm: pip install ".[examples]"')
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    # The suite's own kernel cache: the bar is the same whether its tasks compile or load, and
    # test_warmup.py proves the compiling on an empty cache.
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [
        sys.executable,
        "-m",
        "firefly",
        "warmup",
        "--ops",
        "relu",
        "--dtype",
        "float32",
        "--processes",
        "1",
    ]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    stdout = process.communicate(timeout=600)[0].decode()
    os.close(controller)
    assert process.returncode == 0, stdout
    assert "[  2/2] relu" in stdout  # the per-task lines still go to stdout
    assert b"warmup: 100%" in shown and b"2/2" in shown
