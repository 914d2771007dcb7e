"""Layer ops, forward plus backward in float32, firefly beside PyTorch eager on the CPU:

- conv2d at (64, 1, 8, 8) -> 16 channels 3x3 padding 1, (64, 16, 8, 8) -> 32 channels 3x3, and
  LeNet's (64, 1, 28, 28) -> 6 channels 5x5;
- conv_transpose2d as a DCGAN generator upsamples: (64, 32, 8, 8) -> 16 channels 4x4 stride 2
  padding 1, and (64, 16, 14, 14) -> 1 channel 4x4 stride 2 padding 1;
- max_pool2d 2x2 at (64, 32, 8, 8); batch_norm (training) at (64, 32, 8, 8); layer_norm over
  the last dimension of (64, 128, 256);
- one training step (zero_grad, forward, cross-entropy, backward, AdamW) of the digits CNN of
  examples/digits_cnn.py at batch 64.

    pytest benchmarks/bench_layers.py --benchmark-enable

Before timing, each case checks that firefly and torch agree on the output and the input's
gradient (the CNN step: on the loss over three steps from the same parameters). Plain test
runs (``--benchmark-disable``) run each timed call once.
"""

import numba
import numpy as np
import pytest

import firefly
from firefly import nn, ops
from firefly.tensor import Tensor

torch = pytest.importorskip("torch")

# name -> (op, input shape, op attrs); conv cases also give (out_channels, kernel)
CASES = {
    "conv2d-8x8-1to16-pad1": ("conv2d", (64, 1, 8, 8), dict(padding=1), (16, 3)),
    "conv2d-8x8-16to32": ("conv2d", (64, 16, 8, 8), dict(), (32, 3)),
    "conv2d-28x28-1to6-5x5": ("conv2d", (64, 1, 28, 28), dict(), (6, 5)),
    "conv_transpose2d-8x8-32to16-4x4-s2": (
        "conv_transpose2d",
        (64, 32, 8, 8),
        dict(stride=2, padding=1),
        (16, 4),
    ),
    "conv_transpose2d-14x14-16to1-4x4-s2": (
        "conv_transpose2d",
        (64, 16, 14, 14),
        dict(stride=2, padding=1),
        (1, 4),
    ),
    "max_pool2d-2x2": ("max_pool2d", (64, 32, 8, 8), dict(kernel_size=2), None),
    "batch_norm-64x32x8x8": ("batch_norm", (64, 32, 8, 8), dict(training=True), None),
    "layer_norm-64x128x256": ("layer_norm", (64, 128, 256), dict(normalized_shape=(256,)), None),
}


def make_inputs(name):
    op, shape, attrs, conv = CASES[name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    if op in ("conv2d", "conv_transpose2d"):
        out_channels, k = conv
        bound = 1 / np.sqrt(shape[1] * k * k)
        weight = (
            (out_channels, shape[1], k, k) if op == "conv2d" else (shape[1], out_channels, k, k)
        )
        params = [
            rng.uniform(-bound, bound, size=weight).astype(np.float32),
            rng.uniform(-bound, bound, size=out_channels).astype(np.float32),
        ]
    elif op in ("batch_norm", "layer_norm"):
        size = shape[1] if op == "batch_norm" else shape[-1]
        params = [
            rng.uniform(0.5, 1.5, size=size).astype(np.float32),
            rng.normal(size=size).astype(np.float32),
        ]
    else:
        params = []
    return op, attrs, x, params


def firefly_step(name):
    op, attrs, x, params = make_inputs(name)
    leaf = Tensor(x, requires_grad=True)
    tensors = [Tensor(p, requires_grad=True) for p in params]

    def step():
        for t in [leaf] + tensors:
            t.grad = None
        out = ops.apply(op, leaf, *tensors, **attrs)
        out.backward(np.ones(out.shape, dtype=np.float32))
        return out.numpy(), leaf.grad.numpy()

    return step


def torch_step(name):
    op, attrs, x, params = make_inputs(name)
    leaf = torch.tensor(x, requires_grad=True)
    tensors = [torch.tensor(p, requires_grad=True) for p in params]
    F = torch.nn.functional
    call = {
        "conv2d": lambda: F.conv2d(leaf, *tensors, **attrs),
        "conv_transpose2d": lambda: F.conv_transpose2d(leaf, *tensors, **attrs),
        "max_pool2d": lambda: F.max_pool2d(leaf, **attrs),
        "batch_norm": lambda: F.batch_norm(leaf, None, None, *tensors, training=True),
        "layer_norm": lambda: F.layer_norm(leaf, attrs["normalized_shape"], *tensors),
    }[op]

    def step():
        for t in [leaf] + tensors:
            t.grad = None
        out = call()
        out.backward(torch.ones_like(out))
        return out.detach().numpy(), leaf.grad.numpy()

    return step


@pytest.mark.parametrize("implementation", ["firefly", "torch"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_forward_backward(benchmark, name, implementation):
    benchmark.group = name
    ours, theirs = firefly_step(name), torch_step(name)
    for mine, reference in zip(ours(), theirs()):
        np.testing.assert_allclose(mine, reference, rtol=2e-3, atol=2e-3)
    benchmark(ours if implementation == "firefly" else theirs)


# ----------------------------------------------------------------------------- digits CNN step
def build_cnn(module):
    return module.Sequential(
        module.Conv2d(1, 16, 3, padding=1),
        module.BatchNorm2d(16),
        module.ReLU(),
        module.Conv2d(16, 32, 3, padding=1),
        module.BatchNorm2d(32),
        module.ReLU(),
        module.MaxPool2d(2),
        module.Dropout(0.25),
        module.Flatten(),
        module.Linear(32 * 4 * 4, 10),
    )


class CNNTrainer:
    def __init__(self, implementation, dropout=0.25):
        rng = np.random.default_rng(0)
        self.x = rng.uniform(0, 1, size=(64, 1, 8, 8)).astype(np.float32)
        self.y = rng.integers(0, 10, size=64)
        firefly.manual_seed(0)
        ours = build_cnn(nn)
        ours[7].p = dropout
        self.implementation = implementation
        if implementation == "firefly":
            self.model, self.inputs = ours, Tensor(self.x)
            self.optimizer = firefly.optim.AdamW(ours.get_parameters(), lr=1e-3)
            self.loss_fn = nn.CrossEntropyLoss()
        else:
            self.model = build_cnn(torch.nn)
            self.model[7].p = dropout
            self.model.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
            self.inputs, self.y = torch.from_numpy(self.x), torch.from_numpy(self.y)
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
            self.loss_fn = torch.nn.CrossEntropyLoss()

    def step(self):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(self.inputs), self.y)
        loss.backward()
        self.optimizer.step()
        return loss.item()


@pytest.mark.parametrize("implementation", ["firefly", "torch"])
def test_digits_cnn_training_step(benchmark, implementation):
    benchmark.group = "digits-cnn-step-batch64"
    # Without dropout the two runs are the same computation: the losses must agree.
    ours, theirs = CNNTrainer("firefly", dropout=0.0), CNNTrainer("torch", dropout=0.0)
    np.testing.assert_allclose(
        [ours.step() for _ in range(3)], [theirs.step() for _ in range(3)], rtol=1e-4
    )
    trainer = CNNTrainer(implementation)
    for _ in range(3):
        trainer.step()
    benchmark(trainer.step)


# ----------------------------------------------------------------------------- conv vs sgemm peak
# Convolutions at the shapes of issue 17 (and batched matmul at attention's, below), each pass
# timed beside torch at one thread and at the default count, and its GFLOP/s as a fraction of
# the sgemm peak measured in the same run
# through the BLAS the kernels call (Numba's np.dot, SciPy's OpenBLAS). The passes: forward
# without a graph; forward + backward to the weight only (the input needs no gradient);
# forward + backward to the input as well. Module teardown prints the table (``-s`` shows it).
CONV_SHAPES = {  # name -> input shape, out channels, kernel size, attrs
    "8x8-16to32": ((64, 16, 8, 8), 32, 3, dict()),
    "16x16-32to64": ((32, 32, 16, 16), 64, 3, dict(padding=1)),
    "32x32-64to64": ((32, 64, 32, 32), 64, 3, dict(padding=1)),
    "1x1-64to128": ((32, 64, 16, 16), 128, 1, dict()),
    "stride2-32to64": ((32, 32, 32, 32), 64, 3, dict(stride=2, padding=1)),
    "digits-1to16": ((64, 1, 8, 8), 16, 3, dict(padding=1)),
    "digits-16to32": ((64, 16, 8, 8), 32, 3, dict(padding=1)),
    "lenet-1to6-5x5": ((64, 1, 28, 28), 6, 5, dict()),
}
CONV_PASSES = {"forward": 1, "fwd+weight-grad": 2, "fwd+weight+input-grad": 3}  # GEMMs of work
THREADS = sorted({1, numba.config.NUMBA_NUM_THREADS})
PEAK_SIZE = 1024
_timings = {}  # (group, implementation) -> (min, median) seconds


def conv_flops(name):
    """One GEMM's worth of a convolution: 2 * N * O * (C / groups) * KH * KW * OH * OW."""
    shape, out_channels, k, attrs = CONV_SHAPES[name]
    stride, padding = attrs.get("stride", 1), attrs.get("padding", 0)
    out_hw = [(size + 2 * padding - k) // stride + 1 for size in shape[2:]]
    return 2 * shape[0] * out_channels * shape[1] * k * k * out_hw[0] * out_hw[1]


@pytest.fixture(params=THREADS, ids=lambda t: f"{t}thread")
def threads(request):
    """Numba, both BLAS libraries and torch limited to ``request.param`` threads."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    # threadpool_limits limits only loaded libraries: load SciPy's BLAS (Numba's np.dot's) first.
    import scipy.linalg.cython_blas  # noqa: F401

    before = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(request.param)
    torch.set_num_threads(request.param)
    with threadpoolctl.threadpool_limits(request.param, user_api="blas"):
        yield request.param
    numba.set_num_threads(before[0])
    torch.set_num_threads(before[1])


def _record(benchmark, key):
    if benchmark.stats is not None:  # None when benchmarks are disabled
        _timings[key] = (benchmark.stats.stats.min, benchmark.stats.stats.median)


def conv_arrays(name):
    """Input, weight and bias of conv case ``name``, float32, with torch's default init bounds."""
    shape, out_channels, k, _ = CONV_SHAPES[name]
    rng = np.random.default_rng(0)
    bound = 1 / np.sqrt(shape[1] * k * k)
    return [
        rng.normal(size=shape).astype(np.float32),
        rng.uniform(-bound, bound, size=(out_channels, shape[1], k, k)).astype(np.float32),
        rng.uniform(-bound, bound, size=out_channels).astype(np.float32),
    ]


def conv_pass(name, kind, implementation):
    attrs = CONV_SHAPES[name][3]
    arrays = conv_arrays(name)
    needs = [kind == "fwd+weight+input-grad", kind != "forward", kind != "forward"]
    if implementation == "torch":
        x, w, b = (torch.tensor(a, requires_grad=n) for a, n in zip(arrays, needs))

        def run():
            out = torch.nn.functional.conv2d(x, w, b, **attrs)
            if kind != "forward":
                out.backward(torch.ones_like(out))
            return out

        return run
    x, w, b = (Tensor(a, requires_grad=n) for a, n in zip(arrays, needs))

    def run():
        out = ops.apply("conv2d", x, w, b, **attrs)
        if kind != "forward":
            out.backward(np.ones(out.shape, dtype=np.float32))
        return out

    return run


@pytest.mark.parametrize("implementation", ["firefly", "torch"])
@pytest.mark.parametrize("kind", list(CONV_PASSES))
@pytest.mark.parametrize("name", list(CONV_SHAPES))
def test_conv_pass(benchmark, table, threads, name, kind, implementation):
    group = f"conv2d-{name}-{kind}-{threads}thread"
    benchmark.group = group
    ours, theirs = conv_pass(name, kind, "firefly"), conv_pass(name, kind, "torch")
    np.testing.assert_allclose(ours().numpy(), theirs().detach().numpy(), rtol=2e-3, atol=2e-3)
    benchmark(ours if implementation == "firefly" else theirs)
    _record(benchmark, (group, implementation))


# Batched matmul at attention's shapes: (48, 64, 32) @ (48, 32, 64), as B=12 x H=4 heads of
# T=64 over d=32; forward alone, and forward plus both gradients (three products' work).
BMM_SHAPES = ((48, 64, 32), (48, 32, 64))
BMM_PASSES = {"forward": 1, "fwd+bwd": 3}


def bmm_flops():
    (batch, m, k), (_, _, n) = BMM_SHAPES
    return 2 * batch * m * k * n


def bmm_pass(kind, implementation):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(shape).astype(np.float32) for shape in BMM_SHAPES]
    backward = kind == "fwd+bwd"
    if implementation == "torch":
        a, b = (torch.tensor(x, requires_grad=backward) for x in arrays)

        def run():
            out = a @ b
            if backward:
                out.backward(torch.ones_like(out))
            return out

        return run
    a, b = (Tensor(x, requires_grad=backward) for x in arrays)

    def run():
        out = ops.apply("matmul", a, b)
        if backward:
            out.backward(np.ones(out.shape, dtype=np.float32))
        return out

    return run


@pytest.mark.parametrize("implementation", ["firefly", "torch"])
@pytest.mark.parametrize("kind", list(BMM_PASSES))
def test_bmm_attention_pass(benchmark, table, threads, kind, implementation):
    group = f"bmm-48x64x32@48x32x64-{kind}-{threads}thread"
    benchmark.group = group
    ours, theirs = bmm_pass(kind, "firefly"), bmm_pass(kind, "torch")
    np.testing.assert_allclose(ours().numpy(), theirs().detach().numpy(), rtol=1e-4, atol=1e-4)
    benchmark(ours if implementation == "firefly" else theirs)
    _record(benchmark, (group, implementation))


@pytest.mark.parametrize("blas", ["numba", "numpy"])
def test_sgemm_peak(benchmark, table, threads, blas):
    """The sgemm peak at 1024^3, float32, through Numba's np.dot (the BLAS firefly's
    convolution and matmul kernels call) and NumPy's."""
    benchmark.group = f"sgemm-peak-{threads}thread"
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((PEAK_SIZE, PEAK_SIZE)).astype(np.float32) for _ in range(2))
    out = np.empty_like(a)
    if blas == "numba":
        gemm = _numba_gemm
        gemm(a, b, out, 1)
    else:
        gemm = lambda a, b, out, reps: np.dot(a, b, out=out)  # noqa: E731
    benchmark(gemm, a, b, out, 1)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-3, atol=1e-2)
    _record(benchmark, (benchmark.group, blas))


@numba.njit(cache=True)
def _numba_gemm(a, b, out, reps):
    for _ in range(reps):
        np.dot(a, b, out)


@pytest.fixture(scope="module")
def table():
    """After the module: each conv pass's firefly/torch ratio (min, median) and GFLOP/s as a
    fraction of the same run's sgemm peak (Numba's BLAS) at its thread count."""
    yield
    if not _timings:
        return
    lines = [
        f"{'case':24} {'pass':22} {'thr':>3} {'firefly ms':>10} {'torch ms':>9} "
        f"{'ratio min':>9} {'median':>6} {'ff/peak':>7} {'torch/peak':>10}"
    ]
    for threads in THREADS:
        peak = _timings.get((f"sgemm-peak-{threads}thread", "numba"))
        if peak is None:
            continue
        peak_rate = 2 * PEAK_SIZE**3 / peak[0]
        lines.append(f"sgemm peak, {threads} thread(s): {peak_rate / 1e9:.1f} GFLOP/s")
        rows = []
        for name in CONV_SHAPES:
            for kind, gemms in CONV_PASSES.items():
                group = f"conv2d-{name}-{kind}-{threads}thread"
                ours, theirs = _timings.get((group, "firefly")), _timings.get((group, "torch"))
                if ours is None or theirs is None:
                    continue
                rows.append((name, kind, gemms * conv_flops(name), ours, theirs))
        for kind, products in BMM_PASSES.items():
            group = f"bmm-48x64x32@48x32x64-{kind}-{threads}thread"
            ours, theirs = _timings.get((group, "firefly")), _timings.get((group, "torch"))
            if ours is not None and theirs is not None:
                rows.append(("bmm-48x64x32@48x32x64", kind, products * bmm_flops(), ours, theirs))
        for name, kind, flops, ours, theirs in rows:
            lines.append(
                f"{name:24} {kind:22} {threads:>3} {ours[0] * 1e3:>10.3f} "
                f"{theirs[0] * 1e3:>9.3f} {ours[0] / theirs[0]:>9.2f} "
                f"{ours[1] / theirs[1]:>6.2f} {flops / ours[0] / peak_rate:>7.2f} "
                f"{flops / theirs[0] / peak_rate:>10.2f}"
            )
    print("\n" + "\n".join(lines))
