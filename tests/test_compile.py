"""firefly.compile: a replayed step computes bit for bit what the eager step computes."""

import importlib
import math
import warnings

import numpy as np
import pytest
from seed_script import SEED_SCRIPT, needs_seed_script

import firefly
from firefly import nn, optim
from firefly.digits import build_model


def _seed_mlp(seed=0):
    firefly.manual_seed(seed)
    rng = np.random.default_rng(seed)
    X = firefly.Tensor(rng.normal(size=(1024, 10)).astype(np.float32))
    y = firefly.Tensor(rng.normal(size=(1024, 1)).astype(np.float32))
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()
        return loss

    return model, optimizer, step


def _training_step(model, optimizer, loss_fn):
    """``step(x, target)``: zero_grad, forward, loss, backward, optimizer step; returns the loss."""

    def step(x, target):
        optimizer.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        optimizer.step()
        return loss

    return step


def _classifier(seed=0, hidden=(256, 128)):
    firefly.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(784, hidden[0]),
        nn.ReLU(),
        nn.Linear(hidden[0], hidden[1]),
        nn.ReLU(),
        nn.Linear(hidden[1], 10),
    )
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    return model, optimizer, _training_step(model, optimizer, nn.CrossEntropyLoss())


def _batches(n_steps, batch, seed=1):
    rng = np.random.default_rng(seed)
    for _ in range(n_steps):
        yield (
            firefly.Tensor(rng.normal(size=(batch, 784)).astype(np.float32)),
            firefly.Tensor(rng.integers(0, 10, size=batch), dtype=np.int64),
        )


def _same_parameters(a, b):
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.tensor.numpy(), q.tensor.numpy())


def test_seed_mlp_bit_identical_over_200_steps():
    eager_model, _, eager_step = _seed_mlp()
    model, _, step = _seed_mlp()
    compiled = firefly.compile(step)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(200):
            expected, got = eager_step(), compiled()
            assert got.numpy().tobytes() == expected.numpy().tobytes(), f"step {i}"
    assert compiled.status() == {"plans": 1, "eager": 0, "recording": 0}
    _same_parameters(model, eager_model)


def test_classifier_adam_with_scheduler_bit_identical_over_40_steps():
    # Ten learning-rate changes, each read by the replays after it: a step every 4 steps is the
    # same path as one every 20 over 200 steps, at a fifth of the steps.
    eager_model, eager_opt, eager_step = _classifier(hidden=(64, 32))
    model, opt, step = _classifier(hidden=(64, 32))
    schedulers = [optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.5) for o in (eager_opt, opt)]
    compiled = firefly.compile(step)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i, (x, target) in enumerate(_batches(40, 32)):
            expected, got = eager_step(x, target), compiled(x, target)
            assert got.numpy().tobytes() == expected.numpy().tobytes(), f"step {i}"
            for s in schedulers:
                s.step()
    assert opt.param_groups[0]["lr"] == eager_opt.param_groups[0]["lr"] < 1e-3 * 0.5**9
    assert compiled.status()["plans"] == 1
    _same_parameters(model, eager_model)


def test_full_size_classifier_replays():
    eager_model, _, eager_step = _classifier()
    model, _, step = _classifier()
    compiled = firefly.compile(step)
    for x, target in _batches(5, 256):
        assert compiled(x, target).item() == eager_step(x, target).item()
    assert compiled.status()["plans"] == 1
    _same_parameters(model, eager_model)


def test_lr_changed_between_calls_is_read_at_replay():
    eager_model, eager_opt, eager_step = _seed_mlp()
    model, opt, step = _seed_mlp()
    compiled = firefly.compile(step)
    for i in range(12):
        for o in (eager_opt, opt):
            o.param_groups[0]["lr"] = 0.01 * (1 + i % 3)
        assert compiled().item() == eager_step().item()
    _same_parameters(model, eager_model)


def test_new_input_shape_records_a_second_plan():
    eager_model, _, eager_step = _classifier(hidden=(16, 8))
    model, _, step = _classifier(hidden=(16, 8))
    compiled = firefly.compile(step)
    for batch in (8, 8, 8, 5, 5, 5, 8, 5):
        x, target = next(_batches(1, batch, seed=batch))
        assert compiled(x, target).item() == eager_step(x, target).item()
    assert compiled.status()["plans"] == 2
    _same_parameters(model, eager_model)


def test_freezing_a_parameter_between_calls_records_again():
    eager_model, _, eager_step = _seed_mlp()
    model, _, step = _seed_mlp()
    compiled = firefly.compile(step)
    for i in range(10):
        if i == 4:
            for m in (model, eager_model):
                m[0].weight.tensor.requires_grad = False
        if i == 8:
            for m in (model, eager_model):
                m[0].weight.tensor.requires_grad = True
        assert compiled().item() == eager_step().item(), f"step {i}"
    _same_parameters(model, eager_model)
    assert compiled.status()["plans"] == 1


def test_zero_grad_outside_the_function_records_again():
    eager_model, eager_opt, eager_step = _seed_mlp()
    model, opt, step = _seed_mlp()
    compiled = firefly.compile(step)
    for i in range(8):
        if i == 4:
            opt.zero_grad(set_to_none=True)
            eager_opt.zero_grad(set_to_none=True)
        assert compiled().item() == eager_step().item()
    _same_parameters(model, eager_model)


def test_reading_a_value_inside_runs_eagerly_with_one_warning():
    eager_model, _, eager_step = _seed_mlp()
    model, _, step = _seed_mlp()
    seen = []

    def reads_value():
        loss = step()
        seen.append(loss.item())
        return loss

    compiled = firefly.compile(reads_value)
    with pytest.warns(RuntimeWarning, match=r"item\(\) at .*test_compile.py"):
        for _ in range(5):
            assert compiled().item() == eager_step().item()
    assert len(seen) == 5  # the function's Python ran every time: it ran eagerly
    assert compiled.status() == {"plans": 0, "eager": 1, "recording": 0}
    _same_parameters(model, eager_model)


def test_random_draw_in_python_runs_eagerly():
    def make():
        model, optimizer, _ = _seed_mlp()
        rng = np.random.default_rng(5)
        x = firefly.Tensor(np.ones((16, 10), dtype=np.float32))

        def step():
            optimizer.zero_grad()
            mask = firefly.Tensor((rng.random((16, 10)) < 0.5).astype(np.float32))
            loss = model(x * mask).sum()
            loss.backward()
            optimizer.step()
            return loss

        return model, step

    eager_model, eager_step = make()
    model, step = make()
    compiled = firefly.compile(step)
    with pytest.warns(RuntimeWarning, match="no recorded kernel wrote"):
        for _ in range(6):
            assert compiled().item() == eager_step().item()
    assert compiled.status()["eager"] == 1
    _same_parameters(model, eager_model)


def test_returns_detached_copies_and_rejects_non_callables():
    _, _, step = _seed_mlp()
    compiled = firefly.compile(step)
    losses = [compiled() for _ in range(4)]
    assert not losses[-1].requires_grad
    assert len({loss.item() for loss in losses}) == 4  # each call's loss is its own array
    with pytest.raises(TypeError, match="expected a function"):
        firefly.compile(3)


@needs_seed_script
def test_seed_script_step_replays_bit_identical():
    """The seed script's own model and loss (float64 data against float32 parameters, a tensor
    used twice): the engine's conversions and gradient sums are replayed too."""
    setup = SEED_SCRIPT.read_text().split("epochs = 10")[0]

    def run(compiled):
        np.random.seed(0)
        firefly.manual_seed(0)
        names = {}
        exec(setup, names)
        model, X, y, optimizer, loss_fn = (
            names[k] for k in ("model", "X", "y", "optimizer", "loss_fn")
        )

        def step():
            optimizer.zero_grad()
            loss = loss_fn(model(X), y)
            loss.backward()
            optimizer.step()
            return loss

        fn = firefly.compile(step) if compiled else step
        return [fn().item() for _ in range(50)], fn

    expected, _ = run(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got, compiled = run(True)
    assert got == expected
    assert compiled.status()["plans"] == 1


def test_python_number_that_changes_between_calls_is_never_baked_in():
    def make():
        model, optimizer, _ = _seed_mlp()
        x = firefly.Tensor(np.ones((16, 10), dtype=np.float32))
        calls = [0]

        def step():
            calls[0] += 1
            optimizer.zero_grad()
            loss = model(x).sum() * (1.0 + 0.5 * calls[0])  # a weight that grows every call
            loss.backward()
            optimizer.step()
            return loss

        return model, step

    eager_model, eager_step = make()
    model, step = make()
    compiled = firefly.compile(step)
    with pytest.warns(RuntimeWarning, match="runs eagerly"):
        for _ in range(6):
            assert compiled().item() == eager_step().item()
    _same_parameters(model, eager_model)


def test_constant_made_inside_the_function_replays():
    eager_model, _, _ = _seed_mlp()
    model, _, _ = _seed_mlp()

    def make(m):
        optimizer = optim.SGD(m.parameters(), lr=0.01)
        x = firefly.Tensor(np.linspace(-1, 1, 160, dtype=np.float32).reshape(16, 10))

        def step():
            optimizer.zero_grad()
            loss = (m(x) * firefly.Tensor(np.float32(3.0))).sum() * 0.5
            loss.backward()
            optimizer.step()
            return loss

        return step

    eager_step, compiled = make(eager_model), firefly.compile(make(model))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for _ in range(10):
            assert compiled().item() == eager_step().item()
    assert compiled.status()["plans"] == 1
    _same_parameters(model, eager_model)


def test_draws_from_fireflys_generator_are_drawn_again_at_replay():
    """Noise drawn from firefly.random.generator() (as dropout draws its mask) is part of the
    plan: replay draws the same numbers eager would, in the same order."""

    def make():
        model, optimizer, _ = _seed_mlp()
        x = firefly.Tensor(np.linspace(-1, 1, 160, dtype=np.float32).reshape(16, 10))

        def step():
            optimizer.zero_grad()
            noise = firefly.Tensor(firefly.random.generator().random((16, 10)).astype(np.float32))
            shift = firefly.random.generator().normal(size=(16, 10)).astype(np.float32)
            loss = model(x + firefly.Tensor(shift)).sum() * 0.1
            loss.backward()
            optimizer.step()
            return loss, noise

        return model, step

    eager_model, eager_step = make()
    firefly.manual_seed(7)
    eager = [tuple(t.numpy().copy() for t in eager_step()) for _ in range(8)]
    model, step = make()
    compiled = firefly.compile(step)
    firefly.manual_seed(7)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = [tuple(t.numpy() for t in compiled()) for _ in range(8)]
    for (loss, _), (want, _) in zip(got, eager):
        assert loss.tobytes() == want.tobytes()
    assert compiled.status()["plans"] == 1
    _same_parameters(model, eager_model)


def _digits_cnn():
    """The digits examples' CNN: conv, batch norm, pooling and dropout."""
    return build_model(nn)


def _cnn_without_batch_norm():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


def _dropout_mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))


@pytest.mark.parametrize(
    "build, shape",
    [
        (_dropout_mlp, (16, 64)),
        (_cnn_without_batch_norm, (16, 1, 8, 8)),
        (_digits_cnn, (16, 1, 8, 8)),
    ],
    ids=["dropout-mlp", "cnn", "digits-cnn-batch-norm"],
)
def test_dropout_and_cnn_bit_identical_over_200_steps(build, shape):
    def make():
        firefly.manual_seed(0)
        model = build()
        return model, _training_step(
            model, optim.AdamW(model.parameters(), lr=3e-3), nn.CrossEntropyLoss()
        )

    rng = np.random.default_rng(0)
    data = [
        (
            firefly.Tensor(rng.normal(size=shape).astype(np.float32)),
            firefly.Tensor(rng.integers(0, 10, shape[0]), dtype=np.int64),
        )
        for _ in range(20)
    ]
    eager_model, eager_step = make()
    model, step = make()
    compiled = firefly.compile(step)
    firefly.manual_seed(1)  # the dropout masks: drawn alike in both runs
    expected = [eager_step(*data[i % 20]).item() for i in range(200)]
    firefly.manual_seed(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        got = [compiled(*data[i % 20]).item() for i in range(200)]
    assert got == expected
    assert not caught and compiled.status()["plans"] == 1
    _same_parameters(model, eager_model)
    # batch norm's running statistics and batch counter, advanced by every replayed step
    for (name, a), (_, b) in zip(model.named_buffers(), eager_model.named_buffers()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def _batch_norm_mlp(seed=0):
    firefly.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16, momentum=None), nn.ReLU(), nn.Linear(16, 3)
    )
    return model, _training_step(
        model, optim.Adam(model.parameters(), lr=1e-2), nn.CrossEntropyLoss()
    )


def _batch_norm_data(n, seed=2):
    rng = np.random.default_rng(seed)
    return [
        (
            firefly.Tensor(rng.normal(loc=1.0, size=(12, 8)).astype(np.float32)),
            firefly.Tensor(rng.integers(0, 3, 12), dtype=np.int64),
        )
        for _ in range(n)
    ]


def test_batch_norm_cumulative_average_replays_with_the_count_of_each_step():
    """momentum=None blends batch k with factor 1/k: the factor comes from the counter at replay
    time, so the running statistics stay those of eager, and the counter counts every step."""
    eager_model, eager_step = _batch_norm_mlp()
    model, step = _batch_norm_mlp()
    compiled = firefly.compile(step)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for i, (x, target) in enumerate(_batch_norm_data(50)):
            assert (
                compiled(x, target).numpy().tobytes() == eager_step(x, target).numpy().tobytes()
            ), f"step {i}"
    assert compiled.status()["plans"] == 1
    _same_parameters(model, eager_model)
    bn, eager_bn = model[1], eager_model[1]
    for name in ("running_mean", "running_var"):
        assert getattr(bn, name).numpy().tobytes() == getattr(eager_bn, name).numpy().tobytes(), (
            name
        )
    assert int(bn.num_batches_tracked.item()) == int(eager_bn.num_batches_tracked.item()) == 50


def test_batch_norm_in_eval_mode_replays_with_the_running_statistics():
    model, step = _batch_norm_mlp()
    for x, target in _batch_norm_data(5, seed=3):  # running statistics to normalize with
        step(x, target)
    model.eval()
    before = [b.numpy().copy() for b in model.buffers()]

    def predict(x):
        with firefly.no_grad():
            return model(x)

    compiled = firefly.compile(predict)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for i, (x, _) in enumerate(_batch_norm_data(10, seed=4)):
            assert compiled(x).numpy().tobytes() == predict(x).numpy().tobytes(), f"call {i}"
    assert compiled.status()["plans"] == 1
    for got, want in zip(
        model.buffers(), before
    ):  # evaluation leaves the statistics and counter alone
        np.testing.assert_array_equal(got.numpy(), want)


def test_in_place_activations_replay_bit_identically():
    """``ReLU(inplace=True)`` writes through Tensor's in-place path; a plan replays it."""

    def make():
        firefly.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(True), nn.Linear(8, 2), nn.ELU(1.0, True))
        return model, optim.SGD(model.parameters(), lr=0.1)

    rng = np.random.default_rng(0)
    x = firefly.Tensor(rng.normal(size=(16, 4)).astype(np.float32))
    t = firefly.Tensor(rng.normal(size=(16, 2)).astype(np.float32))
    (eager_model, eager_opt), (model, opt) = make(), make()
    eager_step = _training_step(eager_model, eager_opt, nn.MSELoss())
    compiled = firefly.compile(_training_step(model, opt, nn.MSELoss()))
    for i in range(20):
        expected, got = eager_step(x, t), compiled(x, t)
        assert got.numpy().tobytes() == expected.numpy().tobytes(), f"step {i}"
    assert compiled.status() == {"plans": 1, "eager": 0, "recording": 0}
    _same_parameters(model, eager_model)


class _TokenMixer(nn.Module):
    """Embeddings, a slice of a weight, transposes, a split in three and a tied output layer:
    the shapes of a language model's step (strided gathers and scatters whose geometry Python
    builds per call, a gradient summed from three pieces, dropout(p=0)'s copy), with AdamW's
    parameters living in its flat byte buffers."""

    def __init__(self, vocab=11, dim=6, context=5):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.mix = nn.Linear(context, context)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, idx):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe.weight[:T]
        x = self.mix(x.transpose(1, 2)).transpose(1, 2).relu()
        q, k, v = x.split(2, dim=2)  # x's gradient is the sum of three pieces
        # The dropout op at p = 0 (F.dropout returns q itself, as torch's): a Python copy
        x = firefly.cat([q * k, v, firefly.ops.apply("dropout", q, p=0.0)], dim=2)
        return self.head(x).reshape(-1, self.head.weight.shape[0])


def test_slices_transposes_and_embeddings_replay_bit_identically():
    def make():
        firefly.manual_seed(0)
        model = _TokenMixer()
        optimizer = optim.AdamW(model.parameters(), lr=1e-2)
        loss_fn = nn.CrossEntropyLoss()

        def step(idx, targets):
            optimizer.zero_grad()
            loss = loss_fn(model(idx), targets.reshape(-1))
            loss.backward()
            optimizer.step()
            return loss

        return model, step

    rng = np.random.default_rng(0)
    data = [
        tuple(firefly.from_numpy(rng.integers(0, 11, size=(3, 5))) for _ in range(2))
        for _ in range(8)
    ]
    eager_model, eager_step = make()
    model, step = make()
    compiled = firefly.compile(step)
    expected = [eager_step(*data[i % 8]).item() for i in range(30)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        got = [compiled(*data[i % 8]).item() for i in range(30)]
    assert not caught, [str(w.message) for w in caught]
    assert compiled.status()["plans"] == 1
    assert got == expected
    _same_parameters(model, eager_model)


def _clipped_classifier(norm_type, error_if_nonfinite=False):
    """The small classifier's step with clip_grad_norm_ between backward and AdamW's step; it
    returns the loss and the total norm."""
    model, optimizer, _ = _classifier(hidden=(32, 16))
    optimizer = optim.AdamW(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, target):
        optimizer.zero_grad()
        loss = loss_fn(model(x), target)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(
            model.parameters(), CLIP_MAX_NORM[norm_type], norm_type, error_if_nonfinite
        )
        optimizer.step()
        return loss, norm

    return model, step


# Near the median of each norm over the steps below, so that some steps clip and some do not:
# the decision is made in a kernel, and the plan must replay both outcomes.
CLIP_MAX_NORM = {2.0: 0.45, math.inf: 0.1, 3.0: 0.17}


@pytest.mark.parametrize("norm_type", list(CLIP_MAX_NORM))
def test_clip_grad_norm_replays_bit_identically_over_100_steps(norm_type):
    eager_model, eager_step = _clipped_classifier(norm_type)
    model, step = _clipped_classifier(norm_type)
    compiled = firefly.compile(step)
    data = list(_batches(100, 32))
    expected = [tuple(t.numpy() for t in eager_step(*batch)) for batch in data]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = [tuple(t.numpy() for t in compiled(*batch)) for batch in data]
    assert compiled.status() == {"plans": 1, "eager": 0, "recording": 0}
    for i, ((loss, norm), (want_loss, want_norm)) in enumerate(zip(got, expected)):
        assert loss.tobytes() == want_loss.tobytes() and norm.tobytes() == want_norm.tobytes(), i
    norms = np.array([norm for _, norm in expected])
    assert (norms > CLIP_MAX_NORM[norm_type]).sum() >= 10
    assert (norms < CLIP_MAX_NORM[norm_type]).sum() >= 10
    _same_parameters(model, eager_model)


def test_clip_grad_norm_error_if_nonfinite_is_checked_at_replay():
    model, step = _clipped_classifier(2.0, error_if_nonfinite=True)
    compiled = firefly.compile(step)
    batches = list(_batches(4, 32))
    for batch in batches[:3]:
        compiled(*batch)
    assert compiled.status()["plans"] == 1
    x, target = batches[3]
    x.numpy()[0, 0] = np.nan
    before = [p.tensor.numpy().copy() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="clip_grad_norm_: the total norm .* is non-finite"):
        compiled(x, target)
    for p, b in zip(model.parameters(), before):  # the optimizer's step never ran
        np.testing.assert_array_equal(p.tensor.numpy(), b)


def _plan_blocks(compiled):
    """The sizes of the memory blocks that the arrays of compiled's one plan live in (sizes
    only: a reference held here would keep the plan from sharing the memory)."""
    compile_module = importlib.import_module("firefly.compile")
    (plan,) = [s.plan for s in compiled.signatures.values()]
    return {
        id(compile_module._root(a)): compile_module._root(a).nbytes
        for call in plan.calls
        for a in compile_module._arrays_in(call)
    }


def test_step_local_arrays_share_memory_and_replay_bit_identically():
    """From the first replay, arrays that only the plan uses and that it writes before reading
    them share memory where their lives do not overlap: fewer blocks, the same results."""
    eager_model, _, eager_step = _classifier(hidden=(64, 32))
    model, _, step = _classifier(hidden=(64, 32))
    compiled = firefly.compile(step)
    batches = list(_batches(6, 32))
    for x, target in batches[:2]:  # the two recordings
        assert compiled(x, target).numpy().tobytes() == eager_step(x, target).numpy().tobytes()
    before = _plan_blocks(compiled)
    for i, (x, target) in enumerate(batches[2:]):
        expected, got = eager_step(x, target), compiled(x, target)
        assert got.numpy().tobytes() == expected.numpy().tobytes(), f"replay {i}"
    after = _plan_blocks(compiled)
    assert len(after) < len(before)
    assert sum(after.values()) < sum(before.values())
    _same_parameters(model, eager_model)


def test_an_array_held_outside_the_plan_keeps_its_memory():
    """A module that keeps its last activation (Python state set while recording): the replays
    write that activation where the module's tensor reads it, as before memory was shared."""

    class Keeps(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(784, 64), nn.ReLU())
            self.head = nn.Linear(64, 10)
            self.hidden = None

        def forward(self, x):
            self.hidden = self.inner(x)
            return self.head(self.hidden)

    def build():
        firefly.manual_seed(0)
        model = Keeps()
        optimizer = optim.Adam(model.parameters(), lr=1e-3)
        return model, _training_step(model, optimizer, nn.CrossEntropyLoss())

    eager_model, eager_step = build()
    model, step = build()
    compiled = firefly.compile(step)
    for i, (x, target) in enumerate(_batches(6, 32)):
        expected, got = eager_step(x, target), compiled(x, target)
        assert got.numpy().tobytes() == expected.numpy().tobytes(), f"step {i}"
        assert model.hidden.numpy().tobytes() == eager_model.hidden.numpy().tobytes(), f"step {i}"
    assert compiled.status()["plans"] == 1


def test_memory_a_kernel_writes_only_in_part_is_not_shared():
    """A kernel that writes some elements of an output it does not read (the rest keep what
    the memory held, say zeros) does not make that memory the plan's to share: only a kernel
    that writes every element does."""
    compile_module = importlib.import_module("firefly.compile")
    recording = compile_module._Recording(None, [])

    def write_half(out):
        out[: out.size // 2] = 1.0

    def write_all(out):
        out[...] = 1.0

    assert recording._content_matters(write_half, (np.zeros(8),), 0) == (False, True)
    assert recording._content_matters(write_all, (np.zeros(8),), 0) == (False, False)
