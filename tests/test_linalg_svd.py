"""firefly.linalg.svd, svdvals and the spectral and nuclear matrix norms: against torch in
float64 (values and gradients within 1e-9), against NumPy, finite differences to second order,
and the sign rule of the singular vectors."""

import numpy as np
import pytest

import firefly
from firefly import Tensor
from firefly.testing import gradcheck, gradgradcheck

torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")

SHAPES = [(4, 3), (3, 5), (3, 3), (2, 4, 2), (2, 1, 3, 3), (1, 4), (1, 1)]


def matrices(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def invariant_loss(u, s, vh, weights):
    """A loss of the factors that the sign of each singular pair does not change (so that it
    is a function of A, and torch's factors and ours must agree on it): the rank-one parts
    u_j vh_j, weighted, and the singular values."""
    w_parts, w_values = weights
    parts = u.unsqueeze(-1) * vh.unsqueeze(-3)  # (..., m, k, n): u_j vh_j for each j
    return (parts * w_parts).sum() + (s * s * w_values).sum()


@pytest.mark.parametrize("shape", SHAPES)
def test_svd_factors_and_their_gradients_match_torch(shape):
    a = matrices(shape)
    m, n = shape[-2:]
    k = min(m, n)
    rng = np.random.default_rng(1)
    weights = (rng.normal(size=shape[:-2] + (m, k, n)), rng.normal(size=shape[:-2] + (k,)))
    x, t = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    u, s, vh = firefly.linalg.svd(x, full_matrices=False)
    t_u, t_s, t_vh = torch.linalg.svd(t, full_matrices=False)
    np.testing.assert_allclose(s.numpy(), t_s.detach().numpy(), rtol=1e-12, atol=1e-13)
    # Singular vectors agree with torch's up to each pair's sign.
    signs = np.sign((u.numpy() * t_u.detach().numpy()).sum(axis=-2))
    np.testing.assert_allclose(u.numpy(), t_u.detach().numpy() * signs[..., None, :], atol=1e-12)
    np.testing.assert_allclose(vh.numpy(), t_vh.detach().numpy() * signs[..., :, None], atol=1e-12)
    np.testing.assert_allclose(((u * s.unsqueeze(-2)) @ vh).numpy(), a, atol=1e-12)
    loss = invariant_loss(u, s, vh, tuple(Tensor(w) for w in weights))
    t_loss = invariant_loss(t_u, t_s, t_vh, tuple(torch.tensor(w) for w in weights))
    assert abs(loss.item() - t_loss.item()) < 1e-10
    loss.backward()
    t_loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_singular_vectors_follow_the_sign_rule_and_numpy():
    a = matrices((3, 5, 4), seed=2)
    u, s, vh = firefly.linalg.svd(Tensor(a), full_matrices=False)
    u = u.numpy()
    peaks = np.take_along_axis(u, np.abs(u).argmax(axis=-2)[:, None, :], axis=-2)
    assert (peaks > 0).all()
    np.testing.assert_allclose(s.numpy(), np.linalg.svd(a, compute_uv=False), rtol=1e-13)
    np.testing.assert_allclose(
        firefly.linalg.svdvals(Tensor(a.astype(np.float32))).numpy(),
        np.linalg.svd(a, compute_uv=False),
        rtol=1e-5,
    )
    assert firefly.linalg.svdvals(Tensor(a.astype(np.float32))).dtype == np.float32


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (2, 2, 4), (4, 4)])
def test_full_matrices_complete_orthonormal_bases_as_torch(shape):
    a = matrices(shape, seed=3)
    x, t = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    u, s, vh = firefly.linalg.svd(x)
    t_u, t_s, t_vh = torch.linalg.svd(t)
    assert u.shape == tuple(t_u.shape) and vh.shape == tuple(t_vh.shape)
    m, n = shape[-2:]
    eye_m, eye_n = np.broadcast_to(np.eye(m), u.shape), np.broadcast_to(np.eye(n), vh.shape)
    np.testing.assert_allclose(u.numpy().swapaxes(-1, -2) @ u.numpy(), eye_m, atol=1e-12)
    np.testing.assert_allclose(vh.numpy() @ vh.numpy().swapaxes(-1, -2), eye_n, atol=1e-12)
    # The extra columns carry no gradient in torch (it narrows to the thin factors): a loss of
    # the thin factors only has torch's gradient.
    k = min(m, n)
    weights = np.random.default_rng(4).normal(size=shape[:-2] + (m, k, n))
    loss = invariant_loss(u[..., :k], s, vh[..., :k, :], (Tensor(weights), 0.0))
    t_loss = invariant_loss(t_u[..., :k], t_s, t_vh[..., :k, :], (torch.tensor(weights), 0.0))
    loss.backward()
    t_loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-11)


NORM_CASES = [
    ((4, 3), (-2, -1)),
    ((3, 5), (-2, -1)),
    ((2, 3, 5), (-2, -1)),
    ((3, 2, 4), (0, 2)),
    ((2, 4, 3), (2, 1)),
]


@pytest.mark.parametrize("ord", ["nuc", 2, -2])
@pytest.mark.parametrize("shape, dim", NORM_CASES)
@pytest.mark.parametrize("keepdim", [False, True])
def test_spectral_and_nuclear_norms_match_torch(shape, dim, ord, keepdim):
    a = matrices(shape, seed=5)
    x, t = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    out = firefly.linalg.matrix_norm(x, ord, dim, keepdim)
    t_out = torch.linalg.matrix_norm(t, ord, dim, keepdim)
    assert out.shape == tuple(t_out.shape)
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-12)
    grad = np.random.default_rng(6).normal(size=out.shape)
    out.backward(Tensor(grad))
    t_out.backward(torch.tensor(grad))
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-12)
    # linalg.norm with a pair of dims is the matrix norm.
    np.testing.assert_allclose(
        firefly.linalg.norm(Tensor(a), ord, dim, keepdim).numpy(), out.numpy(), rtol=0, atol=0
    )


def test_norms_against_numpy_and_in_float32():
    a = matrices((5, 4), seed=7)
    for ord in ("nuc", 2, -2):
        expected = np.linalg.norm(a, ord)
        assert abs(firefly.linalg.norm(Tensor(a), ord).item() - expected) < 1e-12
        single = firefly.linalg.matrix_norm(Tensor(a.astype(np.float32)), ord)
        assert single.dtype == np.float32 and abs(single.item() - expected) < 1e-5
        doubled = firefly.linalg.matrix_norm(Tensor(a.astype(np.float32)), ord, dtype="float64")
        assert doubled.dtype == np.float64


def test_svd_gradients_to_second_order():
    a = matrices((4, 3), seed=8)
    weights = np.random.default_rng(9).normal(size=(4, 3, 3))

    def factors_loss(t):
        u, s, vh = firefly.linalg.svd(t, full_matrices=False)
        return invariant_loss(u, s, vh, (Tensor(weights), 1.0))

    assert gradcheck(factors_loss, a)
    assert gradgradcheck(factors_loss, a)
    for ord in ("nuc", 2, -2):
        assert gradcheck(lambda t, ord=ord: firefly.linalg.matrix_norm(t, ord), a)
        assert gradgradcheck(lambda t, ord=ord: firefly.linalg.matrix_norm(t, ord), a)
    wide = matrices((2, 2, 5), seed=10)
    assert gradgradcheck(lambda t: firefly.linalg.svd(t, full_matrices=False).U.sum(), wide)


def test_second_derivative_of_the_nuclear_norm_matches_torch():
    a = matrices((3, 4), seed=11)
    x, t = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    direction = np.random.default_rng(12).normal(size=a.shape)
    (g,) = firefly.autograd.grad(firefly.linalg.matrix_norm(x, "nuc"), [x], create_graph=True)
    (g * Tensor(direction)).sum().backward()
    (t_g,) = torch.autograd.grad(torch.linalg.matrix_norm(t, "nuc"), [t], create_graph=True)
    (t_g * torch.tensor(direction)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-11)
