"""The op registry: what ``register`` accepts and rejects, and get / names / apply."""

import numba
import numpy as np
import pytest

import firefly
from firefly import Tensor
from firefly.kernels._jit import is_compiled_kernel
from firefly.ops import Op, apply, declared_kernels, get, names, register, registry, unregister


@numba.njit(error_model="numpy")
def double_kernel(x, out):
    for i in range(x.size):
        out[i] = 2.0 * x[i]


def plain_python_kernel(x, out):
    out[:] = 2.0 * x


def op_class(
    name="test_double", forward_kernel=double_kernel, backward_kernel=double_kernel, **extra
):
    """A valid op (y = 2x) unless the arguments break it; not registered."""

    def forward(ctx, x):
        out = np.empty_like(x)
        double_kernel(x.reshape(-1), out.reshape(-1))
        return out

    body = {
        "name": name,
        "forward_kernel": forward_kernel,
        "backward_kernel": backward_kernel,
        "forward": staticmethod(forward),
        "backward": staticmethod(forward),
    }
    body.update(extra)
    return type("TestDouble", (Op,), body)


@pytest.fixture
def registered():
    """Registers op classes for one test and removes them afterwards."""
    added = []

    def add(cls):
        register(cls)
        added.append(cls.name)
        return cls

    yield add
    for name in added:
        unregister(name)


def registry_unchanged(fn):
    before = dict(registry._ops)
    fn()
    return registry._ops == before


@pytest.mark.parametrize("attr", ["forward_kernel", "backward_kernel"])
@pytest.mark.parametrize(
    "kernel", [plain_python_kernel, np.add, None], ids=["python", "ufunc", "none"]
)
def test_register_rejects_a_kernel_that_is_not_numba_compiled(attr, kernel):
    cls = op_class(**{attr: kernel})

    def attempt():
        with pytest.raises(TypeError, match=f"test_double.*{attr}.*Numba"):
            register(cls)

    assert registry_unchanged(attempt)


def test_register_accepts_firefly_sized_kernels():
    relu = get("relu")
    cls = op_class(
        "test_sized", forward_kernel=relu.forward_kernel, backward_kernel=relu.backward_kernel
    )
    try:
        assert register(cls) is cls and get("test_sized") is cls
    finally:
        unregister("test_sized")


def test_register_rejects_a_duplicate_name(registered):
    registered(op_class("test_dup"))
    with pytest.raises(ValueError, match="test_dup.*already registered"):
        register(op_class("test_dup"))
    with pytest.raises(ValueError, match="'add' is already registered.*built-in"):
        register(op_class("add"))
    assert get("add").__module__.startswith("firefly.")


@pytest.mark.parametrize("name", ["soft-plus", "1op", "class", "", "my op", None, 3])
def test_register_rejects_a_name_that_is_not_an_identifier(name):
    with pytest.raises(ValueError, match="identifier"):
        register(op_class(name))


@pytest.mark.parametrize(
    "thing",
    [
        Op,
        object,
        type("NotAnOp", (), {"name": "not_an_op"}),
        op_class()(),
        plain_python_kernel,
    ],
    ids=["Op itself", "object", "plain class", "instance", "function"],
)
def test_register_rejects_what_is_not_an_op_subclass(thing):
    with pytest.raises(TypeError, match="subclass of firefly.ops.Op"):
        register(thing)


def test_register_rejects_an_op_without_forward_or_backward():
    cls = type(
        "Incomplete",
        (Op,),
        {
            "name": "test_incomplete",
            "forward_kernel": double_kernel,
            "backward_kernel": double_kernel,
            "forward": staticmethod(lambda ctx, x: x),
        },
    )
    with pytest.raises(TypeError, match="test_incomplete.*backward"):
        register(cls)


@pytest.mark.parametrize("arity", [0, -1, 1.5, "2"])
def test_register_rejects_a_bad_arity(arity):
    with pytest.raises(ValueError, match="arity"):
        register(op_class("test_arity", arity=arity))


def test_get_names_and_apply(registered):
    cls = registered(op_class("test_double"))
    assert get("test_double") is cls
    assert "test_double" in names() and names() == sorted(names())
    assert {"add", "matmul", "softmax", "getitem"} <= set(names())
    assert registry.origin("add") == registry.BUILTIN
    assert registry.origin("test_double") != registry.BUILTIN

    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    y = apply("test_double", x)
    np.testing.assert_array_equal(y.numpy(), [2.0, -4.0])
    assert "grad_fn=<test_double>" in repr(y)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_apply_runs_builtins_like_the_tensor_methods():
    x, y = np.arange(6.0).reshape(2, 3), np.ones(3)
    np.testing.assert_array_equal(apply("add", Tensor(x), Tensor(y)).numpy(), x + y)
    np.testing.assert_array_equal(apply("sum", Tensor(x), axis=0).numpy(), x.sum(axis=0))
    assert firefly.ops.apply is apply


def test_get_of_an_unknown_op_raises_a_key_error_listing_the_registered_ops():
    with pytest.raises(KeyError, match="no_such_op") as info:
        get("no_such_op")
    assert "matmul" in str(info.value)


def test_builtin_ops_cannot_be_unregistered():
    with pytest.raises(ValueError, match="built-in"):
        unregister("add")
    assert "add" in names()


def test_register_accepts_a_tuple_of_kernels_and_rejects_an_empty_or_mixed_one(registered):
    assert registered(op_class("test_tuple", forward_kernel=(double_kernel, double_kernel)))
    for bad in [(), (double_kernel, plain_python_kernel)]:
        with pytest.raises(TypeError, match="test_bad_tuple.*forward_kernel.*tuple"):
            register(op_class("test_bad_tuple", forward_kernel=bad))


def test_every_builtin_op_uses_numba_kernels():
    for name in names():
        cls = get(name)
        for attr in ("forward_kernel", "backward_kernel"):
            assert all(is_compiled_kernel(k) for k in declared_kernels(getattr(cls, attr)))
