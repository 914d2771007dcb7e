"""atan2, fmod, remainder (``%``) and floor_divide (``//``) against torch in float64: values,
first and second derivatives of both operands, broadcasting and Python-number operands."""

import numpy as np
import pytest

import firefly
from firefly import autograd

torch = pytest.importorskip(
    "torch", reason="these tests compare against torch: pip install torch==2.13.0"
)

FIREFLY_OPS = {
    "atan2": firefly.atan2,
    "fmod": firefly.fmod,
    "remainder": firefly.remainder,
    "%": lambda a, b: a % b,
}
TORCH_OPS = {
    "atan2": torch.atan2,
    "fmod": torch.fmod,
    "remainder": torch.remainder,
    "%": lambda a, b: a % b,
}


def operands(name, shape_a, shape_b, seed=0):
    """Float64 operands of both signs: for atan2 away from the origin and from the branch
    cut, for the remainders with quotients at least 0.2 from every integer (where they jump)."""
    rng = np.random.default_rng(seed)
    sign_a = rng.choice([-1.0, 1.0], size=shape_a)
    sign_b = rng.choice([-1.0, 1.0], size=shape_b)
    if name == "atan2":
        return sign_a * rng.uniform(0.3, 2.0, shape_a), sign_b * rng.uniform(0.3, 2.0, shape_b)
    c = 1.3
    a = sign_a * c * (rng.integers(0, 3, size=shape_a) + rng.uniform(0.2, 0.8, shape_a))
    return a, sign_b * np.full(shape_b, c)


def both(name, a, b):
    """The op's value and the first and second derivatives of sum(out * out) w.r.t. a and b
    (the square makes the second derivative depend on the first), from firefly and torch."""
    results = []
    for op, make, grad in (
        (FIREFLY_OPS[name], firefly.tensor, autograd.grad),
        (TORCH_OPS[name], torch.tensor, torch.autograd.grad),
    ):
        ta, tb = make(a, requires_grad=True), make(b, requires_grad=True)
        out = op(ta, tb)
        ga, gb = grad((out * out).sum(), (ta, tb), create_graph=True)
        gga, ggb = grad((ga * ga).sum() + (gb * gb).sum(), (ta, tb))
        results.append([np.asarray(t.detach().numpy()) for t in (out, ga, gb, gga, ggb)])
    return results


@pytest.mark.parametrize("name", sorted(FIREFLY_OPS))
@pytest.mark.parametrize(
    "shape_a, shape_b", [((5,), (5,)), ((2, 3), (3,)), ((4, 1), (1, 3)), ((), (2, 2))]
)
def test_values_and_derivatives_match_torch(name, shape_a, shape_b):
    a, b = operands(name, shape_a, shape_b)
    ours, theirs = both(name, a, b)
    for what, x, y in zip(("value", "da", "db", "d2a", "d2b"), ours, theirs, strict=True):
        assert x.shape == y.shape, what
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12, err_msg=f"{name} {what}")


def test_remainder_sign_follows_the_divisor_and_fmod_the_dividend():
    a = np.array([5.5, -5.5, 5.5, -5.5])
    b = np.array([2.0, 2.0, -2.0, -2.0])
    ta, tb = firefly.tensor(a), firefly.tensor(b)
    np.testing.assert_array_equal((ta % tb).numpy(), [1.5, 0.5, -0.5, -1.5])
    np.testing.assert_array_equal(firefly.fmod(ta, tb).numpy(), [1.5, -1.5, 1.5, -1.5])
    np.testing.assert_array_equal((ta % tb).numpy(), torch.tensor(a) % torch.tensor(b))


@pytest.mark.parametrize("number", [2.5, -1.75])
def test_python_number_operands_match_torch(number):
    a = np.array([[3.2, -4.1, 0.7], [-0.3, 5.9, 2.2]])
    x, t = firefly.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    pairs = [
        (x % number, t % number),
        (number % x, number % t.detach()),  # torch records no derivative for a number first
        (firefly.fmod(x, number), torch.fmod(t, number)),
        (firefly.atan2(x, number), torch.atan2(t, torch.tensor(number, dtype=torch.float64))),
        (x // number, t.detach() // number),
        (number // x, number // t.detach()),
    ]
    for ours, theirs in pairs:
        assert ours.dtype == firefly.float64
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
    # d(x % n)/dx is 1, and d(n % x)/dx is -floor(n / x) (torch's formula for two tensors).
    (g,) = autograd.grad((x % number).sum(), x)
    np.testing.assert_array_equal(g.numpy(), np.ones_like(a))
    (g,) = autograd.grad((number % x).sum(), x)
    np.testing.assert_allclose(g.numpy(), -np.floor(number / a), rtol=0, atol=0)


def test_floor_divide_matches_torch_and_records_no_graph():
    a = np.array([[5.5, -5.5, 7.0], [0.5, -0.5, 3.0]])
    b = np.array([2.0, -2.0, 0.0])
    x = firefly.tensor(a, requires_grad=True)
    y = firefly.tensor(b, requires_grad=True)
    expected = torch.floor_divide(torch.tensor(a), torch.tensor(b)).numpy()
    for result in (x // y, firefly.floor_divide(x, y), x.floor_divide(y)):
        np.testing.assert_array_equal(result.numpy(), expected)
        assert result.shape == (2, 3) and result.dtype == firefly.float64
        # torch's floor_divide has no derivative (backward through it raises): no graph here.
        assert not result.requires_grad


def test_floor_divide_and_remainder_of_integer_tensors_stay_integer():
    a = np.array([7, -7, 9])
    x, t = firefly.tensor(a), torch.tensor(a)
    pairs = ((x // 2, t // 2), (x % 3, t % 3), (-8 // x, -8 // t), (x.fmod(-4), t.fmod(-4)))
    for ours, theirs in pairs:
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
        assert ours.dtype == firefly.int64


def test_atan2_of_integer_tensors_is_float32_as_in_torch():
    a, b = np.array([1, -2, 0]), np.array([3, 3, -1])
    ours = firefly.atan2(firefly.tensor(a), firefly.tensor(b))
    theirs = torch.atan2(torch.tensor(a), torch.tensor(b))
    assert ours.dtype == firefly.float32 and theirs.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_floor_divide_refuses_a_non_number():
    with pytest.raises(TypeError, match="floor_divide"):
        firefly.tensor([1.0]) // "2"


@pytest.mark.parametrize("needs", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("shape_a, shape_b", [((5,), (5,)), ((2, 3), (3,)), ((4, 1), (1, 3))])
def test_sub_gradients_match_torch_for_either_input(needs, shape_a, shape_b):
    # Sub's backward hands a the gradient itself and negates it for b with neg's kernel.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=shape_a), rng.normal(size=shape_b)
    upstream = rng.normal(size=np.broadcast_shapes(shape_a, shape_b))
    grads = []
    for make in (firefly.tensor, torch.tensor):
        ta = make(a, requires_grad=needs[0])
        tb = make(b, requires_grad=needs[1])
        (ta - tb).backward(make(upstream))
        grads.append([None if t.grad is None else np.asarray(t.grad.numpy()) for t in (ta, tb)])
    for ours, theirs in zip(*grads):
        assert (ours is None) == (theirs is None)
        if ours is not None:
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
