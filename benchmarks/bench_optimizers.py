"""The optimizer step alone over ~1M float32 parameters (four tensors, a 1024-1000-24 MLP's
worth): firefly's fused kernels beside a NumPy implementation of the same update that reuses
its buffers, and torch.optim's foreach and fused implementations when torch is installed.

    pytest benchmarks/bench_optimizers.py --benchmark-enable

Each benchmark first checks that three steps of its implementation agree with three steps of
the NumPy one, then times ``step()`` with constant gradients (compilation and first-step
allocation happen in the untimed warm-up). Plain test runs (``--benchmark-disable``) run each
timed function once.
"""
import numpy as np
import pytest

from firefly.nn import Parameter
from firefly.nn.optimizers import SGD, Adam

try:
    import torch
except ImportError:  # torch is an optional comparison
    torch = None

SHAPES = [(1024, 1000), (1000,), (1000, 24), (24,)]  # 1,049,024 parameters
CHECK_STEPS = 3

CONFIGS = {
    "sgd": dict(lr=0.01),
    "sgd-momentum": dict(lr=0.01, momentum=0.9),
    "adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8),
}


def problem():
    rng = np.random.default_rng(0)
    values = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    return values, grads


# ----------------------------------------------------------------------------- implementations
class NumpyOptimizer:
    """The same updates written with NumPy in-place ufuncs, one scratch array per tensor so no
    step allocates (large temporaries would be returned to the OS and page-faulted back)."""

    def __init__(self, name, values, grads):
        self.name, self.options = name, CONFIGS[name]
        self.params = [v.copy() for v in values]
        self.grads = grads
        self.scratch = [np.empty_like(v) for v in values]
        self.buffers = [np.zeros_like(v) for v in values]  # momentum buffer or exp_avg
        self.squares = [np.zeros_like(v) for v in values]  # exp_avg_sq
        self.steps = 0

    def step(self):
        self.steps += 1
        lr = self.options["lr"]
        for p, g, tmp, buf, sq in zip(self.params, self.grads, self.scratch, self.buffers, self.squares):
            if self.name == "sgd":
                np.multiply(g, lr, out=tmp)
            elif self.name == "sgd-momentum":
                if self.steps == 1:
                    buf[...] = g
                else:
                    buf *= self.options["momentum"]
                    buf += g
                np.multiply(buf, lr, out=tmp)
            else:
                beta1, beta2 = self.options["betas"]
                buf *= beta1
                np.multiply(g, 1.0 - beta1, out=tmp)
                buf += tmp
                sq *= beta2
                np.multiply(g, g, out=tmp)
                tmp *= 1.0 - beta2
                sq += tmp
                np.sqrt(sq, out=tmp)
                tmp *= 1.0 / np.sqrt(1.0 - beta2 ** self.steps)
                tmp += self.options["eps"]
                np.divide(buf, tmp, out=tmp)
                tmp *= lr / (1.0 - beta1 ** self.steps)
            p -= tmp

    def values(self):
        return self.params


class FireflyOptimizer:
    def __init__(self, name, values, grads):
        self.params = [Parameter(v) for v in values]
        cls = Adam if name == "adam" else SGD
        self.optimizer = cls(self.params, **CONFIGS[name])
        self.optimizer.zero_grad()
        for p, g in zip(self.params, grads):
            p.tensor.grad._data[...] = g
        self.step = self.optimizer.step

    def values(self):
        return [p.data for p in self.params]


def torch_optimizer(implementation):
    class TorchOptimizer:
        def __init__(self, name, values, grads):
            self.params = [torch.tensor(v.copy()) for v in values]
            for p, g in zip(self.params, grads):
                p.grad = torch.tensor(g)
            cls = torch.optim.Adam if name == "adam" else torch.optim.SGD
            self.optimizer = cls(self.params, **CONFIGS[name], **{implementation: True})
            self.step = self.optimizer.step

        def values(self):
            return [p.numpy() for p in self.params]

    return TorchOptimizer


IMPLEMENTATIONS = {
    "firefly": FireflyOptimizer,
    "numpy": NumpyOptimizer,
    "torch-foreach": torch_optimizer("foreach") if torch else None,
    "torch-fused": torch_optimizer("fused") if torch else None,
}


@pytest.fixture(scope="module")
def expected():
    """Each configuration's parameters after CHECK_STEPS steps of the NumPy implementation."""
    values, grads = problem()
    results = {}
    for name in CONFIGS:
        reference = NumpyOptimizer(name, values, grads)
        for _ in range(CHECK_STEPS):
            reference.step()
        results[name] = reference.values()
    return results


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.benchmark(group=f"optimizer-step-1M-f32-{name}"))
    for name in CONFIGS
])
def test_optimizer_step(benchmark, expected, name, implementation):
    factory = IMPLEMENTATIONS[implementation]
    if factory is None:
        pytest.skip("torch is not installed")
    values, grads = problem()
    optimizer = factory(name, values, grads)
    for _ in range(CHECK_STEPS):  # also the warm-up: compiles and allocates state
        optimizer.step()
    for i, (got, want) in enumerate(zip(optimizer.values(), expected[name])):
        assert got.dtype == np.float32
        # float32 updates computed in different orders agree to a few ulps.
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{implementation} {name}, tensor {i}")
    before = [v.copy() for v in optimizer.values()]
    benchmark(optimizer.step)
    assert all(not np.array_equal(b, v) and np.isfinite(v).all() for b, v in zip(before, optimizer.values()))
