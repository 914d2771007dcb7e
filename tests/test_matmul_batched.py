"""Batched matmul at attention shapes, and with a batch of one on either side that broadcasts:
forward and both gradients against torch in float64 (to 1e-9), through the kernels' serial and
parallel builds (from firefly.kernels.linalg.PARALLEL_MIN_BATCHED_GEMM elements) and both of
their loops (GEMMs one per thread, or one after another above SINGLE_THREAD_GEMM; the
backward's are two kernels, the second also summing a broadcast input's gradient). The
backward kernels write every element of both gradients, which are allocated uninitialized: a
missed element shows as garbage here."""

import numpy as np
import pytest

from firefly import Tensor, ops

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "a_shape, b_shape",
    [
        ((48, 64, 32), (48, 32, 64)),  # attention scores: (B*H, T, d) @ (B*H, d, T)
        ((48, 64, 64), (48, 64, 32)),  # attention output: probabilities @ values
        ((1, 5, 3), (4, 3, 2)),  # a's batch of one broadcasts
        ((4, 5, 3), (1, 3, 2)),  # b's
        ((2, 3, 5, 3), (3, 2)),  # a plain matrix against a batch
        ((1, 64, 32), (48, 32, 64)),  # forward's parallel build; a's gradient summed in turn
        ((8, 128, 64), (8, 64, 64)),  # GEMMs that BLAS threads: one after another
    ],
)
def test_batched_matmul_matches_torch_float64(a_shape, b_shape):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=a_shape), rng.normal(size=b_shape)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    fa, fb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    out, t_out = ops.apply("matmul", fa, fb), ta @ tb
    grad = rng.normal(size=out.shape)
    out.backward(grad)
    t_out.backward(torch.tensor(grad))
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fa.grad.numpy(), ta.grad.numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fb.grad.numpy(), tb.grad.numpy(), rtol=1e-9, atol=1e-9)
