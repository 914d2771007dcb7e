"""Learning-rate schedulers: sequences against hand-written closed forms, against
torch.optim.lr_scheduler when installed (100 steps, two param groups, to 1e-12), momentum
cycling, state_dict resume through firefly.save, and argument checking."""

import math
import warnings
from bisect import bisect_right

import numpy as np
import pytest

import firefly
from firefly.nn import Parameter
from firefly.optim import SGD, Adagrad, Adam, RMSprop, lr_scheduler

STEPS = 100
BASE_LRS = (0.1, 0.05)


def optimizer(cls=SGD, **options):
    params = [Parameter(np.ones(2)), Parameter(np.ones(3))]
    if cls is SGD:
        options.setdefault("momentum", 0.9)
    return cls(
        [{"params": [params[0]], "lr": BASE_LRS[0]}, {"params": [params[1]], "lr": BASE_LRS[1]}],
        **options,
    )


def sequence(scheduler, steps=STEPS, metrics=None):
    """get_last_lr() after construction and after each of ``steps`` steps."""
    lrs = [list(scheduler.get_last_lr())]
    for step in range(steps):
        if metrics is None:
            scheduler.step()
        else:
            scheduler.step(metrics[step])
        lrs.append(list(scheduler.get_last_lr()))
    return np.array(lrs)


def expected(formula, steps=STEPS):
    """formula(base_lr, t) for t = 0..steps, per group."""
    return np.array([[formula(base, t) for base in BASE_LRS] for t in range(steps + 1)])


def plateau_metrics():
    return [1.0 / (1 + t) if t < 30 else 0.5 + 0.01 * (t % 3 == 0) for t in range(STEPS)]


# ----------------------------------------------------------------------------- closed forms
def one_cycle(base_max, t, total=STEPS + 1, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    initial = base_max / div_factor
    minimum = initial / final_div_factor
    warm_end = pct_start * total - 1
    if t <= warm_end:
        start, end, pct = initial, base_max, t / warm_end
    else:
        start, end, pct = base_max, minimum, (t - warm_end) / (total - 1 - warm_end)
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def warm_restarts(base, t, T_0=10, T_mult=2, eta_min=1e-4):
    period, start = T_0, 0
    while t >= start + period:
        start, period = start + period, period * T_mult
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * (t - start) / period)) / 2


def plateau(base, t, patience=3, factor=0.5, cooldown=2, threshold=1e-4):
    """ReduceLROnPlateau's rule, written out: a reduction once more than ``patience`` steps in
    a row brought no relative improvement of ``threshold``, then ``cooldown`` steps ignored."""
    metrics = plateau_metrics()
    lr, best, bad, cooling = base, math.inf, 0, 0
    for metric in metrics[:t]:
        if metric < best * (1 - threshold):
            best, bad = metric, 0
        else:
            bad += 1
        if cooling > 0:
            cooling -= 1
            bad = 0
        if bad > patience:
            lr, cooling, bad = lr * factor, cooldown, 0
    return lr


CASES = {
    "LambdaLR": (
        lambda m, o: m.LambdaLR(o, lambda e: 0.95**e + 0.01 * e),
        lambda base, t: base * (0.95**t + 0.01 * t),
    ),
    "MultiplicativeLR": (
        lambda m, o: m.MultiplicativeLR(o, lambda e: 0.97),
        lambda base, t: base * 0.97**t,
    ),
    "StepLR": (
        lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
        lambda base, t: base * 0.5 ** (t // 7),
    ),
    "MultiStepLR": (
        lambda m, o: m.MultiStepLR(o, milestones=[10, 30, 30, 70], gamma=0.3),
        lambda base, t: base * 0.3 ** bisect_right([10, 30, 30, 70], t),
    ),
    "ExponentialLR": (lambda m, o: m.ExponentialLR(o, gamma=0.97), lambda base, t: base * 0.97**t),
    "CosineAnnealingLR": (
        lambda m, o: m.CosineAnnealingLR(o, T_max=30, eta_min=1e-3),
        lambda base, t: 1e-3 + (base - 1e-3) * (1 + math.cos(math.pi * t / 30)) / 2,
    ),
    "LinearLR": (
        lambda m, o: m.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=40),
        lambda base, t: base * (0.2 + 0.7 * min(t, 40) / 40),
    ),
    "ConstantLR": (
        lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=20),
        lambda base, t: base * (0.5 if t < 20 else 1.0),
    ),
    "PolynomialLR": (
        lambda m, o: m.PolynomialLR(o, total_iters=50, power=2.0),
        lambda base, t: base * (1 - min(t, 50) / 50) ** 2,
    ),
    "OneCycleLR": (
        lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=STEPS + 1),
        lambda base, t: one_cycle(1.0 if base == BASE_LRS[0] else 0.5, t),
    ),
    "CosineAnnealingWarmRestarts": (
        lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=1e-4),
        warm_restarts,
    ),
    "SequentialLR": (
        lambda m, o: m.SequentialLR(
            o, [m.LinearLR(o, 0.1, 1.0, 10), m.ExponentialLR(o, 0.9)], [10]
        ),
        lambda base, t: base * (0.1 + 0.9 * t / 10) if t < 10 else base * 0.9 ** (t - 10),
    ),
    "ReduceLROnPlateau": (
        lambda m, o: m.ReduceLROnPlateau(o, patience=3, factor=0.5, cooldown=2),
        plateau,
    ),
}


def run_case(name, module, opt):
    make, _ = CASES[name]
    scheduler = make(module, opt)
    metrics = plateau_metrics() if name == "ReduceLROnPlateau" else None
    return scheduler, sequence(scheduler, metrics=metrics)


@pytest.mark.parametrize("name", list(CASES))
def test_sequence_matches_closed_form(name):
    _, formula = CASES[name]
    opt = optimizer()
    _, lrs = run_case(name, lr_scheduler, opt)
    # The recursive (chainable) forms round differently from the closed forms.
    np.testing.assert_allclose(lrs, expected(formula), rtol=1e-12, atol=1e-15)
    assert [g["lr"] for g in opt.param_groups] == list(lrs[-1])


def test_one_cycle_moves_momentum_and_beta1_the_other_way():
    """Each phase anneals lr from a to b and momentum from c to d with the same cosine weight
    w: (lr - b) / (a - b) == (momentum - d) / (c - d). SGD's momentum and Adam's beta1 move
    alike; beta2 stays."""
    sgd = optimizer()
    adam = optimizer(Adam, betas=(0.9, 0.99))
    schedulers = [
        lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=STEPS + 1) for o in (sgd, adam)
    ]
    initial_lr, max_lr = 1.0 / 25, 1.0
    min_lr = initial_lr / 1e4
    warm_end = 0.3 * (STEPS + 1) - 1
    for t in range(STEPS + 1):
        if t:
            for s in schedulers:
                s.step()
        lr, momentum = sgd.param_groups[0]["lr"], sgd.param_groups[0]["momentum"]
        assert adam.param_groups[0]["betas"] == (momentum, 0.99)
        if t <= warm_end:
            lr_weight, momentum_weight = (
                (lr - max_lr) / (initial_lr - max_lr),
                (momentum - 0.85) / (0.95 - 0.85),
            )
        else:
            lr_weight, momentum_weight = (
                (lr - min_lr) / (max_lr - min_lr),
                (momentum - 0.95) / (0.85 - 0.95),
            )
        assert abs(lr_weight - momentum_weight) < 1e-9, t
    assert sgd.param_groups[0]["momentum"] == 0.95 and sgd.param_groups[0]["lr"] == pytest.approx(
        min_lr, rel=1e-12
    )


# ----------------------------------------------------------------------------- torch oracle
TORCH_OPTIMIZERS = {
    "SGD": (SGD, "SGD", dict(momentum=0.9)),
    "Adam": (Adam, "Adam", dict(betas=(0.9, 0.99))),
    "RMSprop": (RMSprop, "RMSprop", dict(momentum=0.5)),
    "Adagrad": (Adagrad, "Adagrad", {}),
}

EXTRA_SETTINGS = {
    "StepLR-3": lambda m, o: m.StepLR(o, 3),
    "MultiStepLR-unsorted": lambda m, o: m.MultiStepLR(o, [50, 5, 20], gamma=0.5),
    "CosineAnnealingLR-periodic": lambda m, o: m.CosineAnnealingLR(o, T_max=17),
    "CosineAnnealingWarmRestarts-1": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=7),
    "LinearLR-down": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=60),
    "ConstantLR-default": lambda m, o: m.ConstantLR(o),
    "OneCycleLR-three-phase-linear": lambda m, o: m.OneCycleLR(
        o,
        1.0,
        epochs=10,
        steps_per_epoch=11,
        three_phase=True,
        anneal_strategy="linear",
        pct_start=0.25,
    ),
    "OneCycleLR-no-momentum": lambda m, o: m.OneCycleLR(
        o, 0.3, total_steps=150, cycle_momentum=False, div_factor=10.0
    ),
    "SequentialLR-three": lambda m, o: m.SequentialLR(
        o, [m.ConstantLR(o, 0.25, 5), m.StepLR(o, 10, 0.5), m.CosineAnnealingLR(o, 20)], [5, 40]
    ),
    "ReduceLROnPlateau-max-abs": lambda m, o: m.ReduceLROnPlateau(
        o, mode="max", threshold_mode="abs", threshold=0.01, patience=2, min_lr=[0.01, 0.002]
    ),
    "PolynomialLR-default": lambda m, o: m.PolynomialLR(o),
}


def torch_optimizer(torch, name, **extra):
    _, torch_name, options = TORCH_OPTIMIZERS[name]
    params = [torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)]
    return getattr(torch.optim, torch_name)(
        [{"params": [params[0]], "lr": BASE_LRS[0]}, {"params": [params[1]], "lr": BASE_LRS[1]}],
        **options,
        **extra,
    )


def all_settings():
    for name, (make, _) in CASES.items():
        yield name, make
    yield from EXTRA_SETTINGS.items()


# Adagrad has no momentum for OneCycleLR to cycle (torch raises too): only its no-momentum setting.
SEQUENCE_CASES = [
    (setting, opt_name)
    for setting in dict(all_settings())
    for opt_name in TORCH_OPTIMIZERS
    if not ("OneCycleLR" in setting and opt_name == "Adagrad" and "no-momentum" not in setting)
]


@pytest.mark.parametrize("setting, opt_name", SEQUENCE_CASES)
def test_sequence_matches_torch(setting, opt_name):
    torch = pytest.importorskip(
        "torch", reason="needs torch as the oracle: pip install torch==2.13.0"
    )
    make = dict(all_settings())[setting]
    cls, _, options = TORCH_OPTIMIZERS[opt_name]
    ours_opt, theirs_opt = optimizer(cls, **options), torch_optimizer(torch, opt_name)
    ours, theirs = make(lr_scheduler, ours_opt), make(torch.optim.lr_scheduler, theirs_opt)
    metrics = plateau_metrics() if "Plateau" in setting else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that optimizer.step() was never called
        steps = (
            149
            if setting == "OneCycleLR-no-momentum"
            else (109 if "three-phase" in setting else STEPS)
        )
        np.testing.assert_allclose(
            sequence(ours, steps, metrics), sequence(theirs, steps, metrics), rtol=1e-12, atol=0
        )
    for ours_group, theirs_group in zip(ours_opt.param_groups, theirs_opt.param_groups):
        for key in (
            "momentum",
            "betas",
            "initial_lr",
            "max_lr",
            "min_lr",
            "max_momentum",
            "base_momentum",
        ):
            assert (key in ours_group) == (key in theirs_group), key
            if key in ours_group:
                np.testing.assert_allclose(
                    ours_group[key], theirs_group[key], rtol=1e-12, atol=0, err_msg=key
                )


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize("name", list(CASES))
def test_resume_through_firefly_save_continues_the_sequence(name, tmp_path):
    opt = optimizer()
    straight, straight_lrs = run_case(name, lr_scheduler, opt)

    first_opt = optimizer()
    make, _ = CASES[name]
    first = make(lr_scheduler, first_opt)
    metrics = plateau_metrics() if name == "ReduceLROnPlateau" else [None] * STEPS
    for t in range(40):
        first.step() if metrics[t] is None else first.step(metrics[t])
    firefly.save(
        {"optimizer": first_opt.state_dict(), "scheduler": first.state_dict()},
        tmp_path / "ckpt.npz",
    )
    checkpoint = firefly.load(tmp_path / "ckpt.npz")

    # torch's order: build optimizer and scheduler, then load both (the constructor's first
    # step changes lr; the loaded optimizer state puts the saved lr back).
    resumed_opt = optimizer()
    resumed = make(lr_scheduler, resumed_opt)
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    resumed.load_state_dict(checkpoint["scheduler"])
    lrs = [list(resumed.get_last_lr())]
    for t in range(40, STEPS):
        resumed.step() if metrics[t] is None else resumed.step(metrics[t])
        lrs.append(list(resumed.get_last_lr()))
    np.testing.assert_array_equal(np.array(lrs), straight_lrs[40:])
    assert [g["lr"] for g in resumed_opt.param_groups] == [g["lr"] for g in opt.param_groups]


def test_initial_lr_is_needed_to_resume_with_last_epoch():
    with pytest.raises(KeyError, match=r"param_groups\[0\] has no 'initial_lr'"):
        lr_scheduler.StepLR(optimizer(), 3, last_epoch=5)
    opt = optimizer()
    for group in opt.param_groups:
        group["initial_lr"] = group["lr"]
    scheduler = lr_scheduler.StepLR(opt, 3, gamma=0.5, last_epoch=5)
    assert scheduler.last_epoch == 6


# ----------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda o: lr_scheduler.StepLR(o, 0), ValueError, "step_size must be an int >= 1"),
        (lambda o: lr_scheduler.StepLR(o, 2.5), ValueError, "step_size must be an int"),
        (
            lambda o: lr_scheduler.StepLR(o, 3, gamma=float("nan")),
            ValueError,
            "gamma must be a finite number",
        ),
        (
            lambda o: lr_scheduler.MultiStepLR(o, [3, "x"]),
            ValueError,
            "each milestone must be an int",
        ),
        (lambda o: lr_scheduler.ExponentialLR(o, gamma=-0.5), ValueError, "gamma must be >= 0"),
        (lambda o: lr_scheduler.ConstantLR(o, factor=1.5), ValueError, "factor must be <= 1"),
        (
            lambda o: lr_scheduler.LinearLR(o, start_factor=0.0),
            ValueError,
            "start_factor must be > 0",
        ),
        (
            lambda o: lr_scheduler.LinearLR(o, total_iters=0),
            ValueError,
            "total_iters must be an int >= 1",
        ),
        (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=0), ValueError, "T_max must be > 0"),
        (
            lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=0),
            ValueError,
            "T_0 must be an int >= 1",
        ),
        (
            lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=1.5),
            ValueError,
            "T_mult must be an int",
        ),
        (
            lambda o: lr_scheduler.OneCycleLR(o, 1.0),
            ValueError,
            "give either total_steps, or epochs and steps_per_epoch",
        ),
        (
            lambda o: lr_scheduler.OneCycleLR(o, 1.0, total_steps=10, anneal_strategy="exp"),
            ValueError,
            "anneal_strategy",
        ),
        (
            lambda o: lr_scheduler.OneCycleLR(o, 1.0, total_steps=10, pct_start=1.5),
            ValueError,
            "pct_start must be <= 1",
        ),
        (
            lambda o: lr_scheduler.OneCycleLR(o, [1.0], total_steps=10),
            ValueError,
            "max_lr has 1 values, but the optimizer has 2",
        ),
        (lambda o: lr_scheduler.LambdaLR(o, [lambda e: 1.0]), ValueError, "expected 2 lr_lambdas"),
        (lambda o: lr_scheduler.LambdaLR(o, 0.5), TypeError, "lr_lambda must be a function"),
        (
            lambda o: lr_scheduler.ReduceLROnPlateau(o, factor=1.0),
            ValueError,
            "factor must be < 1.0",
        ),
        (
            lambda o: lr_scheduler.ReduceLROnPlateau(o, mode="lowest"),
            ValueError,
            "mode must be 'min' or 'max'",
        ),
        (
            lambda o: lr_scheduler.ReduceLROnPlateau(o, threshold_mode="x"),
            ValueError,
            "threshold_mode must be",
        ),
        (
            lambda o: lr_scheduler.ReduceLROnPlateau(o, min_lr=[0.1]),
            ValueError,
            "expected 2 min_lrs",
        ),
        (
            lambda o: lr_scheduler.SequentialLR(o, [lr_scheduler.StepLR(o, 2)], [3]),
            ValueError,
            "one milestone fewer",
        ),
        (
            lambda o: lr_scheduler.SequentialLR(
                o, [lr_scheduler.StepLR(o, 2), lr_scheduler.ReduceLROnPlateau(o)], [3]
            ),
            ValueError,
            "ReduceLROnPlateau",
        ),
        (
            lambda o: lr_scheduler.SequentialLR(
                o, [lr_scheduler.StepLR(optimizer(), 2), lr_scheduler.StepLR(o, 2)], [3]
            ),
            ValueError,
            "belongs to another optimizer",
        ),
        (
            lambda o: lr_scheduler.StepLR("not an optimizer", 3),
            TypeError,
            "is not a firefly optimizer",
        ),
    ],
)
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make(optimizer())


def test_one_cycle_refuses_an_optimizer_without_momentum_and_too_many_steps():
    with pytest.raises(
        ValueError, match="cycle_momentum=True needs an optimizer with momentum or betas"
    ):
        lr_scheduler.OneCycleLR(optimizer(Adagrad), 1.0, total_steps=10)
    scheduler = lr_scheduler.OneCycleLR(optimizer(), 1.0, total_steps=3)
    scheduler.step()
    scheduler.step()
    scheduler.step()
    with pytest.raises(ValueError, match="tried to step 4 times; total_steps is 3"):
        scheduler.step()


def test_a_scheduled_lr_reaches_the_optimizer_step():
    """The lr a scheduler sets is the one the next optimizer.step() uses."""
    param = Parameter(np.zeros(1))
    opt = SGD([param], lr=1.0)
    scheduler = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for expected_lr in (1.0, 0.5, 0.25):
        param.tensor.grad = firefly.Tensor(np.ones(1))
        before = param.numpy().copy()
        opt.step()
        assert before[0] - param.numpy()[0] == expected_lr
        scheduler.step()
