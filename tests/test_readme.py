"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

import firefly

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(block, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the tour writes a checkpoint
    before = set(firefly.ops.names())
    try:
        exec(compile(block, str(README), "exec"), {"__name__": "readme_example"})
    finally:
        for name in set(firefly.ops.names()) - before:  # ops the example registered
            firefly.ops.unregister(name)
    losses = [float(v) for v in re.findall(r"Loss: ([0-9.]+)", capsys.readouterr().out)]
    assert losses == sorted(losses, reverse=True)  # the training example's loss falls
