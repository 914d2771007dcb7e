"""Adamax, Adadelta, NAdam, RAdam, Rprop and ASGD against torch.optim in float64: trajectories
and state over many steps with two param groups of different hyperparameters, state_dict
round trips, and the checks of bad hyperparameters."""

import numpy as np
import pytest

import firefly
from firefly.nn import Parameter
from firefly.optim import ASGD, Adadelta, Adamax, NAdam, RAdam, Rprop
from firefly.tensor import Tensor

torch = pytest.importorskip("torch")

SHAPES = [(3, 4), (4,), (2, 3, 2), ()]  # the first two in group 0, the others in group 1
STEPS = 25
RTOL = 1e-12

# (firefly class, torch class name, group 0 options, group 1 options, torch's state names,
#  bad hyperparameters with the message each must give)
CASES = {
    "Adamax": (
        Adamax,
        "Adamax",
        dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6),
        dict(lr=0.05, betas=(0.9, 0.999), weight_decay=0.1, maximize=True),
        ("exp_avg", "exp_inf"),
        [
            (dict(lr=-1.0), "Adamax: invalid lr value -1.0"),
            (dict(betas=(1.0, 0.9)), r"Adamax: invalid betas\[0\] value 1.0"),
            (dict(betas=(0.9, -0.1)), r"Adamax: invalid betas\[1\] value -0.1"),
            (dict(eps=-1e-8), "Adamax: invalid eps value"),
            (dict(weight_decay=-0.1), "Adamax: invalid weight_decay value"),
        ],
    ),
    "Adadelta": (
        Adadelta,
        "Adadelta",
        dict(lr=0.5, rho=0.8, eps=1e-5),
        dict(lr=1.0, rho=0.95, weight_decay=0.2, maximize=True),
        ("square_avg", "acc_delta"),
        [
            (dict(lr=-1.0), "Adadelta: invalid lr value -1.0"),
            (dict(rho=1.5), r"Adadelta: invalid rho value 1.5; it must be in \[0, 1\]"),
            (dict(rho=-0.5), "Adadelta: invalid rho value -0.5"),
            (dict(eps=-1.0), "Adadelta: invalid eps value"),
            (dict(weight_decay=-0.1), "Adadelta: invalid weight_decay value"),
        ],
    ),
    "NAdam": (
        NAdam,
        "NAdam",
        dict(lr=0.01, betas=(0.8, 0.99), momentum_decay=0.01, weight_decay=0.05),
        dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
        ("exp_avg", "exp_avg_sq", "mu_product"),
        [
            (dict(lr=-1.0), "NAdam: invalid lr value -1.0"),
            (dict(betas=(0.9, 1.0)), r"NAdam: invalid betas\[1\] value 1.0"),
            (dict(momentum_decay=-1.0), "NAdam: invalid momentum_decay value -1.0"),
            (dict(eps=-1e-8), "NAdam: invalid eps value"),
            (dict(weight_decay=float("nan")), "NAdam: invalid weight_decay value"),
        ],
    ),
    # beta2 = 0.99 and 0.999: rho_t passes 5 after a few steps, so both updates run
    "RAdam": (
        RAdam,
        "RAdam",
        dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.05),
        dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
        ("exp_avg", "exp_avg_sq"),
        [
            (dict(lr=-1.0), "RAdam: invalid lr value -1.0"),
            (dict(betas=(-0.1, 0.9)), r"RAdam: invalid betas\[0\] value -0.1"),
            (dict(eps=-1e-8), "RAdam: invalid eps value"),
            (dict(weight_decay=-0.1), "RAdam: invalid weight_decay value"),
        ],
    ),
    # Rprop has no weight decay; random gradients change sign often, so every branch runs
    "Rprop": (
        Rprop,
        "Rprop",
        dict(lr=0.01, etas=(0.4, 1.3), step_sizes=(3e-3, 0.012)),  # both bounds reached
        dict(lr=0.02, maximize=True),
        ("prev", "step_size"),
        [
            (dict(lr=-1.0), "Rprop: invalid lr value -1.0"),
            (dict(etas=(1.1, 1.2)), r"Rprop: invalid etas \(1.1, 1.2\)"),
            (dict(etas=(0.5, 0.9)), r"Rprop: invalid etas \(0.5, 0.9\)"),
            (dict(step_sizes=(1e-6, float("inf"))), r"Rprop: invalid step_sizes\[1\] value"),
        ],
    ),
    # t0 = 5 in group 0: averaging starts within the 25 steps; group 1 only copies
    "ASGD": (
        ASGD,
        "ASGD",
        dict(lr=0.05, lambd=0.01, alpha=0.5, t0=5.0, weight_decay=0.05),
        dict(lr=0.02, weight_decay=0.1, maximize=True),
        ("ax", "eta", "mu"),
        [
            (dict(lr=-1.0), "ASGD: invalid lr value -1.0"),
            (dict(weight_decay=-0.1), "ASGD: invalid weight_decay value"),
            (dict(t0=float("nan")), "ASGD: invalid t0 value"),
        ],
    ),
}


@pytest.fixture(autouse=True)
def torch_float64_scalars():
    """torch keeps NAdam's mu_product in its default dtype: float64, as firefly computes it."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def problem(seed=0):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(STEPS)]
    return values, grads


def groups(params, options0, options1):
    return [{"params": params[:2], **options0}, {"params": params[2:], **options1}]


def firefly_optimizer(name, values):
    cls, _, options0, options1, _, _ = CASES[name]
    params = [Parameter(v.copy()) for v in values]
    return params, cls(groups(params, options0, options1))


def torch_optimizer(name, values):
    _, torch_name, options0, options1, _, _ = CASES[name]
    params = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    # foreach=False: torch's single-tensor implementation, the one firefly follows
    optimizer = getattr(torch.optim, torch_name)(groups(params, options0, options1), foreach=False)
    return params, optimizer


def step_both(ours, theirs, grads):
    (params, optimizer), (torch_params, torch_opt) = ours, theirs
    for p, tp, g in zip(params, torch_params, grads):
        p.grad = Tensor(g.copy())
        tp.grad = torch.tensor(g.copy())
    optimizer.step()
    torch_opt.step()


@pytest.mark.parametrize("name", CASES)
def test_trajectory_and_state_match_torch_in_float64(name):
    values, grad_steps = problem()
    ours, theirs = firefly_optimizer(name, values), torch_optimizer(name, values)
    for grads in grad_steps:
        step_both(ours, theirs, grads)
        for p, tp in zip(ours[0], theirs[0]):
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=RTOL, atol=1e-300)
    state = ours[1].state_dict()["state"]
    torch_state = theirs[1].state_dict()["state"]
    assert sorted(state) == sorted(torch_state) == list(range(len(SHAPES)))
    for index, entry in state.items():
        assert set(entry) == set(torch_state[index]) == {"step", *CASES[name][4]}
        assert entry["step"] == int(torch_state[index]["step"]) == STEPS
        for key in CASES[name][4]:
            np.testing.assert_allclose(entry[key], np.asarray(torch_state[index][key]), rtol=RTOL)


@pytest.mark.parametrize("name", CASES)
def test_param_groups_are_torchs(name):
    values, _ = problem()
    _, optimizer = firefly_optimizer(name, values)
    _, torch_opt = torch_optimizer(name, values)
    for ours, theirs in zip(
        optimizer.state_dict()["param_groups"], torch_opt.state_dict()["param_groups"]
    ):
        for key, value in ours.items():
            expected = theirs[key]
            assert (tuple(value) if isinstance(value, tuple) else value) == (
                tuple(expected)
                if isinstance(expected, (tuple, list)) and key != "params"
                else expected
            ), key


@pytest.mark.parametrize("name", CASES)
def test_state_dict_round_trip_resumes_the_same_trajectory(name, tmp_path):
    values, grad_steps = problem(1)
    uninterrupted = firefly_optimizer(name, values)
    for grads in grad_steps:
        for p, g in zip(uninterrupted[0], grads):
            p.grad = Tensor(g.copy())
        uninterrupted[1].step()

    first = firefly_optimizer(name, values)
    half = STEPS // 2
    for grads in grad_steps[:half]:
        for p, g in zip(first[0], grads):
            p.grad = Tensor(g.copy())
        first[1].step()
    path = tmp_path / "optimizer.ff"
    firefly.save(first[1].state_dict(), path)
    resumed = firefly_optimizer(name, [p.numpy() for p in first[0]])
    resumed[1].load_state_dict(firefly.load(path))
    assert resumed[1].state_dict()["state"].keys() == first[1].state_dict()["state"].keys()
    for grads in grad_steps[half:]:
        for p, g in zip(resumed[0], grads):
            p.grad = Tensor(g.copy())
        resumed[1].step()
    for p, q in zip(uninterrupted[0], resumed[0]):
        np.testing.assert_array_equal(p.numpy(), q.numpy())


@pytest.mark.parametrize(
    "name, bad, message",
    [(name, bad, message) for name, case in CASES.items() for bad, message in case[5]],
)
def test_bad_hyperparameters_raise_a_clear_value_error(name, bad, message):
    cls = CASES[name][0]
    with pytest.raises(ValueError, match=message):
        cls([Parameter(np.zeros(3))], **bad)
    # the same check when a group changes it before a step
    p = Parameter(np.zeros(3))
    optimizer = cls([p])
    key, value = next(iter(bad.items()))
    optimizer.param_groups[0][key] = value
    p.grad = Tensor(np.ones(3))
    with pytest.raises(ValueError, match=message):
        optimizer.step()


def test_defaults_are_torchs():
    import inspect

    for name, case in CASES.items():
        ours = inspect.signature(case[0]).parameters
        theirs = inspect.signature(getattr(torch.optim, case[1])).parameters
        for key in ours:
            if key != "params":
                assert ours[key].default == theirs[key].default, (name, key)


@pytest.mark.parametrize("name", CASES)
def test_float32_stays_float32_and_within_rounding_of_torch(name):
    """float32 buffers compute in float32 as torch does; torch's fused multiply-adds round
    differently, by under an ulp of the parameters' scale per step (measured: < 0.9)."""
    values, grad_steps = problem(2)
    values = [v.astype(np.float32) for v in values]
    ours, theirs = firefly_optimizer(name, values), torch_optimizer(name, values)
    for grads in grad_steps:
        step_both(ours, theirs, [g.astype(np.float32) for g in grads])
    for p, tp in zip(ours[0], theirs[0]):
        assert p.numpy().dtype == np.float32
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-5)
