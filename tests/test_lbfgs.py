"""LBFGS against torch.optim.LBFGS in float64: the same trajectory (parameters and losses
within 1e-12) on the Rosenbrock function and a small MLP, with and without the strong-Wolfe
line search, through history limits and state_dict round trips; and, without torch, that it
minimizes a quadratic to its known solution."""

import numpy as np
import pytest

import firefly
import firefly.nn as nn
import firefly.nn.functional as F
from firefly import Tensor
from firefly.optim import LBFGS


def rosenbrock(xy):
    x, y = xy[0], xy[1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def rosenbrock_with_gradient(point):
    """The extended Rosenbrock function of an even-sized vector and its gradient, in NumPy: the
    closures of both libraries hand the optimizers the same gradient bits, so that any
    difference in the trajectories is the optimizers' (autograd engines may sum a gradient's
    terms in different orders, which an ill-conditioned run amplifies)."""
    x, y = point[0::2], point[1::2]
    loss = ((1 - x) ** 2 + 100 * (y - x * x) ** 2).sum()
    grad = np.empty_like(point)
    grad[0::2] = -2 * (1 - x) - 400 * x * (y - x * x)
    grad[1::2] = 200 * (y - x * x)
    return loss, grad


def test_minimizes_a_quadratic_without_torch():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    hessian = a @ a.T + 6 * np.eye(6)
    b = rng.normal(size=6)
    p = nn.Parameter(np.zeros(6), dtype=np.float64)
    optimizer = LBFGS(
        [p], line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15
    )
    H, bt = Tensor(hessian), Tensor(b)

    def closure():
        optimizer.zero_grad()
        loss = 0.5 * (p @ (H @ p)) - bt @ p
        loss.backward()
        return loss

    for _ in range(3):
        optimizer.step(closure)
    np.testing.assert_allclose(p.numpy(), np.linalg.solve(hessian, b), atol=1e-9)


def test_bad_arguments_name_the_argument():
    p = nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="line_search_fn"):
        LBFGS([p], line_search_fn="armijo")
    with pytest.raises(ValueError, match="lr"):
        LBFGS([p], lr=-1.0)
    with pytest.raises(ValueError, match="param groups"):
        LBFGS([{"params": [p]}, {"params": [nn.Parameter(np.zeros(1))]}])
    with pytest.raises(TypeError, match="closure"):
        LBFGS([p]).step(None)


torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")


def run_rosenbrock(make_optimizer, library, steps, start, reload_at=None):
    if library == "torch":
        p = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    else:
        p = nn.Parameter(np.array(start), dtype=np.float64)
    optimizer = make_optimizer([p])
    losses, points = [], []

    def closure():
        loss, grad = rosenbrock_with_gradient(p.detach().numpy().copy())
        p.grad = torch.tensor(grad) if library == "torch" else Tensor(grad)
        return torch.tensor(loss) if library == "torch" else Tensor(loss)

    for step in range(steps):
        if step == reload_at:
            saved = optimizer.state_dict()
            optimizer = make_optimizer([p])
            optimizer.load_state_dict(saved)
        losses.append(float(optimizer.step(closure)))
        points.append(np.array(p.detach().numpy()))
    return np.array(losses), np.array(points)


CONFIGS = [
    dict(),
    dict(line_search_fn="strong_wolfe"),
    dict(lr=0.5, max_iter=5, history_size=3),
    dict(line_search_fn="strong_wolfe", history_size=2, max_iter=7, max_eval=9),
    dict(line_search_fn="strong_wolfe", tolerance_change=1e-6, tolerance_grad=1e-4),
]


@pytest.mark.parametrize("kwargs", CONFIGS)
@pytest.mark.parametrize("reload_at", [None, 2])
def test_rosenbrock_trajectory_matches_torch(kwargs, reload_at):
    start = np.array([-1.5, 2.0])
    ours = run_rosenbrock(lambda p: LBFGS(p, **kwargs), "firefly", 6, start, reload_at)
    theirs = run_rosenbrock(lambda p: torch.optim.LBFGS(p, **kwargs), "torch", 6, start, reload_at)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12, atol=1e-14)


def test_state_dict_matches_torch_layout():
    kwargs = dict(line_search_fn="strong_wolfe", history_size=3)
    p = nn.Parameter(np.array([-1.5, 2.0]), dtype=np.float64)
    tp = torch.tensor([-1.5, 2.0], dtype=torch.float64, requires_grad=True)
    ours, theirs = LBFGS([p], **kwargs), torch.optim.LBFGS([tp], **kwargs)
    for opt, param, make in ((ours, p, Tensor), (theirs, tp, torch.tensor)):

        def closure(param=param, make=make):
            loss, grad = rosenbrock_with_gradient(param.detach().numpy().copy())
            param.grad = make(grad)
            return make(loss)

        opt.step(closure)
    mine, torchs = ours.state_dict(), theirs.state_dict()
    assert mine["param_groups"] == torchs["param_groups"]
    assert set(mine["state"][0]) == set(torchs["state"][0])
    for key, value in torchs["state"][0].items():
        if isinstance(value, torch.Tensor):
            np.testing.assert_allclose(mine["state"][0][key], value.numpy(), rtol=1e-12)
        elif isinstance(value, list):
            for a, b in zip(mine["state"][0][key], value):
                assert (a is None) == (b is None)
                if b is not None:
                    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)
        else:
            assert mine["state"][0][key] == pytest.approx(float(value), rel=1e-12)
    # torch's state, converted to arrays, loads into firefly and continues identically.
    converted = {
        "state": {
            0: {
                k: (
                    v.numpy()
                    if isinstance(v, torch.Tensor)
                    else [x.numpy() if isinstance(x, torch.Tensor) else x for x in v]
                    if isinstance(v, list)
                    else v
                )
                for k, v in torchs["state"][0].items()
            }
        },
        "param_groups": torchs["param_groups"],
    }
    fresh = LBFGS([p], **kwargs)
    fresh.load_state_dict(converted)
    assert set(fresh.state_dict()["state"][0]) == set(mine["state"][0])
    np.testing.assert_array_equal(fresh.state["d"], theirs.state[tp]["d"].numpy())


def mlp_run(library, kwargs, steps=4):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(16, 3)), rng.normal(size=(16, 1))
    torch.manual_seed(0)
    t_model = torch.nn.Sequential(
        torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
    ).double()
    if library == "torch":
        model, inputs, targets, loss_fn = (
            t_model,
            torch.tensor(x),
            torch.tensor(y),
            torch.nn.functional.mse_loss,
        )
        optimizer = torch.optim.LBFGS(model.parameters(), **kwargs)
    else:
        model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()
        model.load_state_dict({k: v.detach().numpy() for k, v in t_model.state_dict().items()})
        inputs, targets, loss_fn = Tensor(x), Tensor(y), F.mse_loss
        optimizer = LBFGS(model.parameters(), **kwargs)

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        return loss

    losses = [float(optimizer.step(closure)) for _ in range(steps)]
    weights = np.concatenate([p.detach().numpy().reshape(-1) for p in model.parameters()])
    return np.array(losses), weights


@pytest.mark.parametrize(
    "kwargs", [dict(max_iter=10), dict(line_search_fn="strong_wolfe", max_iter=10, history_size=5)]
)
def test_mlp_trajectory_matches_torch(kwargs):
    ours, theirs = mlp_run("firefly", kwargs), mlp_run("torch", kwargs)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10, atol=1e-12)
    assert ours[0][-1] < ours[0][0]


def test_firefly_save_round_trip(tmp_path):
    ours = LBFGS([nn.Parameter(np.array([-1.5, 2.0]), dtype=np.float64)])
    p = ours.param_groups[0]["params"][0]

    def closure():
        ours.zero_grad()
        loss = rosenbrock(p)
        loss.backward()
        return loss

    ours.step(closure)
    firefly.save(ours.state_dict(), tmp_path / "lbfgs.npz")
    restored = LBFGS([p])
    restored.load_state_dict(firefly.load(tmp_path / "lbfgs.npz"))
    assert restored.state["n_iter"] == ours.state["n_iter"]
    np.testing.assert_array_equal(restored.state["d"], ours.state["d"])
