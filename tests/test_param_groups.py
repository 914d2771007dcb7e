"""Param groups, hyperparameters set later, flat_grads and step hooks (the distributed
interface), torch-layout state_dict with groups and resume, gradient accumulation,
set_to_none and frozen parameters."""

import numpy as np
import pytest

import firefly
from firefly.nn import Linear, Module, MSELoss, Parameter
from firefly.nn.optimizers.base import BaseOptimizer
from firefly.nn.utils import clip_grad_norm_
from firefly.optim import SGD, Adagrad, Adam, AdamW, RMSprop, lr_scheduler
from firefly.tensor import Tensor

ALL = [SGD, Adam, AdamW, RMSprop, Adagrad]


def params_and_grads(seed, shapes=((3, 4), (4,), (2, 2), (5,)), dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = [Parameter(rng.standard_normal(s).astype(dtype)) for s in shapes]
    grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return params, grads


def give(params, grads):
    for p, g in zip(params, grads):
        getattr(p, "tensor", p).grad = Tensor(g.copy())


class MLP(Module):
    def __init__(self, dtype=np.float64):
        super().__init__()
        self.fc1 = Linear(10, 16, dtype=dtype)
        self.fc2 = Linear(16, 1, dtype=dtype)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu())


def mlp(seed, dtype=np.float64):
    firefly.manual_seed(seed)
    return MLP(dtype)


def data(dtype=np.float64, n=32):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, 10)).astype(dtype)
    return Tensor(x), Tensor((x @ rng.standard_normal((10, 1))).astype(dtype))


def decay_groups(model, **no_decay_options):
    """The usual split: weight decay on weights, none on biases."""
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    return [
        {"params": weights, "weight_decay": 0.1},
        {"params": biases, "weight_decay": 0.0, **no_decay_options},
    ]


# ----------------------------------------------------------------------------- groups
def test_each_group_uses_its_own_hyperparameters():
    params, grads = params_and_grads(1)
    optimizer = SGD(
        [{"params": params[:2], "lr": 0.5, "weight_decay": 0.1}, {"params": params[2:]}], lr=0.25
    )
    before = [p.numpy().copy() for p in params]
    give(params, grads)
    optimizer.step()
    for i, (p, b, g) in enumerate(zip(params, before, grads)):
        want = b - 0.5 * (g + 0.1 * b) if i < 2 else b - 0.25 * g
        np.testing.assert_allclose(p.numpy(), want, rtol=1e-15)
    assert [len(g["params"]) for g in optimizer.param_groups] == [2, 2]
    assert (
        optimizer.param_groups[1]["weight_decay"] == 0.0
        and optimizer.param_groups[0]["momentum"] == 0.0
    )


def test_group_keys_are_torchs_and_names_are_kept():
    model = mlp(0)
    optimizer = Adam(
        [
            {"params": list(model.named_parameters())[:2], "lr": 0.1},
            {"params": list(model.named_parameters())[2:]},
        ],
        betas=(0.8, 0.9),
    )
    group = optimizer.param_groups[0]
    assert list(group) == [
        "params",
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "amsgrad",
        "maximize",
        "param_names",
    ]
    assert group["param_names"] == ["fc1.weight", "fc1.bias"] and group["betas"] == (0.8, 0.9)
    assert optimizer.param_groups[1]["lr"] == 1e-3
    assert optimizer.defaults == dict(
        lr=1e-3, betas=(0.8, 0.9), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False
    )


def test_plain_leaf_tensors_and_generators_are_accepted():
    rng = np.random.default_rng(2)
    tensors = [Tensor(rng.standard_normal(s), requires_grad=True) for s in ((2, 3), (3,))]
    optimizer = SGD((t for t in tensors), lr=0.1)
    grads = [np.ones((2, 3)), np.full(3, 2.0)]
    before = [t.numpy().copy() for t in tensors]
    give(tensors, grads)
    optimizer.step()
    for t, b, g in zip(tensors, before, grads):
        np.testing.assert_allclose(t.numpy(), b - 0.1 * g)
    model = mlp(1)
    Adam(model.parameters())  # a generator of Parameters
    Adam([{"params": (p for p in model.parameters())}])


@pytest.mark.parametrize(
    "make,error,match",
    [
        (
            lambda ps: SGD([{"params": ps[:2]}, {"params": ps[1:]}]),
            ValueError,
            r"parameter 2 \(shape \(4,\), float64\) is the same parameter as parameter 1 "
            r".* one param group only",
        ),
        (
            lambda ps: SGD([ps[0], ps[0]]),
            ValueError,
            "parameter 1 .* is the same parameter as parameter 0",
        ),
        (
            lambda ps: SGD([{"params": ps[:2]}, {"params": []}]),
            ValueError,
            r"param_groups\[1\] has no parameters",
        ),
        (
            lambda ps: SGD([{"params": ps, "lr": 0.1, "betas": (0.9, 0.99)}]),
            ValueError,
            r"param_groups\[0\] has unknown key\(s\) \['betas'\]; "
            r"SGD's param groups take 'params' and",
        ),
        (
            lambda ps: Adam([{"params": ps, "momentum": 0.9}]),
            ValueError,
            r"unknown key\(s\) \['momentum'\]",
        ),
        (lambda ps: SGD([{"lr": 0.1}]), ValueError, r"param_groups\[0\] has no 'params' key"),
        (
            lambda ps: SGD([{"params": ps[:2]}, ps[2]]),
            TypeError,
            "mixes param group dicts with parameters",
        ),
        (lambda ps: SGD(set(ps)), TypeError, "ordered collection"),
        (lambda ps: SGD({"params": ps}), TypeError, "wrap a single group dict in a list"),
        (lambda ps: SGD([{"params": ps, "lr": -1.0}]), ValueError, "SGD: invalid lr value -1.0"),
        (
            lambda ps: Adam([{"params": ps[:1]}, {"params": ps[1:], "betas": (0.9, 1.0)}]),
            ValueError,
            r"invalid betas\[1\] value 1.0",
        ),
        (lambda ps: SGD([ps[0].tensor * 2.0]), ValueError, "not a leaf Tensor"),
        (
            lambda ps: SGD([Tensor(np.arange(3), dtype=np.int64)]),
            TypeError,
            r"parameter 0 \(shape \(3,\), int64\) must be float32 or float64",
        ),
    ],
)
def test_bad_group_specs_are_refused(make, error, match):
    params, _ = params_and_grads(3)
    with pytest.raises(error, match=match):
        make(params)
    assert all(p.numpy().base is None for p in params)  # nothing was packed


def test_add_param_group_keeps_state_and_trains_the_new_group():
    params, grads = params_and_grads(4)
    optimizer = Adam(params[:2], lr=0.1)
    reference = Adam([Parameter(p.numpy().copy()) for p in params[:2]], lr=0.1)
    for _ in range(3):
        give(params[:2], grads[:2])
        give(reference.parameters, grads[:2])
        optimizer.step()
        reference.step()
    optimizer.add_param_group({"params": params[2:], "lr": 0.01})
    # one buffer again
    assert [p.numpy().base is params[0].numpy().base for p in params] == [True] * 4
    assert optimizer.param_groups[1]["betas"] == (0.9, 0.999)
    new_before = [p.numpy().copy() for p in params[2:]]
    give(params, grads)
    give(reference.parameters, grads[:2])
    optimizer.step()
    reference.step()
    for p, r in zip(params[:2], reference.parameters):
        np.testing.assert_array_equal(p.numpy(), r.numpy())  # step 4 with the state of steps 1-3
    for p, b, g in zip(params[2:], new_before, grads[2:]):
        # Adam's first step moves each element by lr * g / (|g| + eps)
        np.testing.assert_allclose(p.numpy(), b - 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12)
    state = optimizer.state_dict()["state"]
    assert [state[i]["step"] for i in range(4)] == [4, 4, 1, 1]
    with pytest.raises(ValueError, match="same parameter"):
        optimizer.add_param_group({"params": [params[0]]})
    assert len(optimizer.param_groups) == 2


@pytest.mark.parametrize("cls", ALL)
def test_groups_splitting_the_update_chunks_match_separate_optimizers(cls):
    """Three groups whose boundaries fall inside the update kernels' chunks, one kernel call:
    each group follows exactly the trajectory of an optimizer of its own."""
    from firefly.kernels.optim import UPDATE_CHUNK

    shapes = [(UPDATE_CHUNK // 2 + 5,), (UPDATE_CHUNK,), (3, 7), (UPDATE_CHUNK // 3,)]
    params, grads = params_and_grads(20, shapes=shapes)
    options = [dict(lr=0.05, weight_decay=0.1), dict(lr=0.01), dict(lr=0.02, maximize=True)]
    members = [[0], [1, 2], [3]]
    grouped = cls([{"params": [params[i] for i in m], **o} for m, o in zip(members, options)])
    separate = [
        cls([Parameter(params[i].numpy().copy()) for i in m], **o) for m, o in zip(members, options)
    ]
    for _ in range(3):
        give(params, grads)
        grouped.step()
        for m, optimizer in zip(members, separate):
            give(optimizer.parameters, [grads[i] for i in m])
            optimizer.step()
    for m, optimizer in zip(members, separate):
        for i, p in zip(m, optimizer.parameters):
            np.testing.assert_array_equal(params[i].numpy(), p.numpy())


# ----------------------------------------------------------------------------- set later
@pytest.mark.parametrize(
    "cls,key,bad,match",
    [
        (SGD, "lr", -1.0, "SGD: invalid lr value -1.0; lr must be a finite number >= 0.0"),
        (SGD, "momentum", float("nan"), "SGD: invalid momentum value nan"),
        (SGD, "nesterov", True, "nesterov=True requires momentum > 0"),
        (Adam, "betas", (0.9, 1.5), r"Adam: invalid betas\[1\] value 1.5"),
        (Adam, "lr", "0.1", "Adam: lr must be a number"),
        (RMSprop, "alpha", -0.1, "RMSprop: invalid alpha value -0.1"),
        (Adagrad, "eps", -1.0, "Adagrad: invalid eps value -1.0"),
    ],
)
def test_a_bad_value_set_later_is_refused_at_the_next_step(cls, key, bad, match):
    params, grads = params_and_grads(5)
    optimizer = cls([{"params": params[:2]}, {"params": params[2:]}])
    with pytest.raises((ValueError, TypeError), match=match):
        cls(params_and_grads(5)[0], **{key: bad})  # the constructor's message...
    optimizer.param_groups[1][key] = bad
    give(params, grads)
    before = [p.numpy().copy() for p in params]
    with pytest.raises((ValueError, TypeError), match=match):  # ...at the next step
        optimizer.step()
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.numpy(), b)  # nothing moved, no group


def test_a_value_set_later_takes_effect_at_the_next_step():
    params, grads = params_and_grads(6)
    optimizer = SGD([{"params": params[:2]}, {"params": params[2:]}], lr=0.1)
    give(params, grads)
    optimizer.step()
    for group, lr in zip(optimizer.param_groups, (0.5, 0.0)):
        group["lr"] = lr
    before = [p.numpy().copy() for p in params]
    optimizer.step()
    for i, (p, b, g) in enumerate(zip(params, before, grads)):
        np.testing.assert_allclose(p.numpy(), b - (0.5 if i < 2 else 0.0) * g, rtol=1e-15)


# ----------------------------------------------------------------------------- flat_grads
def test_flat_grads_gathers_every_gradient_into_one_buffer_per_dtype():
    params, grads = params_and_grads(7, shapes=((3,), (2, 2), (4,), (1,), (2,)))
    for i in (1, 3):
        params[i] = Parameter(params[i].numpy().astype(np.float32))
        grads[i] = grads[i].astype(np.float32)
    params[4].trainable = False
    optimizer = SGD([{"params": params[:3]}, {"params": params[3:]}], lr=0.1)
    optimizer.zero_grad(set_to_none=True)
    give(params[:2], grads[:2])  # as backward allocates them; params[2] and [3] get none
    flat = optimizer.flat_grads()
    assert [f.dtype for f in flat] == [np.float64, np.float32] and [f.size for f in flat] == [
        3 + 4 + 2,
        4 + 1,
    ]
    np.testing.assert_array_equal(flat[0], np.concatenate([grads[0], np.zeros(4), np.zeros(2)]))
    np.testing.assert_array_equal(
        flat[1], np.concatenate([grads[1].ravel(), np.zeros(1, np.float32)])
    )
    for p in params[:4]:
        assert p.tensor.grad._data.base is flat[0 if p.dtype == np.float64 else 1]
    assert params[4].tensor.grad is None  # frozen: its slot is zero, no gradient installed
    # Writing into the buffers (an all-reduce would) changes what step() uses.
    flat[0] *= 2.0
    flat[1][:] = 1.0
    before = [p.numpy().copy() for p in params]
    optimizer.step()
    np.testing.assert_allclose(params[0].numpy(), before[0] - 0.1 * 2.0 * grads[0])
    np.testing.assert_allclose(params[2].numpy(), before[2])  # zero gradient, doubled
    np.testing.assert_allclose(params[3].numpy(), before[3] - np.float32(0.1))
    np.testing.assert_array_equal(params[4].numpy(), before[4])
    assert all(a is b for a, b in zip(optimizer.flat_grads(), flat))  # the same arrays every call


def test_flat_grads_order_is_the_same_for_optimizers_built_alike():
    a, b = mlp(3), mlp(3)
    flats = [Adam(decay_groups(m)).flat_grads() for m in (a, b)]
    assert [f.shape for f in flats[0]] == [f.shape for f in flats[1]]


# ----------------------------------------------------------------------------- step hooks
def test_step_pre_hook_runs_before_the_update_and_can_be_removed():
    params, grads = params_and_grads(8)
    optimizer = SGD(params, lr=0.1)
    seen = []

    def halve_gradients(opt, args, kwargs):
        seen.append((opt, args, kwargs, params[0].numpy().copy()))
        for flat in opt.flat_grads():
            flat *= 0.5

    handle = optimizer.register_step_pre_hook(halve_gradients)
    post = optimizer.register_step_post_hook(lambda opt, args, kwargs: seen.append("post"))
    give(params, grads)
    before = [p.numpy().copy() for p in params]
    optimizer.step()
    assert seen[0][0] is optimizer and seen[0][1:3] == ((), {}) and seen[1] == "post"
    np.testing.assert_array_equal(seen[0][3], before[0])  # ran before the update
    for p, b, g in zip(params, before, grads):
        np.testing.assert_allclose(p.numpy(), b - 0.1 * 0.5 * g, rtol=1e-15)
    handle.remove()
    post.remove()
    give(params, grads)
    before = [p.numpy().copy() for p in params]
    optimizer.step()
    assert len(seen) == 2
    for p, b, g in zip(params, before, grads):
        np.testing.assert_allclose(p.numpy(), b - 0.1 * g, rtol=1e-15)


def test_a_pre_hook_may_replace_the_arguments():
    param = Parameter(np.array([1.0]))
    optimizer = SGD([param], lr=0.5)
    param.tensor.grad = Tensor(np.array([1.0]))
    optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: ((), {"closure": lambda: "replaced"})
    )
    assert optimizer.step() == "replaced"


def test_hooks_run_once_for_seed_style_and_derived_optimizers():
    class SeedSGD(BaseOptimizer):
        def __init__(self, parameters, lr=0.01):
            super().__init__(parameters)
            self.lr = Tensor(lr)

        def step(self):
            for param in self.parameters:
                param.update(param.tensor - self.lr * param.tensor.grad)

    class LoggingAdam(Adam):
        def step(self, closure=None):
            return super().step(closure)

    for optimizer in (SeedSGD([Parameter(np.ones(2))]), LoggingAdam([Parameter(np.ones(2))])):
        calls = []
        optimizer.register_step_pre_hook(lambda opt, args, kwargs, calls=calls: calls.append("pre"))
        optimizer.register_step_post_hook(
            lambda opt, args, kwargs, calls=calls: calls.append("post")
        )
        optimizer.parameters[0].tensor.grad = Tensor(np.ones(2))
        optimizer.step()
        assert calls == ["pre", "post"]


# ----------------------------------------------------------------------------- state
def test_state_dict_has_torchs_layout_with_groups():
    torch = pytest.importorskip(
        "torch", reason="needs torch as the oracle: pip install torch==2.13.0"
    )
    model = mlp(9)
    ours = Adam(decay_groups(model, lr=0.01, amsgrad=True), lr=0.1)
    weights = [
        torch.tensor(p.numpy().copy(), requires_grad=True)
        for name, p in model.named_parameters()
        if "weight" in name
    ]
    biases = [
        torch.tensor(p.numpy().copy(), requires_grad=True)
        for name, p in model.named_parameters()
        if "bias" in name
    ]
    theirs = torch.optim.Adam(
        [
            {"params": weights, "weight_decay": 0.1},
            {"params": biases, "weight_decay": 0.0, "lr": 0.01, "amsgrad": True},
        ],
        lr=0.1,
    )
    rng = np.random.default_rng(0)
    for _ in range(2):
        grads = [rng.standard_normal(p.shape) for p in ours.parameters]
        give(ours.parameters, grads)
        for t, g in zip(weights + biases, grads):
            t.grad = torch.tensor(g)
        ours.step()
        theirs.step()
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(reference) == ["state", "param_groups"]
    assert list(mine["state"]) == list(reference["state"]) == [0, 1, 2, 3]
    for index, entry in reference["state"].items():
        assert set(mine["state"][index]) == set(entry)
        assert mine["state"][index]["step"] == entry["step"].item()
        for name in set(entry) - {"step"}:
            np.testing.assert_allclose(
                mine["state"][index][name], entry[name].numpy(), rtol=1e-12, err_msg=name
            )
    for our_group, their_group in zip(mine["param_groups"], reference["param_groups"]):
        assert our_group["params"] == their_group["params"]
        for key, value in our_group.items():
            assert their_group[key] == value, key


def test_resume_mid_schedule_is_bit_identical(tmp_path):
    """Two groups, a scheduler, clipping every step, float32: 12 straight steps equal 6 steps,
    a checkpoint through firefly.save and load, and 6 more."""
    x, y = data(np.float32)
    loss_fn = MSELoss()

    def build(seed):
        model = mlp(seed, np.float32)
        optimizer = AdamW(decay_groups(model, lr=5e-3), lr=1e-2, amsgrad=True)
        scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=[1e-2, 5e-3], total_steps=12)
        return model, optimizer, scheduler

    def train(model, optimizer, scheduler, steps):
        for _ in range(steps):
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            clip_grad_norm_(model.parameters(), 0.5)
            optimizer.step()
            scheduler.step()

    straight = build(0)
    train(*straight, 12)
    first = build(0)
    train(*first, 6)
    firefly.save(
        {
            "model": first[0].state_dict(),
            "optimizer": first[1].state_dict(),
            "scheduler": first[2].state_dict(),
        },
        tmp_path / "ckpt.npz",
    )
    checkpoint = firefly.load(tmp_path / "ckpt.npz")
    resumed = build(1)
    resumed[0].load_state_dict(checkpoint["model"])
    resumed[1].load_state_dict(checkpoint["optimizer"])
    resumed[2].load_state_dict(checkpoint["scheduler"])
    train(*resumed, 6)
    for (name, a), (_, b) in zip(straight[0].named_parameters(), resumed[0].named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    for ours, theirs in zip(straight[1].param_groups, resumed[1].param_groups):
        assert {k: v for k, v in ours.items() if k != "params"} == {
            k: v for k, v in theirs.items() if k != "params"
        }


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda s: s["param_groups"].pop(), "the state has 1 param groups, this optimizer has 2"),
        (
            lambda s: s["param_groups"][1].update(params=[2]),
            r"param_groups\[1\] was saved with 1 parameters",
        ),
        (lambda s: s["param_groups"][1].update(lr=-1.0), "invalid lr value -1.0"),
        (
            lambda s: s["param_groups"][0].update(momentum=0.9),
            "was the state saved from another optimizer",
        ),
    ],
)
def test_load_state_dict_checks_groups(change, match):
    model = mlp(10)
    optimizer = Adam(decay_groups(model))
    state = optimizer.state_dict()
    change(state)
    with pytest.raises(ValueError, match=match):
        optimizer.load_state_dict(state)


# ----------------------------------------------------------------------------- accumulation
@pytest.mark.parametrize("cls", ALL)
def test_gradient_accumulation_over_several_backwards(cls):
    """Four backward calls on quarter batches, then one step, equal one backward on the whole
    batch (the loss a sum over samples), up to summation order."""
    x, y = data()
    accumulated, whole = mlp(11), mlp(11)
    accumulated_optimizer, whole_optimizer = (
        cls(decay_groups(accumulated)),
        cls(decay_groups(whole)),
    )

    def loss(model, xs, ys):
        diff = model(xs) - ys
        return (diff * diff).sum()

    for _ in range(3):
        accumulated_optimizer.zero_grad()
        for k in range(4):
            rows = slice(8 * k, 8 * k + 8)
            loss(accumulated, Tensor(x.numpy()[rows]), Tensor(y.numpy()[rows])).backward()
        accumulated_optimizer.step()
        whole_optimizer.zero_grad()
        loss(whole, x, y).backward()
        whole_optimizer.step()
    for a, b in zip(accumulated.parameters(), whole.parameters()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("cls", ALL)
def test_set_to_none_gives_the_same_trajectory(cls):
    x, y = data()
    models = [mlp(12), mlp(12)]
    optimizers = [cls(decay_groups(m)) for m in models]
    for set_to_none, model, optimizer in zip((False, True), models, optimizers):
        for _ in range(4):
            optimizer.zero_grad(set_to_none=set_to_none)
            if set_to_none:
                assert all(p.tensor.grad is None for p in model.parameters())
            MSELoss()(model(x), y).backward()
            optimizer.step()
    for a, b in zip(*(m.parameters() for m in models)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("cls", ALL)
def test_frozen_parameters_in_a_group_are_left_alone(cls):
    x, y = data()
    model = mlp(13)
    model.fc1.weight.trainable = False
    frozen = model.fc1.weight.numpy().copy()
    optimizer = cls(decay_groups(model))
    moving = model.fc2.weight.numpy().copy()
    for _ in range(3):
        optimizer.zero_grad()
        MSELoss()(model(x), y).backward()
        optimizer.step()
    np.testing.assert_array_equal(model.fc1.weight.numpy(), frozen)
    assert not np.array_equal(model.fc2.weight.numpy(), moving)
    state = optimizer.state_dict()["state"]
    assert (0 in state) == (cls is Adagrad)  # Adagrad's state exists from construction


def test_global_step_pre_hook_runs_first_and_can_register_a_per_optimizer_hook():
    from firefly.optim.optimizer import register_optimizer_step_pre_hook

    w = firefly.Tensor(np.ones(3), requires_grad=True)
    optimizer = firefly.optim.SGD([w], lr=0.5)
    calls = []

    def own(opt, args, kwargs):
        calls.append("own")

    def global_hook(opt, args, kwargs):
        calls.append("global")
        if not calls.count("own"):
            opt.register_step_pre_hook(own)  # registered now, runs in this very step

    handle = register_optimizer_step_pre_hook(global_hook)
    try:
        (w * w).sum().backward()
        optimizer.step()
        assert calls == ["global", "own"]
        np.testing.assert_array_equal(w.to_numpy(), np.zeros(3))  # 1 - 0.5 * 2
    finally:
        handle.remove()
    optimizer.step()
    assert calls == ["global", "own", "own"]
