"""firefly.optim.swa_utils against torch.optim.swa_utils in float64: AveragedModel (running mean,
EMA, use_buffers, state_dict), SWALR's learning rates, update_bn's statistics; and the running
mean against NumPy without torch."""

import numpy as np
import pytest

import firefly
import firefly.nn as nn
from firefly import Tensor
from firefly.optim import SGD
from firefly.optim.swa_utils import (
    SWALR,
    AveragedModel,
    get_ema_avg_fn,
    get_ema_multi_avg_fn,
    update_bn,
)


def make_model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).double()


def randomize(model, rng):
    """New random parameters and running mean; returns the state_dict."""
    for p in model.parameters():
        p.numpy()[...] = rng.normal(size=p.shape)
    model[1].running_mean.numpy()[...] = rng.normal(size=4)
    return {k: np.array(v) for k, v in model.state_dict().items()}


def test_running_mean_against_numpy():
    model = make_model()
    averaged = AveragedModel(model)
    history = []
    rng = np.random.default_rng(1)
    for _ in range(4):
        for p in model.parameters():
            p.numpy()[...] = rng.normal(size=p.shape)
        history.append([p.numpy().copy() for p in model.parameters()])
        averaged.update_parameters(model)
    for got, *values in zip(averaged.module.parameters(), *history):
        np.testing.assert_allclose(got.numpy(), np.mean(values, axis=0), rtol=1e-14)
    assert int(averaged.n_averaged.numpy()) == 4
    # The buffers were copied, not averaged.
    np.testing.assert_array_equal(
        averaged.module[1].running_mean.numpy(), model[1].running_mean.numpy()
    )
    assert sorted(averaged.state_dict()) == sorted(
        ["n_averaged"] + [f"module.{k}" for k in model.state_dict()]
    )


def test_swalr_rejects_bad_arguments():
    optimizer = SGD([nn.Parameter(np.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match="anneal_strategy"):
        SWALR(optimizer, 0.05, anneal_strategy="step")
    with pytest.raises(ValueError, match="anneal_epochs"):
        SWALR(optimizer, 0.05, anneal_epochs=-1)
    with pytest.raises(ValueError, match="avg_fn"):
        AveragedModel(make_model(), avg_fn=get_ema_avg_fn(), multi_avg_fn=get_ema_multi_avg_fn())


torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")
TS = torch.optim.swa_utils


def torch_twin(model):
    twin = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)
    ).double()
    twin.load_state_dict({k: torch.tensor(np.array(v)) for k, v in model.state_dict().items()})
    return twin


@pytest.mark.parametrize(
    "ours_kwargs, torch_kwargs",
    [
        ({}, {}),
        ({"use_buffers": True}, {"use_buffers": True}),
        ({"avg_fn": get_ema_avg_fn(0.9)}, {"avg_fn": TS.get_ema_avg_fn(0.9)}),
        (
            {"multi_avg_fn": get_ema_multi_avg_fn(0.7), "use_buffers": True},
            {"multi_avg_fn": TS.get_ema_multi_avg_fn(0.7), "use_buffers": True},
        ),
    ],
)
def test_averaged_model_matches_torch(ours_kwargs, torch_kwargs):
    model = make_model()
    twin = torch_twin(model)
    ours, theirs = AveragedModel(model, **ours_kwargs), TS.AveragedModel(twin, **torch_kwargs)
    rng = np.random.default_rng(2)
    for _ in range(5):
        state = randomize(model, rng)
        twin.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
        ours.update_parameters(model)
        theirs.update_parameters(twin)
    mine = ours.state_dict()
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(
            np.asarray(mine[key]), value.numpy(), rtol=1e-13, atol=1e-15, err_msg=key
        )
    x = np.random.default_rng(3).normal(size=(5, 3))
    ours.eval(), theirs.eval()
    np.testing.assert_allclose(
        ours(Tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-12
    )


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("anneal_epochs", [0, 1, 5])
def test_swalr_matches_torch(strategy, anneal_epochs):
    ours_opt = SGD(
        [
            {"params": [nn.Parameter(np.zeros(2))]},
            {"params": [nn.Parameter(np.zeros(1))], "lr": 0.3},
        ],
        lr=0.1,
    )
    theirs_opt = torch.optim.SGD(
        [
            {"params": [torch.zeros(2, requires_grad=True)]},
            {"params": [torch.zeros(1, requires_grad=True)], "lr": 0.3},
        ],
        lr=0.1,
    )
    first = (
        firefly.optim.lr_scheduler.StepLR(ours_opt, 2, 0.5),
        torch.optim.lr_scheduler.StepLR(theirs_opt, 2, 0.5),
    )
    ours = theirs = None
    for epoch in range(12):
        if epoch < 3:
            first[0].step(), first[1].step()
        else:
            if ours is None:
                ours = SWALR(ours_opt, [0.05, 0.01], anneal_epochs, strategy)
                theirs = TS.SWALR(theirs_opt, [0.05, 0.01], anneal_epochs, strategy)
            ours.step(), theirs.step()
        got = [g["lr"] for g in ours_opt.param_groups]
        want = [g["lr"] for g in theirs_opt.param_groups]
        np.testing.assert_allclose(got, want, rtol=1e-14, err_msg=f"epoch {epoch}")


def test_update_bn_matches_torch():
    model = make_model()
    twin = torch_twin(model)
    rng = np.random.default_rng(4)
    batches = [rng.normal(size=(6, 3)) for _ in range(4)]
    model.eval(), twin.eval()
    update_bn([(Tensor(b), 0) for b in batches], model)
    TS.update_bn([(torch.tensor(b), 0) for b in batches], twin)
    assert not model.training and model[1].momentum == 0.1
    for key, value in twin.state_dict().items():
        np.testing.assert_allclose(
            np.asarray(model.state_dict()[key]), value.numpy(), rtol=1e-12, err_msg=key
        )
