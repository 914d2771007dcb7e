"""In-place updates: PyTorch's leaf rule, updates under no_grad that keep the tensor training,
recorded in-place ops on computed tensors, and the check that an array a recorded op saved
was not modified before backward (never a silently wrong gradient)."""

import numpy as np
import pytest

import firefly
from firefly import Tensor, nn
from firefly.nn.optimizers.sgd import SGD


def values(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-2.0, 2.0, size=shape)


IN_PLACE = {
    "+=": lambda t, v: t.__iadd__(v),
    "-=": lambda t, v: t.__isub__(v),
    "*=": lambda t, v: t.__imul__(v),
    "/=": lambda t, v: t.__itruediv__(v),
    "add_": lambda t, v: t.add_(v),
    "sub_": lambda t, v: t.sub_(v),
    "mul_": lambda t, v: t.mul_(v),
    "div_": lambda t, v: t.div_(v),
}
REFERENCE = {
    "+=": np.add,
    "-=": np.subtract,
    "*=": np.multiply,
    "/=": np.divide,
    "add_": np.add,
    "sub_": np.subtract,
    "mul_": np.multiply,
    "div_": np.divide,
}


@pytest.mark.parametrize("name", sorted(IN_PLACE))
def test_in_place_ops_write_into_the_tensors_own_storage(name):
    x = values(2, 3)
    t = Tensor(x.copy())
    storage = t.numpy()
    result = IN_PLACE[name](t, Tensor(np.full(3, 2.0)))
    assert result is t and t.numpy() is storage
    np.testing.assert_allclose(storage, REFERENCE[name](x, 2.0))


@pytest.mark.parametrize("name", sorted(IN_PLACE))
def test_in_place_on_a_leaf_that_requires_grad_is_refused_outside_no_grad(name):
    w = Tensor(values(3), requires_grad=True)
    before = w.numpy().copy()
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad.*no_grad"):
        IN_PLACE[name](w, 1.0)
    np.testing.assert_array_equal(w.numpy(), before)


@pytest.mark.parametrize("method", ["zero_", "fill_", "copy_"])
def test_fill_zero_and_copy_follow_the_leaf_rule(method):
    w = Tensor(values(3), requires_grad=True)
    args = {"zero_": (), "fill_": (1.0,), "copy_": (np.ones(3),)}[method]
    with pytest.raises(RuntimeError, match="leaf"):
        getattr(w, method)(*args)
    with firefly.no_grad():
        assert getattr(w, method)(*args) is w
    assert w.requires_grad and w.is_leaf


def test_manual_sgd_under_no_grad_updates_in_place_and_keeps_training():
    x = values(8, 3)
    y = x @ values(3, 1, seed=1)
    w = Tensor(np.zeros((3, 1)), requires_grad=True)
    storage = w.numpy()
    losses = []
    for _ in range(20):
        loss = ((Tensor(x) @ w - Tensor(y)) ** 2).mean()
        loss.backward()
        with firefly.no_grad():
            w -= 0.1 * w.grad
        w.grad.zero_()
        losses.append(loss.item())
    assert w.numpy() is storage and w.requires_grad and w.is_leaf
    assert losses[-1] < 0.5 * losses[0]


def test_manual_update_of_parameters_keeps_the_optimizers_flat_buffer_views():
    layer = nn.Linear(3, 2)
    optimizer = SGD(layer.get_parameters(), lr=0.1)
    views = [p.numpy() for p in layer.get_parameters()]
    with firefly.no_grad():
        for p in layer.get_parameters():
            p *= 0.5
            p.add_(1.0)
    for p, view in zip(layer.get_parameters(), views):
        assert p.numpy() is view
    optimizer.zero_grad()
    layer(Tensor(values(4, 3))).sum().backward()
    optimizer.step()  # the flat buffers were written through the views: no copy needed


def test_in_place_on_a_computed_tensor_is_recorded_and_differentiates():
    torch = pytest.importorskip(
        "torch", reason="needs torch as the oracle: pip install torch==2.13.0"
    )
    x0 = values(3)

    def program(lib, x):
        y = x * 3
        y *= 2
        y += x
        y.sub_(x * 0.5)
        z = lib.zeros(3, dtype=x.dtype)
        z += y  # a plain tensor that becomes part of the graph
        return z.sum()

    fx, tx = Tensor(x0, requires_grad=True), torch.tensor(x0, requires_grad=True)
    program(firefly, fx).backward()
    program(torch, tx).backward()
    np.testing.assert_allclose(fx.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


def test_in_place_result_of_another_dtype_is_cast_into_the_tensor():
    t = Tensor(np.ones(2, np.float32))
    t += Tensor(np.full(2, 0.5))  # float64
    assert t.dtype == np.float32 and t.numpy().tolist() == [1.5, 1.5]
    with pytest.raises(RuntimeError, match=r"shape \(3, 2\).*\(2,\)"):
        t += Tensor(np.ones((3, 2)))


@pytest.mark.parametrize(
    "modify",
    [
        lambda y: y.mul_(2),
        lambda y: y.__iadd__(1.0),
        lambda y: y.zero_(),
        lambda y: y.fill_(3.0),
        lambda y: y.copy_(np.zeros(3)),
        lambda y: y.__setitem__(0, 5.0),
        lambda y: y.clamp_(max=0.0),
        lambda y: setattr(y, "data", np.zeros(3)),
    ],
    ids=["mul_", "+=", "zero_", "fill_", "copy_", "setitem", "clamp_", "data"],
)
def test_modifying_a_saved_input_before_backward_raises_naming_the_op(modify):
    x = Tensor(values(3), requires_grad=True)
    y = x.exp()
    z = (y * x).sum()  # mul saved y
    with firefly.no_grad():
        modify(y)
    with pytest.raises(RuntimeError, match="'mul' saved.*modified by an in-place operation"):
        z.backward()


def test_modifying_a_saved_output_before_backward_raises():
    x = Tensor(values(3), requires_grad=True)
    y = x.sigmoid()  # sigmoid saves its output
    with firefly.no_grad():
        y.add_(1.0)
    with pytest.raises(RuntimeError, match="'sigmoid' saved"):
        y.sum().backward()


def test_modifying_through_a_detached_alias_is_caught():
    x = Tensor(values(3), requires_grad=True)
    a = Tensor(values(3, seed=1))
    loss = (x * a).sum()
    a.detach().mul_(0.0)
    with pytest.raises(RuntimeError, match="'mul' saved"):
        loss.backward()


def test_parameter_update_between_forward_and_backward_is_caught():
    p = nn.Parameter(values(3, 2))
    loss = (Tensor(values(4, 3, seed=1)) @ p).sum()  # matmul saves both operands
    p.update(np.zeros((3, 2)))
    with pytest.raises(RuntimeError, match="'matmul' saved"):
        loss.backward()


def test_modifying_an_array_no_op_saved_is_fine():
    x = Tensor(values(3), requires_grad=True)
    y = x + 1.0  # add saves nothing
    z = y.exp()  # exp saves its output, not y
    with firefly.no_grad():
        y.mul_(5.0)
    z.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.exp(x.numpy() + 1.0))


def test_updates_after_backward_never_trip_the_check_in_later_steps():
    x = Tensor(values(3), requires_grad=True)
    for _ in range(3):
        (x * x).sum().backward()
        with firefly.no_grad():
            x -= 0.1 * x.grad
        x.grad = None
    assert x.is_leaf


def test_fill_or_copy_into_a_computed_tensor_is_refused():
    y = Tensor(values(3), requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="'mul'"):
        y.fill_(0.0)


def test_copy_from_a_tensor_that_requires_grad_records_the_copy():
    src = Tensor(values(3), requires_grad=True)
    dst = firefly.zeros(2, 3, dtype=np.float64)
    dst.copy_(src)
    (dst * 2).sum().backward()
    np.testing.assert_array_equal(src.grad.numpy(), np.full(3, 4.0))


def test_integer_tensors_take_in_place_writes_of_their_own_kind_only():
    counts = firefly.zeros(3, dtype=firefly.int64)
    counts[1] = 4
    counts.fill_(2)
    assert counts.tolist() == [2, 2, 2]
    with pytest.raises(TypeError):
        counts += 1.5


def test_an_optimizer_step_between_forward_and_backward_is_caught():
    layer = nn.Linear(3, 2)
    optimizer = SGD(layer.get_parameters(), lr=0.1)
    x = Tensor(values(4, 3).astype(np.float32))  # the layer's dtype: the op saves the weight itself
    layer(x).sum().backward()
    loss = layer(x).sum()
    optimizer.step()  # which the fused step then updates in place
    with pytest.raises(RuntimeError, match="'(linear|matmul)' saved"):
        loss.backward()
    optimizer.zero_grad()
    layer(x).sum().backward()  # a graph recorded after the step is fine
    optimizer.step()
