"""One full training step (zero_grad, forward, loss, backward, optimizer step), firefly beside a
hand-written NumPy loop doing the same maths with buffers reused across steps, and PyTorch
eager when torch is installed:

- the demo's MLP 10-32-1 on 1024 samples, MSE loss, plain SGD, in float32 and float64;
- an MLP 784-256-128-10 at batch 256, cross-entropy, SGD with momentum 0.9, in float32;
- one epoch of the digits CNN (firefly.digits, batch 64, AdamW) beside torch, timed over the
  whole epoch loop (batch indexing, a Tensor per batch, `loss.item()` per step);
- one step of examples/char_gpt.py's GPT at its defaults (batch 12, context 64, 128 channels,
  4 layers, 4 heads; AdamW with two groups, clip_grad_norm_, LambdaLR) on its text, eager and
  under ``firefly.compile``, beside torch eager from the same weights on the same batches;
  and the same three interleaved in one process (rounds of a few steps of each, in shuffled
  order), since timing one after the other lets the machine's drift between them into the
  ratio.

    pytest benchmarks/bench_training.py --benchmark-enable

The 784 classifier's step is GEMM-bound (about 258 MFLOP), so its group also times one GEMM
of the same FLOP count at a shape BLAS runs at its peak (505 x 505 x 505, float32), through
NumPy's BLAS and through the BLAS that Numba's ``np.dot`` links (SciPy's OpenBLAS): a step's
fraction of the sgemm peak is that row's time divided by the step's.

Every implementation starts from the same parameters and first checks that its first
CHECK_STEPS losses and the parameters after them agree with a float64 NumPy run; those steps
are also the warm-up (kernel compilation, optimizer state), so the timed steps are steady
state. Plain test runs (``--benchmark-disable``) run the timed step once, char_gpt's on a
smaller GPT (``SMOKE_CONFIG``).
"""

import random
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import firefly
from firefly import nn
from firefly.tensor import Tensor

try:
    import torch
except ImportError:  # torch is an optional comparison
    torch = None

CHECK_STEPS = 3

# name -> layer sizes, batch, loss, SGD options
PROBLEMS = {
    "seed-mlp": dict(sizes=(10, 32, 1), batch=1024, loss="mse", lr=0.01, momentum=0.0),
    "mlp-784": dict(
        sizes=(784, 256, 128, 10), batch=256, loss="cross_entropy", lr=0.01, momentum=0.9
    ),
}


def make_problem(name, dtype):
    """(inputs, targets, [(W, b), ...]) with PyTorch-default init and W laid out as torch's,
    (out, in)."""
    spec = PROBLEMS[name]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(spec["batch"], spec["sizes"][0]))
    if spec["loss"] == "mse":  # the demo's regression data
        true_weights = np.array(
            [[1.5], [-2.0], [1.0], [1.5], [-2.0], [1.0], [3.0], [-2.0], [1.0], [3.0]]
        )
        y = (X @ true_weights + rng.normal(size=(spec["batch"], 1)) * 0.1).astype(dtype)
    else:
        y = rng.integers(0, spec["sizes"][-1], size=spec["batch"])
    params = []
    for fan_in, fan_out in zip(spec["sizes"], spec["sizes"][1:]):
        bound = 1.0 / np.sqrt(fan_in)
        params.append(
            (
                rng.uniform(-bound, bound, (fan_out, fan_in)).astype(dtype),
                rng.uniform(-bound, bound, fan_out).astype(dtype),
            )
        )
    return X.astype(dtype), y, params


# ----------------------------------------------------------------------------- implementations
class FireflyTrainer:
    def __init__(self, name, dtype):
        spec = PROBLEMS[name]
        X, y, params = make_problem(name, dtype)
        layers = []
        for fan_in, fan_out in zip(spec["sizes"], spec["sizes"][1:]):
            layers += [nn.Linear(fan_in, fan_out, dtype=dtype), nn.ReLU()]
        self.model = nn.Sequential(*layers[:-1])
        self.model.load_state_dict(
            {
                f"{2 * i}.{kind}": value
                for i, (W, b) in enumerate(params)
                for kind, value in (("weight", W), ("bias", b))
            }
        )
        self.inputs = Tensor(X)
        self.targets = Tensor(y) if spec["loss"] == "mse" else y
        self.loss_fn = nn.MSELoss() if spec["loss"] == "mse" else nn.CrossEntropyLoss()
        self.optimizer = firefly.optim.SGD(
            self.model.get_parameters(), lr=spec["lr"], momentum=spec["momentum"]
        )

    def step(self):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(self.inputs), self.targets)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def values(self):
        return [p.numpy() for p in self.model.parameters()]


class NumpyTrainer:
    """The same MLP, loss and SGD written with NumPy, every intermediate in a buffer allocated
    once: large temporaries freed every step go back to the OS and fault back in."""

    def __init__(self, name, dtype):
        spec = PROBLEMS[name]
        self.X, self.y, params = make_problem(name, dtype)
        self.loss_kind, self.lr, self.momentum = spec["loss"], spec["lr"], spec["momentum"]
        self.params = [array.copy() for pair in params for array in pair]  # W0, b0, W1, b1, ...
        self.grads = [np.empty_like(p) for p in self.params]
        self.buffers = [np.zeros_like(p) for p in self.params]  # momentum
        self.scratch = [np.empty_like(p) for p in self.params]
        batch = self.X.shape[0]
        widths = spec["sizes"][1:]
        self.z = [np.empty((batch, w), dtype) for w in widths]  # pre-activations, logits last
        self.a = [np.empty((batch, w), dtype) for w in widths[:-1]]  # relu outputs
        self.masks = [np.empty((batch, w), bool) for w in widths[:-1]]
        self.dz = [np.empty((batch, w), dtype) for w in widths]
        self.rows = np.arange(batch)
        self.steps = 0

    def loss_and_output_grad(self):
        out, dout = self.z[-1], self.dz[-1]
        if self.loss_kind == "mse":
            np.subtract(out, self.y, out=dout)
            loss = float(np.vdot(dout, dout)) / dout.size
            dout *= 2.0 / dout.size
            return loss
        # Cross-entropy: dout holds the shifted logits, then softmax - onehot, over the batch.
        np.subtract(out, out.max(axis=1, keepdims=True), out=dout)
        picked = dout[self.rows, self.y]
        np.exp(dout, out=dout)
        sums = dout.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(sums[:, 0]) - picked))
        dout /= sums
        dout[self.rows, self.y] -= 1.0
        dout *= 1.0 / dout.shape[0]
        return loss

    def step(self):
        layers = len(self.z)
        inputs = self.X
        for k in range(layers):
            W, b = self.params[2 * k], self.params[2 * k + 1]
            np.dot(inputs, W.T, out=self.z[k])
            self.z[k] += b
            if k < layers - 1:
                np.maximum(self.z[k], 0.0, out=self.a[k])
                inputs = self.a[k]
        loss = self.loss_and_output_grad()
        for k in range(layers - 1, -1, -1):
            below = self.a[k - 1] if k else self.X
            np.dot(self.dz[k].T, below, out=self.grads[2 * k])
            np.sum(self.dz[k], axis=0, out=self.grads[2 * k + 1])
            if k:
                np.dot(self.dz[k], self.params[2 * k], out=self.dz[k - 1])
                np.greater(self.z[k - 1], 0.0, out=self.masks[k - 1])
                self.dz[k - 1] *= self.masks[k - 1]
        self.steps += 1
        for p, g, buf, tmp in zip(self.params, self.grads, self.buffers, self.scratch):
            if self.momentum:
                if self.steps == 1:
                    buf[...] = g
                else:
                    buf *= self.momentum
                    buf += g
                g = buf
            np.multiply(g, self.lr, out=tmp)
            p -= tmp
        return loss

    def values(self):
        return self.params


class TorchTrainer:
    def __init__(self, name, dtype):
        spec = PROBLEMS[name]
        X, y, params = make_problem(name, dtype)
        layers = []
        for W, b in params:
            linear = torch.nn.Linear(*W.shape[::-1], dtype=getattr(torch, np.dtype(dtype).name))
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(W))
                linear.bias.copy_(torch.from_numpy(b))
            layers += [linear, torch.nn.ReLU()]
        self.model = torch.nn.Sequential(*layers[:-1])
        self.inputs = torch.from_numpy(X)
        self.targets = torch.from_numpy(y)
        self.loss_fn = torch.nn.MSELoss() if spec["loss"] == "mse" else torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=spec["lr"], momentum=spec["momentum"]
        )

    def step(self):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(self.inputs), self.targets)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def values(self):
        values = []
        for module in self.model:
            if isinstance(module, torch.nn.Linear):
                values += [module.weight.detach().numpy(), module.bias.detach().numpy()]
        return values


IMPLEMENTATIONS = {"firefly": FireflyTrainer, "numpy": NumpyTrainer, "torch": TorchTrainer}


@pytest.fixture(scope="module")
def expected():
    """name -> (losses of the first CHECK_STEPS steps, parameters after them), in float64 NumPy."""
    results = {}
    for name in PROBLEMS:
        reference = NumpyTrainer(name, np.float64)
        losses = [reference.step() for _ in range(CHECK_STEPS)]
        results[name] = losses, [v.copy() for v in reference.values()]
    return results


CASES = [
    pytest.param(
        name,
        dtype,
        marks=pytest.mark.benchmark(group=f"train-step-{name}-{np.dtype(dtype).name}"),
        id=f"{name}-{np.dtype(dtype).name}",
    )
    for name, dtype in [("seed-mlp", np.float32), ("seed-mlp", np.float64), ("mlp-784", np.float32)]
]


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("name, dtype", CASES)
def test_training_step(benchmark, expected, name, dtype, implementation):
    if implementation == "torch" and torch is None:
        pytest.skip("needs torch for the comparison: pip install torch==2.13.0")
    trainer = IMPLEMENTATIONS[implementation](name, dtype)
    losses = [trainer.step() for _ in range(CHECK_STEPS)]  # also the warm-up
    want_losses, want_values = expected[name]
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(losses, want_losses, **tol, err_msg=f"{implementation}: losses")
    for i, (got, want) in enumerate(zip(trainer.values(), want_values)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **tol, err_msg=f"{implementation}: parameter {i}")
    loss = benchmark(trainer.step)
    assert np.isfinite(loss) and loss < losses[0]


# ----------------------------------------------------------------------------- sgemm peak
PEAK_SIZE = 505  # 2 * 505**3 = 257.6 MFLOP: the 784 classifier step's GEMM work


def _numba_gemm():
    from firefly.kernels.linalg import linear_forward  # np.dot inside a kernel, plus a bias pass

    zeros = np.zeros(PEAK_SIZE, np.float32)
    # linear_forward computes a @ weight.T: give it b.T, a view, so that BLAS reads b as it is
    return lambda a, b, out: linear_forward(a, b.T, zeros, out)


@pytest.mark.benchmark(group="train-step-mlp-784-float32")
@pytest.mark.parametrize("blas", ["numpy", "numba"])
def test_sgemm_peak(benchmark, blas):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((PEAK_SIZE, PEAK_SIZE)).astype(np.float32) for _ in range(2))
    out = np.empty((PEAK_SIZE, PEAK_SIZE), np.float32)
    gemm = (lambda a, b, out: np.dot(a, b, out=out)) if blas == "numpy" else _numba_gemm()
    gemm(a, b, out)  # compile and warm up
    benchmark(gemm, a, b, out)
    np.testing.assert_allclose(
        out, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-3, atol=1e-2
    )


# ----------------------------------------------------------------------------- digits CNN epoch
class DigitsEpoch:
    """One epoch of the digits CNN (firefly.digits: model, stratified split) over the training
    images in shuffled batches of 64, with AdamW, as ``python -m firefly demo --model
    digits-cnn`` runs it: a fresh Tensor per batch, the loss read back with ``item()`` every
    step. firefly and torch start from the same parameters and see the same batches."""

    def __init__(self, implementation, dropout=0.25):
        from firefly import digits

        self.X, _, self.y, _ = digits.load_split()
        self.implementation = implementation
        firefly.manual_seed(0)
        model = digits.build_model(nn)
        if implementation == "torch":
            state = model.state_dict()
            model = digits.build_model(torch.nn)
            model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
            self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
            self.loss_fn = torch.nn.CrossEntropyLoss()
            self.X, self.y = torch.from_numpy(self.X), torch.from_numpy(self.y)
        else:
            self.optimizer = firefly.optim.AdamW(model.get_parameters(), lr=1e-3, weight_decay=1e-4)
            self.loss_fn = nn.CrossEntropyLoss()
        model[7].p = dropout
        self.model = model
        self.rng = np.random.default_rng(0)

    def step(self, idx):
        self.optimizer.zero_grad()
        if self.implementation == "torch":
            inputs, targets = self.X[torch.from_numpy(idx)], self.y[torch.from_numpy(idx)]
        else:
            inputs, targets = Tensor(self.X[idx]), self.y[idx]
        loss = self.loss_fn(self.model(inputs), targets)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def epoch(self):
        from firefly.digits import batches

        return [self.step(idx) for idx in batches(len(self.X), 64, self.rng)]


@pytest.mark.benchmark(group="train-epoch-digits-cnn-batch64")
@pytest.mark.parametrize("implementation", ["firefly", "torch"])
def test_digits_cnn_epoch(benchmark, implementation):
    pytest.importorskip("sklearn")
    if torch is None:
        pytest.skip("torch is not installed")
    # Without dropout the two are the same computation: the first steps' losses must agree.
    ours, theirs = DigitsEpoch("firefly", dropout=0.0), DigitsEpoch("torch", dropout=0.0)
    first = ours.rng.permutation(len(ours.X))[:192].reshape(3, 64)
    np.testing.assert_allclose(
        [ours.step(idx) for idx in first], [theirs.step(idx) for idx in first], rtol=1e-4
    )
    trainer = DigitsEpoch(implementation)
    if not benchmark.disabled:  # a plain test run times nothing: its one epoch is enough
        trainer.epoch()  # warm-up: kernels compiled, optimizer state and scratch memory allocated
    losses = benchmark(trainer.epoch)
    assert np.all(np.isfinite(losses)) and len(losses) == -(-len(trainer.X) // 64)


# ----------------------------------------------------------------------------- char_gpt step
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import char_gpt  # noqa: E402  (the example's model, optimizer and data, timed as they are)

sys.path.pop(0)
CHAR_GPT_BATCHES = 8  # the step cycles through these, each a fresh Tensor as in the example


class CharGPTStep:
    """One training step of char_gpt.py's GPT in float32: forward and loss, backward,
    clip_grad_norm_, AdamW's step and the scheduler's. firefly's model starts from nanoGPT's
    initialization drawn from seed 0; torch's loads those weights; both see the same batches.
    ``compiled`` replays firefly's step with ``firefly.compile``; without ``clip`` the step
    leaves out clip_grad_norm_ (those cases show what clipping costs each library)."""

    data = None

    def __init__(self, implementation, clip=True, config=None):
        config = config or char_gpt.Config()
        if CharGPTStep.data is None:
            CharGPTStep.data = char_gpt.CharData(char_gpt.load_text("pydoc")[1])
        data = CharGPTStep.data
        firefly.manual_seed(0)
        model = char_gpt.build_model(firefly, config, data.vocab_size)
        lib = torch if implementation == "torch" else firefly
        if lib is torch:
            model = char_gpt.build_model(torch, config, data.vocab_size, model.state_dict())
        self.model, self.config = model, config
        self.clip = lib.nn.utils.clip_grad_norm_ if clip else None
        self.optimizer, self.scheduler = char_gpt.make_optimizer(lib, model, config)
        rng = np.random.default_rng(0)
        self.batches = [
            tuple(
                lib.from_numpy(a)
                for a in data.batch("train", config.batch_size, config.block_size, rng)
            )
            for _ in range(CHAR_GPT_BATCHES)
        ]
        self.steps = 0
        self.run = firefly.compile(self.train_step) if implementation == "compiled" else None

    def train_step(self, inputs, targets):
        _, loss = self.model(inputs, targets)
        self.optimizer.zero_grad()
        loss.backward()
        if self.clip is not None:
            self.clip(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss

    def step(self):
        batch = self.batches[self.steps % CHAR_GPT_BATCHES]
        self.steps += 1
        return (self.run or self.train_step)(*batch).item()


CHAR_GPT_CASES = {  # name -> (implementation, clip)
    "firefly": ("firefly", True),
    "compiled": ("compiled", True),
    "torch": ("torch", True),
    "firefly-noclip": ("firefly", False),
    "compiled-noclip": ("compiled", False),
    "torch-noclip": ("torch", False),
}


# Plain test runs check each case on a smaller GPT: the same layers, ops and step (the kernels
# the default size runs, bar some parallel builds), a small fraction of its work.
SMOKE_CONFIG = char_gpt.Config(n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=4)


@pytest.mark.benchmark(group="train-step-char-gpt")
@pytest.mark.parametrize("case", list(CHAR_GPT_CASES))
def test_char_gpt_step(benchmark, case):
    if torch is None:
        pytest.skip("needs torch for the comparison: pip install torch==2.13.0")
    implementation, clip = CHAR_GPT_CASES[case]
    config = SMOKE_CONFIG if benchmark.disabled else None
    trainer = CharGPTStep(implementation, clip, config)
    # The first steps are also the warm-up (kernels compiled, optimizer state, the compiled
    # step's recordings); their losses must be the torch twin's.
    steps = CHECK_STEPS + 2
    losses = [trainer.step() for _ in range(steps)]
    reference = trainer if implementation == "torch" else CharGPTStep("torch", clip, config)
    want = losses if reference is trainer else [reference.step() for _ in range(steps)]
    np.testing.assert_allclose(losses, want, rtol=1e-4)
    if trainer.run is not None:
        assert trainer.run.status()["plans"] == 1, trainer.run.status()
    loss = benchmark(trainer.step)
    assert np.isfinite(loss)


INTERLEAVED_ROUNDS, STEPS_PER_TURN = 40, 3


@pytest.mark.benchmark(group="train-step-char-gpt-interleaved")
def test_char_gpt_step_interleaved(benchmark):
    """firefly eager, compiled and torch, each step timed, in rounds that run STEPS_PER_TURN
    steps of each in a shuffled order: all three see the same state of the machine. The
    ratios to torch (min and median over the steps) are printed and kept in ``extra_info``;
    pytest-benchmark's own time is the whole run's."""
    if torch is None:
        pytest.skip("needs torch for the comparison: pip install torch==2.13.0")
    config = SMOKE_CONFIG if benchmark.disabled else None
    rounds = 1 if benchmark.disabled else INTERLEAVED_ROUNDS
    trainers = {name: CharGPTStep(name, True, config) for name in ("firefly", "compiled", "torch")}
    for trainer in trainers.values():  # warm-up: kernels, optimizer state, the compiled plan
        for _ in range(CHECK_STEPS + 2):
            trainer.step()
    order = random.Random(0)

    def run():
        times = {name: [] for name in trainers}
        for _ in range(rounds):
            names = list(trainers)
            order.shuffle(names)
            for name in names:
                for _ in range(STEPS_PER_TURN):
                    start = time.perf_counter()
                    trainers[name].step()
                    times[name].append(time.perf_counter() - start)
        return times

    times = benchmark.pedantic(run, rounds=1, iterations=1)
    torch_min, torch_median = min(times["torch"]), float(np.median(times["torch"]))
    print(f"\nchar_gpt step, interleaved, {len(times['torch'])} steps each, ms, min (median):")
    for name, t in times.items():
        low, mid = min(t), float(np.median(t))
        benchmark.extra_info[name] = {
            "min_ms": low * 1e3,
            "median_ms": mid * 1e3,
            "min_ratio_to_torch": low / torch_min,
            "median_ratio_to_torch": mid / torch_median,
        }
        print(
            f"  {name:>8} {low * 1e3:7.2f} ({mid * 1e3:7.2f})  "
            f"/ torch {low / torch_min:.2f} ({mid / torch_median:.2f})"
        )
