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


NEWCOMER_PATH = [
    "Install",
    "The demo",
    "A first model in ten lines",
    "A tour of the API",
    "Examples",
    "Writing an op",
    "Distributed",
    "Compiling a training step",
    "Performance",
    "More",
]


def test_readme_follows_the_newcomers_path():
    text = README.read_text()
    assert re.findall(r"^## (.+)$", text, re.M) == NEWCOMER_PATH
    # Before the first section: what firefly is, then the two commands that work on a fresh
    # machine (tests/test_fresh_install.py runs the first one).
    opening = text.split("\n## ", 1)[0]
    commands = re.findall(r"```\n(.*?)```", opening, re.S)
    assert [c.strip() for c in commands] == [
        "python3 -m pip install . && python3 -m firefly demo",
        'python3 -m pip install -e ".[test]" && python3 -m pytest -n auto',
    ]


def test_readme_says_how_to_run_the_torch_tests_and_keeps_one_table():
    text = README.read_text()
    assert "pip install torch==2.13.0" in text
    # One table, the performance section's summary of one benchmark run (issue 17); the
    # others belong in docs/benchmark-tables.md and docs/performance.md.
    before, performance = text.split("\n## Performance\n")
    performance, after = performance.split("\n## ", 1)
    assert not re.search(r"^\|.*\|$", before + after, re.M), "tables belong in docs/"
    assert re.search(r"^\| case, float32 \| 2 threads \| 1 thread \|$", performance, re.M)
    assert "docs/performance.md" in text and "docs/porting-from-torch.md" in text
