"""Bad input is refused with a ValueError or TypeError that names the op, the shapes and the
dtypes, before any kernel runs; NaN and inf propagate as in NumPy."""

import sys

import numpy as np
import pytest

from firefly import Tensor, autograd
from firefly.kernels._jit import is_compiled_kernel, is_helper
from firefly.ops import apply, declared_kernels, get, names, unregister


@pytest.fixture
def no_kernel_may_run(monkeypatch):
    """Replaces every firefly kernel, wherever it is referenced, with a tripwire."""
    ran = []

    def tripwire(name):
        def kernel(*args):
            ran.append(name)
            raise AssertionError(f"kernel {name} ran before the input was validated")

        return kernel

    for module_name, module in list(sys.modules.items()):
        if module_name == "firefly" or module_name.startswith("firefly."):
            for attr, value in list(vars(module).items()):
                if is_compiled_kernel(value) and not is_helper(value):  # helpers are compiled in
                    monkeypatch.setattr(module, attr, tripwire(f"{module_name}.{attr}"))
    for name in names():
        op = get(name)
        for attr in ("forward_kernel", "backward_kernel"):
            wires = tuple(
                tripwire(f"{name}.{attr}[{i}]")
                for i, _ in enumerate(declared_kernels(getattr(op, attr)))
            )
            monkeypatch.setattr(
                op, attr, wires if isinstance(getattr(op, attr), tuple) else wires[0]
            )
    yield ran
    assert ran == []


def f32(*shape):
    return Tensor(np.ones(shape, np.float32))


def f64(*shape):
    return Tensor(np.ones(shape, np.float64))


# (what, thunk, error type, fragments the message must contain)
BAD_OP_INPUTS = [
    (
        "matmul inner dims",
        lambda: f32(2, 3) @ f32(4, 5),
        ValueError,
        ["matmul", "(2, 3)", "(4, 5)", "float32"],
    ),
    (
        "matmul 1-d inner dims",
        lambda: f64(3) @ f64(4),
        ValueError,
        ["matmul", "(3,)", "(4,)", "float64"],
    ),
    (
        "matmul batch dims",
        lambda: f32(2, 2, 3) @ f32(3, 3, 4),
        ValueError,
        ["matmul", "(2, 2, 3)", "(3, 3, 4)", "float32"],
    ),
    ("matmul 0-d", lambda: f32() @ f32(3), ValueError, ["matmul", "()", "(3,)"]),
    ("add broadcast", lambda: f32(2, 3) + f32(4), ValueError, ["add", "(2, 3)", "(4,)", "float32"]),
    (
        "sub broadcast",
        lambda: f64(2, 3) - f64(3, 2),
        ValueError,
        ["sub", "(2, 3)", "(3, 2)", "float64"],
    ),
    (
        "mul broadcast",
        lambda: f32(5, 1, 3) * f32(2, 2),
        ValueError,
        ["mul", "(5, 1, 3)", "(2, 2)", "float32"],
    ),
    ("div broadcast", lambda: f32(2) / f32(3), ValueError, ["div", "(2,)", "(3,)", "float32"]),
    ("pow broadcast", lambda: f64(2) ** f64(3), ValueError, ["pow", "(2,)", "(3,)", "float64"]),
    (
        "mixed dtypes broadcast",
        lambda: f32(2) + f64(3),
        ValueError,
        ["add", "(2,)", "(3,)", "float64"],
    ),
    ("sum axis", lambda: f32(2, 3).sum(axis=2), ValueError, ["sum", "axis 2", "(2, 3)", "float32"]),
    (
        "mean negative axis",
        lambda: f64(2, 3).mean(axis=-3),
        ValueError,
        ["mean", "-3", "(2, 3)", "float64"],
    ),
    (
        "max axis tuple",
        lambda: f32(2, 3).max(axis=(0, 5)),
        ValueError,
        ["max", "5", "(2, 3)", "float32"],
    ),
    (
        "sum repeated axis",
        lambda: f32(2, 3).sum(axis=(1, -1)),
        ValueError,
        ["sum", "repeated", "(2, 3)"],
    ),
    ("sum axis type", lambda: f32(2, 3).sum(axis=1.5), TypeError, ["sum", "axis"]),
    (
        "softmax axis",
        lambda: f32(2, 3).softmax(axis=2),
        ValueError,
        ["softmax", "axis 2", "(2, 3)", "float32"],
    ),
    (
        "log_softmax axis",
        lambda: f64(4).log_softmax(axis=-2),
        ValueError,
        ["log_softmax", "-2", "(4,)", "float64"],
    ),
    (
        "transpose axes",
        lambda: f32(2, 3).permute(0, 0),
        ValueError,
        ["transpose", "(2, 3)", "float32"],
    ),
    ("transpose dims", lambda: f32(2, 3).transpose(0, 4), ValueError, ["transpose", "(2, 3)"]),
    (
        "reshape size",
        lambda: f32(2, 3).reshape(4, 2),
        ValueError,
        ["reshape", "(4, 2)", "(2, 3)", "float32"],
    ),
    (
        "reshape -1 size",
        lambda: f64(2, 3).reshape(-1, 4),
        ValueError,
        ["reshape", "(2, 3)", "float64"],
    ),
    ("reshape two -1", lambda: f32(2, 3).reshape(-1, -1), ValueError, ["reshape", "(2, 3)"]),
    ("getitem out of range", lambda: f32(2, 3)[5], IndexError, ["getitem", "(2, 3)", "float32"]),
    (
        "getitem float index",
        lambda: f32(2, 3)[np.array([0.0, 1.0])],
        IndexError,
        ["getitem", "(2, 3)", "float64", "integers"],
    ),
    (
        "getitem index range",
        lambda: f32(2, 3)[np.array([0, 7])],
        IndexError,
        ["getitem", "(2, 3)", "7"],
    ),
    (
        "getitem mask shape",
        lambda: f32(2, 3)[np.ones(4, bool)],
        IndexError,
        ["getitem", "(2, 3)", "(4,)"],
    ),
    (
        "getitem pair range",
        lambda: f32(2, 3)[np.arange(2), np.array([0, 3])],
        IndexError,
        ["getitem", "(2, 3)", "3"],
    ),
    (
        "gather range",
        lambda: f32(2, 3).gather(1, np.array([[0], [3]])),
        IndexError,
        ["gather", "3", "(2, 3)"],
    ),
    (
        "gather ndim",
        lambda: f32(2, 3).gather(1, np.array([0, 1])),
        ValueError,
        ["gather", "(2,)", "(2, 3)"],
    ),
    (
        "take position",
        lambda: apply("take", f32(2, 3), index=np.array([6])),
        IndexError,
        ["take", "6", "(2, 3)"],
    ),
    (
        "take index dtype",
        lambda: apply("take", f32(2, 3), index=np.array([1.0])),
        TypeError,
        ["take", "int64", "(2, 3)"],
    ),
    ("clamp no bound", lambda: apply("clamp", f32(2)), ValueError, ["clamp", "(2,)"]),
    ("clamp bound type", lambda: f32(2).clamp(min="a"), TypeError, ["clamp", "min", "str"]),
    (
        "maximum broadcast",
        lambda: apply("maximum", f32(2, 3), f32(2)),
        ValueError,
        ["maximum", "(2, 3)", "(2,)"],
    ),
    (
        "where broadcast",
        lambda: apply("where", f32(2, 3), f32(3), condition=np.ones(4, bool)),
        ValueError,
        ["where", "(4,)", "(2, 3)"],
    ),
    (
        "where condition",
        lambda: apply("where", f32(3), f32(3), condition=np.ones(3)),
        TypeError,
        ["where", "bool", "float64"],
    ),
    ("expand shape", lambda: f32(2, 3).expand(4, 3), ValueError, ["expand", "(4, 3)", "(2, 3)"]),
    (
        "cat shapes",
        lambda: apply("cat", f32(2, 3), f64(3, 3), dim=1),
        ValueError,
        ["cat", "(2, 3)", "(3, 3)"],
    ),
    (
        "cat dim",
        lambda: apply("cat", f32(2, 3), f32(2, 3), dim=2),
        IndexError,
        ["cat", "dim 2", "(2, 3)"],
    ),
    (
        "cast dtype",
        lambda: apply("cast", f32(2), dtype=np.int64),
        TypeError,
        ["cast", "int64", "(2,)"],
    ),
    ("max empty", lambda: f32(0, 3).max(), ValueError, ["max", "empty", "(0, 3)", "float32"]),
    (
        "max empty axis",
        lambda: f64(0, 3).max(axis=0),
        ValueError,
        ["max", "empty", "(0, 3)", "float64"],
    ),
    (
        "int64 tensor",
        lambda: Tensor(np.arange(3), dtype=np.int64).exp(),
        TypeError,
        ["exp", "int64", "(3,)"],
    ),
    ("string operand", lambda: f32(3) + "abc", TypeError, ["add", "str"]),
    ("None operand", lambda: f32(3) * None, TypeError, ["mul", "NoneType"]),
    ("ragged operand", lambda: f32(2) - [[1.0, 2.0], [3.0]], TypeError, ["sub", "rectangular"]),
    (
        "object operand",
        lambda: f32(2) / np.array([1, None], dtype=object),
        TypeError,
        ["div", "object"],
    ),
]


@pytest.mark.parametrize(
    "thunk, error, fragments",
    [case[1:] for case in BAD_OP_INPUTS],
    ids=[case[0] for case in BAD_OP_INPUTS],
)
def test_bad_op_input_is_refused_before_any_kernel_runs(no_kernel_may_run, thunk, error, fragments):
    with pytest.raises(error) as info:
        thunk()
    message = str(info.value)
    missing = [f for f in fragments if f not in message]
    assert not missing, f"message {message!r} lacks {missing}"


BAD_DATA = [
    ("string", "abc", TypeError, "str"),
    ("string array", np.array(["a", "b"]), TypeError, "<U1"),
    ("string list", ["a", "b"], TypeError, "<U1"),
    ("object array", np.array([1.0, None], dtype=object), TypeError, "object"),
    ("None", None, TypeError, "NoneType"),
    ("list with None", [1.0, None], TypeError, "object"),
    ("ragged list", [[1.0, 2.0], [3.0]], ValueError, "rectangular"),
    ("complex", 1j, TypeError, "complex"),
    ("complex array", np.ones(2, complex), TypeError, "complex"),
    ("dict", {"a": 1}, TypeError, "dict"),
]


@pytest.mark.parametrize(
    "data, error, fragment", [case[1:] for case in BAD_DATA], ids=[case[0] for case in BAD_DATA]
)
def test_bad_data_is_refused_by_the_constructor(data, error, fragment):
    with pytest.raises(error, match="Tensor") as info:
        Tensor(data)
    assert fragment in str(info.value)


def test_bad_dtype_argument_is_refused():
    with pytest.raises(TypeError, match="float16"):
        Tensor([1.0], dtype=np.float16)
    with pytest.raises(TypeError, match="dtype"):
        Tensor([1.0], dtype="not a dtype")


# ----------------------------------------------------------------------------- NaN and inf
SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.0, 1e30, -1e30, 1e-30])


def special_inputs(name, dtype):
    a = SPECIALS.astype(dtype)
    b = np.roll(a, 3)  # pairs every special with another: inf/inf, 0/0, nan*0, ...
    rows = np.array(
        [
            [1.0, np.nan, 2.0],
            [np.inf, 1.0, 2.0],
            [-np.inf, 1.0, 2.0],
            [-np.inf, -np.inf, -np.inf],
            [np.inf, np.inf, 0.0],
        ],
        dtype=dtype,
    )
    if name in ("softmax", "log_softmax", "max", "sum", "mean"):
        return (rows,)
    if name == "matmul":
        return rows, rows.T.copy()
    return (a, b)[: get(name).arity]


NAN_OPS = [
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "neg",
    "relu",
    "exp",
    "log",
    "sigmoid",
    "tanh",
    "sum",
    "mean",
    "max",
    "softmax",
    "log_softmax",
    "matmul",
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", NAN_OPS)
def test_nan_and_inf_propagate_as_in_numpy(numpy_references, name, dtype):
    arrays = special_inputs(name, dtype)
    attrs = {"axis": -1} if name in ("softmax", "log_softmax", "max", "sum", "mean") else {}
    result = apply(name, *[Tensor(a) for a in arrays], **attrs).numpy()
    with np.errstate(all="ignore"):
        expected = numpy_references[name](arrays, attrs)
    assert result.dtype == np.dtype(dtype)
    np.testing.assert_allclose(result, expected, rtol=1e-6, equal_nan=True, err_msg=name)


# ----------------------------------------------------------------------------- autograd
def _no_second_order_op():
    """A registered op with a fused backward and no second-order rule, as a plugin might be."""
    from firefly.ops import Op, register

    @register
    class FirstOrderOnly(Op):
        name = "test_first_order_only"
        forward_kernel = backward_kernel = get("neg").forward_kernel

        @classmethod
        def forward(cls, ctx, x):
            out = np.empty_like(x)
            cls.forward_kernel(x.reshape(-1), out.reshape(-1))
            return out

        @classmethod
        def backward(cls, ctx, grad):
            dx = np.empty_like(grad)
            cls.backward_kernel(grad.reshape(-1), dx.reshape(-1))
            return dx

    return FirstOrderOnly


def _leaf(values=(0.5, -1.0)):
    return Tensor(np.array(values), requires_grad=True)


def _grad_of_a_vector():
    x = _leaf()
    autograd.grad(x * 2.0, x)


def _grad_of_an_input_without_grad():
    x = _leaf()
    autograd.grad((x * 2.0).sum(), Tensor(np.ones(2)))


def _grad_of_an_unused_input():
    x, unused = _leaf(), _leaf()
    autograd.grad((x * 2.0).sum(), [x, unused])


def _second_walk_through_a_freed_graph():
    x = _leaf()
    y = (x.exp() * x).sum()
    y.backward()
    y.backward()


def _create_graph_through_an_op_without_a_second_order_rule():
    op = _no_second_order_op()
    try:
        x = _leaf()
        autograd.grad(apply(op.name, x.sin()).sum(), x, create_graph=True)
    finally:
        unregister(op.name)


def _hook_returning(replacement):
    def run():
        x = _leaf()
        h = x * 3.0
        h.register_hook(lambda g: replacement)
        h.sum().backward()

    return run


def _function_returning_too_many_gradients():
    class Twice(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2.0

        @staticmethod
        def backward(ctx, grad):
            return grad * 2.0, grad

    x = _leaf()
    Twice.apply(x).sum().backward()


@pytest.mark.parametrize(
    "thunk, fragments",
    [
        (_grad_of_a_vector, ["grad", "one-element", "(2,)", "grad_outputs"]),
        (_grad_of_an_input_without_grad, ["inputs[0]", "does not require grad"]),
        (_grad_of_an_unused_input, ["inputs[1]", "not used", "allow_unused=True"]),
        (_second_walk_through_a_freed_graph, ["already freed", "retain_graph=True"]),
        (
            _create_graph_through_an_op_without_a_second_order_rule,
            ["create_graph=True", "'test_first_order_only'", "no second-order rule"],
        ),
        (_hook_returning(Tensor(np.ones(3))), ["hook", "(3,)", "shape (2,)"]),
        (_hook_returning(Tensor(np.ones(2), dtype=np.float32)), ["hook", "float32", "float64"]),
        (_function_returning_too_many_gradients, ["Twice.backward", "2 gradient(s)", "1 input"]),
    ],
)
def test_bad_autograd_use_gets_a_clear_error(thunk, fragments):
    with pytest.raises(RuntimeError) as info:
        thunk()
    for fragment in fragments:
        assert fragment in str(info.value)
