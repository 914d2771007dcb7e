"""The fused optimizers' trajectories, bit for bit, against digests recorded before the
optimizer kernels became one family (firefly.kernels.optim): a refactoring of the kernels or of
how hyperparameters reach them must not change a single bit of any parameter or state buffer.

Each case runs a few steps over parameters of both dtypes in three param groups (with
different hyperparameters per group, a parameter without a gradient on one step, and a
hyperparameter changed between steps), and hashes every parameter and state array after every
step. Both the serial and the parallel run (in shares) of each kernel are checked. A digest
that changes means the arithmetic changed: if that is intended, say so and record new ones
(``python tests/test_optimizer_trajectories.py`` prints them).
"""

import hashlib

import numpy as np
import pytest

from firefly.nn import Parameter
from firefly.optim import SGD, Adagrad, Adam, AdamW, RMSprop
from firefly.tensor import Tensor

SHAPES = [(5, 3), (7,), (), (2, 3, 2)]
STEPS = 4

# (class, constructor options, per-group overrides, hyperparameter changed before step 3)
CASES = {
    "sgd": (SGD, dict(lr=0.1), [dict(), dict(lr=0.05), dict(weight_decay=0.1)], None),
    "sgd-momentum": (
        SGD,
        dict(lr=0.1, momentum=0.9, dampening=0.25),
        [dict(), dict(momentum=0.0), dict(maximize=True, weight_decay=0.01)],
        ("momentum", 0.5),
    ),
    "sgd-nesterov": (
        SGD,
        dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02),
        [dict(), dict(lr=0.01), dict(maximize=True)],
        None,
    ),
    "adam": (
        Adam,
        dict(lr=0.01, betas=(0.8, 0.95)),
        [dict(), dict(weight_decay=0.1), dict(maximize=True, eps=1e-3)],
        ("lr", 0.02),
    ),
    "adam-amsgrad": (
        Adam,
        dict(lr=0.01, amsgrad=True),
        [dict(), dict(amsgrad=False), dict(weight_decay=0.05)],
        None,
    ),
    "adamw": (
        AdamW,
        dict(lr=0.01),
        [dict(), dict(weight_decay=0.3, amsgrad=True), dict(maximize=True)],
        ("betas", (0.5, 0.9)),
    ),
    "rmsprop": (
        RMSprop,
        dict(lr=0.01, alpha=0.9),
        [dict(), dict(centered=True), dict(momentum=0.7), dict(centered=True, momentum=0.3)],
        ("weight_decay", 0.1),
    ),
    "rmsprop-maximize": (
        RMSprop,
        dict(lr=0.01, maximize=True, weight_decay=0.01),
        [dict(), dict(eps=1e-2), dict(centered=True)],
        None,
    ),
    "adagrad": (
        Adagrad,
        dict(lr=0.1, lr_decay=0.05, initial_accumulator_value=0.1),
        [dict(), dict(weight_decay=0.1), dict(maximize=True, eps=1e-3)],
        ("lr", 0.2),
    ),
}


def trajectory_digest(name):
    """A SHA-256 over every parameter and state array after every step of case ``name``, in
    float32 and float64 parameters at once (two flat buffers)."""
    cls, options, overrides, change = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    params = []
    for dtype in (np.float32, np.float64):
        params += [Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]
    groups = [{"params": params[g :: len(overrides)], **o} for g, o in enumerate(overrides)]
    optimizer = cls(groups, **options)
    digest = hashlib.sha256()
    for step in range(STEPS):
        if step == 2 and change is not None:
            key, value = change
            optimizer.param_groups[0][key] = value
        optimizer.zero_grad(set_to_none=True)
        for k, p in enumerate(params):
            if step == 1 and k == 1:
                continue  # no gradient this step: skipped, or an error for SGD
            p.grad = Tensor(rng.standard_normal(p.shape).astype(p.dtype))
        if cls is SGD and step == 1:
            params[1].grad = Tensor(np.zeros(params[1].shape, params[1].dtype))
        optimizer.step()
        for p in params:
            digest.update(np.ascontiguousarray(p.data).tobytes())
        for index, entry in sorted(optimizer.state_dict()["state"].items()):
            for key, value in sorted(entry.items()):
                digest.update(f"{index}:{key}".encode())
                digest.update(
                    np.ascontiguousarray(value).tobytes() if key != "step" else b"%d" % value
                )
    return digest.hexdigest()


RECORDED = {  # before the optimizer kernel family, at commit 9c903aa
    "sgd": "1378ba9d38d46556f8c222fb80ca9bd7d83b6d7b111795764f884eb9cc5c76e0",
    "sgd-momentum": "55d8f998519bf4a90639d07c64538f41b19b2158c0d7d15736e78b0c351dd074",
    "sgd-nesterov": "4b47b1fb62633d5c189c33533409d8f2e28d9bf07223244c20563c7b15f27ae9",
    "adam": "695760a2c0241d5288c337e0368f55e24ce9a89972c7adba9a391a062fef8300",
    "adam-amsgrad": "0cce1131ce761b2686ddbd8320fd77fc8ea66482006422f7ba1b87e8dba643b2",
    "adamw": "dcf06d0a2ac7cf8233d120867d653b4749052c61c0cda4a07862919d94a83a16",
    "rmsprop": "47f77aeb3ce7f2fc935ab645c865e830ace05741fd77e608585947050c24cebb",
    "rmsprop-maximize": "1870de11e41162e087fb7643d99c9112cfbd510a796b7a893f225d2fc93721da",
    "adagrad": "702ec06054bbfd6b19c0bcc85009671b087245a9d1fccb2c202ca5b983de42d4",
}


@pytest.fixture(params=["serial", "parallel"])
def build(request, monkeypatch):
    """Runs the update kernels serially, or in shares at any size."""
    if request.param == "parallel":
        from firefly.kernels import _jit

        for kernel in list(_jit._sized_kernels.values()):
            if kernel.__module__ == "firefly.kernels.optim":
                monkeypatch.setattr(kernel, "threshold", 0)
    return request.param


@pytest.mark.parametrize("name", list(CASES))
def test_trajectory_is_bit_identical_to_the_recorded_one(name, build):
    assert trajectory_digest(name) == RECORDED[name]


if __name__ == "__main__":
    for case in CASES:
        print(f"    {case!r}: {trajectory_digest(case)!r},")
