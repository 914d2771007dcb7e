"""Runs a whole PyTorch program twice, on torch and on firefly, where the only difference
between the two runs is the import lines (rewritten here, mechanically), and returns both
results.

A program is a file in this folder written as a PyTorch user writes it, with torch imports. It
defines ``build_model()`` and ``main(model)``. ``main`` trains and returns a dict of results
(``losses`` at least). The harness builds both models, copies torch's initial weights into
firefly's model (so that two deterministic runs start from the same point), and runs ``main``
on each. The firefly run executes the same source with its imports rewritten by
``firefly_source``: nothing else in the program changes.
"""

import re
import types
from pathlib import Path

import numpy as np

import firefly

HERE = Path(__file__).parent


def firefly_source(source):
    """``source`` with its torch imports pointing at firefly: ``import torch`` becomes
    ``import firefly as torch``; ``torch`` at the head of any other import becomes ``firefly``
    (``import torch.nn as nn``, ``from torch.utils.data import DataLoader``, ...)."""
    lines = []
    for line in source.splitlines():
        if re.fullmatch(r"import torch\s*(#.*)?", line):
            line = "import firefly as torch"
        elif re.match(r"(import|from) torch\b", line):
            line = re.sub(r"^(import|from) torch\b", r"\1 firefly", line)
        lines.append(line)
    return "\n".join(lines) + "\n"


def load(name, on_firefly):
    path = HERE / f"{name}.py"
    source = path.read_text()
    if on_firefly:
        source = firefly_source(source)
    module = types.ModuleType(f"{name}_{'firefly' if on_firefly else 'torch'}")
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102  (the program under test)
    return module


def copy_weights(torch_model, firefly_model):
    """torch's initial parameters and buffers into ``firefly_model``, by name: both store them
    in the same layouts."""
    targets = dict(firefly_model.state_dict())
    state = {}
    for key, value in torch_model.state_dict().items():
        array = value.detach().numpy()
        # A tied weight's second name is in torch's state_dict only; load_state_dict takes it.
        dtype = targets[key].dtype if key in targets else array.dtype
        state[key] = np.array(array, dtype=dtype, order="C")  # 0-d stays 0-d
    firefly_model.load_state_dict(state)


def run_twins(name):
    """(firefly's result, torch's result) of program ``name``."""
    import torch

    theirs, ours = load(name, on_firefly=False), load(name, on_firefly=True)
    torch.manual_seed(0)
    firefly.manual_seed(0)
    torch_model = theirs.build_model()
    firefly_model = ours.build_model()
    copy_weights(torch_model, firefly_model)
    return ours.main(firefly_model), theirs.main(torch_model)


def assert_series_close(ours, theirs, rtol, what="losses"):
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape, f"{what}: {ours.shape} vs torch's {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=0, err_msg=what)
