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


# ----------------------------------------------------------------------------- torch's surface
# Devices, containers, data utilities and generators (issue 21): each error names the function,
# the argument (or what it is) and the offending value.
def _bad_api_inputs():
    import firefly
    from firefly import nn
    from firefly.utils import data

    class Stream(data.IterableDataset):
        def __iter__(self):
            return iter(range(3))

    return [
        ("device cuda", lambda: firefly.device("cuda"), ValueError, ["device", "'cuda'", "CPU"]),
        ("device mps index", lambda: firefly.device("mps:0"), ValueError, ["device", "'mps:0'"]),
        ("device unknown", lambda: firefly.device("gpu"), ValueError, ["device", "'gpu'"]),
        ("device index", lambda: firefly.device("cpu", 1), ValueError, ["device", "index 1"]),
        ("device type", lambda: firefly.device(3.5), TypeError, ["device", "float", "3.5"]),
        ("to cuda", lambda: firefly.zeros(2).to("cuda"), ValueError, ["to()", "'cuda'", "CPU"]),
        ("to int device", lambda: firefly.zeros(2).to(device=0), ValueError, ["to()", "0"]),
        (
            "zeros device",
            lambda: firefly.zeros(2, device="cuda:0"),
            ValueError,
            ["zeros", "cuda:0"],
        ),
        ("randn device", lambda: firefly.randn(2, device="mps"), ValueError, ["randn", "'mps'"]),
        ("Tensor.cuda", lambda: firefly.zeros(2).cuda(), ValueError, ["cuda()", "'cuda'"]),
        ("Module.to", lambda: nn.Linear(2, 2).to("cuda"), ValueError, ["Linear.to", "'cuda'"]),
        (
            "new_zeros size",
            lambda: firefly.zeros(2).new_zeros(-1, 2),
            ValueError,
            ["new_zeros", "(-1, 2)"],
        ),
        (
            "new_full value",
            lambda: firefly.zeros(2).new_full((2,), "a"),
            TypeError,
            ["new_full", "fill_value", "'a'"],
        ),
        ("t of 3-d", lambda: firefly.zeros(2, 3, 4).t(), ValueError, ["t()", "(2, 3, 4)"]),
        (
            "allclose rtol",
            lambda: firefly.zeros(2).allclose(firefly.zeros(2), rtol=-1),
            ValueError,
            ["allclose", "rtol", "-1"],
        ),
        (
            "isclose shapes",
            lambda: firefly.zeros(2).isclose(firefly.zeros(3)),
            ValueError,
            ["isclose", "(2,)", "(3,)"],
        ),
        (
            "equal other",
            lambda: firefly.equal(firefly.zeros(2), "a"),
            TypeError,
            ["equal", "other", "'a'"],
        ),
        (
            "data assign list",
            lambda: setattr(firefly.zeros(2), "data", [1.0]),
            TypeError,
            ["data", "list"],
        ),
        (
            "random_split sum",
            lambda: data.random_split(range(10), [3, 4]),
            ValueError,
            ["random_split", "[3, 4]", "10"],
        ),
        (
            "random_split fractions",
            lambda: data.random_split(range(10), [0.5, 0.6]),
            ValueError,
            ["random_split", "[0.5, 0.6]", "1.1"],
        ),
        (
            "random_split length type",
            lambda: data.random_split(range(10), [3, "7"]),
            TypeError,
            ["random_split", "lengths[1]", "'7'"],
        ),
        (
            "random_split negative",
            lambda: data.random_split(range(2), [3, -1]),
            ValueError,
            ["random_split", "lengths[1]", "-1"],
        ),
        (
            "random_split generator",
            lambda: data.random_split(range(4), [2, 2], generator=7),
            TypeError,
            ["random_split", "generator", "7"],
        ),
        (
            "ModuleDict dotted key",
            lambda: nn.ModuleDict({"a.b": nn.ReLU()}),
            KeyError,
            ["ModuleDict", "name", "a.b"],
        ),
        (
            "ModuleDict int key",
            lambda: nn.ModuleDict({1: nn.ReLU()}),
            TypeError,
            ["ModuleDict", "name", "int 1"],
        ),
        (
            "ModuleDict attribute key",
            lambda: nn.ModuleDict({"train": nn.ReLU()}),
            KeyError,
            ["ModuleDict", "'train'"],
        ),
        (
            "ModuleDict empty key",
            lambda: nn.ModuleDict({"": nn.ReLU()}),
            KeyError,
            ["ModuleDict", "empty"],
        ),
        (
            "ModuleDict value",
            lambda: nn.ModuleDict({"a": 3}),
            TypeError,
            ["ModuleDict['a']", "Module", "int 3"],
        ),
        (
            "ModuleDict missing key",
            lambda: nn.ModuleDict({"a": nn.ReLU()})["b"],
            KeyError,
            ["ModuleDict", "'b'", "['a']"],
        ),
        (
            "ModuleDict.update pair",
            lambda: nn.ModuleDict().update([("a", nn.ReLU(), 1)]),
            ValueError,
            ["ModuleDict.update", "#0", "3"],
        ),
        (
            "ParameterList value",
            lambda: nn.ParameterList([3.0]),
            TypeError,
            ["ParameterList.append", "float", "3.0"],
        ),
        (
            "ParameterDict key",
            lambda: nn.ParameterDict({"": firefly.zeros(2)}),
            KeyError,
            ["ParameterDict", "empty"],
        ),
        (
            "Sequential member",
            lambda: nn.Sequential(nn.ReLU(), "relu"),
            TypeError,
            ["Sequential", "Module", "'relu'"],
        ),
        (
            "ModuleList index",
            lambda: nn.ModuleList([nn.ReLU()])[3],
            IndexError,
            ["ModuleList", "index 3"],
        ),
        (
            "add_module name",
            lambda: nn.Module().add_module(3, nn.ReLU()),
            TypeError,
            ["add_module", "name", "3"],
        ),
        (
            "register_parameter value",
            lambda: nn.Module().register_parameter("w", firefly.zeros(2)),
            TypeError,
            ["register_parameter", "Tensor", "'w'"],
        ),
        (
            "get_submodule",
            lambda: nn.Sequential(nn.ReLU()).get_submodule("1"),
            AttributeError,
            ["get_submodule", "'1'"],
        ),
        (
            "get_parameter",
            lambda: nn.Sequential(nn.Linear(2, 2)).get_parameter("0.wieght"),
            AttributeError,
            ["get_parameter", "'wieght'", "'0.wieght'"],
        ),
        (
            "relu inplace leaf",
            lambda: nn.ReLU(True)(firefly.zeros(2, requires_grad=True)),
            RuntimeError,
            ["relu(inplace=True)", "leaf"],
        ),
        (
            "DataLoader generator",
            lambda: data.DataLoader(range(4), generator=3),
            TypeError,
            ["DataLoader", "generator", "3"],
        ),
        (
            "DataLoader num_workers",
            lambda: data.DataLoader(range(4), num_workers=-1),
            ValueError,
            ["DataLoader", "num_workers", "-1"],
        ),
        (
            "DataLoader batch_sampler",
            lambda: data.DataLoader(range(4), batch_size=2, batch_sampler=[[0, 1]]),
            ValueError,
            ["DataLoader", "batch_sampler", "batch_size=2"],
        ),
        (
            "DataLoader keyword",
            lambda: data.DataLoader(range(4), batchsize=2),
            TypeError,
            ["DataLoader", "'batchsize'"],
        ),
        (
            "DataLoader stream shuffle",
            lambda: data.DataLoader(Stream(), shuffle=True),
            ValueError,
            ["DataLoader", "IterableDataset", "shuffle=True"],
        ),
        (
            "WeightedRandomSampler weights",
            lambda: data.WeightedRandomSampler([1.0, -1.0], 2),
            ValueError,
            ["WeightedRandomSampler", "weights", "-1.0"],
        ),
        (
            "WeightedRandomSampler num_samples",
            lambda: data.WeightedRandomSampler([1.0], 0),
            ValueError,
            ["WeightedRandomSampler", "num_samples", "0"],
        ),
        (
            "WeightedRandomSampler no replacement",
            lambda: data.WeightedRandomSampler([1.0, 0.0], 2, replacement=False),
            ValueError,
            ["WeightedRandomSampler", "num_samples=2", "1"],
        ),
        (
            "BatchSampler batch_size",
            lambda: data.BatchSampler(range(4), 0, False),
            ValueError,
            ["BatchSampler", "batch_size", "0"],
        ),
        (
            "RandomSampler replacement",
            lambda: data.RandomSampler(range(4), replacement=1),
            TypeError,
            ["RandomSampler", "replacement", "1"],
        ),
        (
            "ConcatDataset empty",
            lambda: data.ConcatDataset([]),
            ValueError,
            ["ConcatDataset", "empty"],
        ),
        (
            "Generator seed",
            lambda: firefly.Generator().manual_seed("a"),
            TypeError,
            ["Generator.manual_seed", "seed", "'a'"],
        ),
        (
            "manual_seed float",
            lambda: firefly.manual_seed(1.5),
            TypeError,
            ["manual_seed", "seed", "1.5"],
        ),
        (
            "randn generator",
            lambda: firefly.randn(2, generator=5),
            TypeError,
            ["randn", "generator", "5"],
        ),
        ("randperm n", lambda: firefly.randperm(-1), ValueError, ["randperm", "n", "-1"]),
        (
            "Module.cuda",
            lambda: nn.Linear(2, 2).cuda(),
            ValueError,
            ["Linear.cuda", "'cuda'", "CPU"],
        ),
        (
            "forward hook",
            lambda: nn.ReLU().register_forward_hook("print"),
            TypeError,
            ["register_forward_hook", "hook", "'print'"],
        ),
        (
            "relu inplace array",
            lambda: nn.functional.relu(np.zeros(2), inplace=True),
            TypeError,
            ["relu(inplace=True)", "input", "ndarray"],
        ),
    ]


BAD_API_INPUTS = _bad_api_inputs()


@pytest.mark.parametrize(
    "thunk, error, fragments",
    [case[1:] for case in BAD_API_INPUTS],
    ids=[case[0] for case in BAD_API_INPUTS],
)
def test_bad_input_to_the_torch_surface_is_explained(thunk, error, fragments):
    with pytest.raises(error) as info:
        thunk()
    message = str(info.value)
    missing = [f for f in fragments if f not in message]
    assert not missing, f"message {message!r} lacks {missing}"


def _bad_tensor_op_inputs():
    """Issue 21's Tensor and top-level ops: each case names the function, the argument and the
    value in its message."""
    import firefly
    import firefly.nn.functional as F

    def long(values):
        return firefly.tensor(np.asarray(values), dtype="int64")

    x = f32(3, 4)
    return [
        (
            "masked_fill float mask",
            lambda: x.masked_fill(f32(3, 4), 0.0),
            TypeError,
            ["masked_fill", "mask", "float32", "bool"],
        ),
        (
            "masked_fill int mask",
            lambda: x.masked_fill(long([[1, 0, 1, 0]]), 0.0),
            TypeError,
            ["masked_fill", "mask", "int64"],
        ),
        (
            "masked_fill mask shape",
            lambda: x.masked_fill(firefly.ones(2, 4).bool(), 0.0),
            ValueError,
            ["masked_fill", "mask", "(2, 4)", "(3, 4)"],
        ),
        (
            "masked_fill mask grows the tensor",
            lambda: x.masked_fill(firefly.ones(2, 3, 4).bool(), 0.0),
            ValueError,
            ["masked_fill", "(2, 3, 4)", "(3, 4)"],
        ),
        (
            "masked_fill value tensor",
            lambda: x.masked_fill(firefly.ones(3, 4).bool(), f32(2)),
            ValueError,
            ["masked_fill", "value", "0-d", "(2,)"],
        ),
        (
            "masked_fill value str",
            lambda: x.masked_fill(firefly.ones(3, 4).bool(), "inf"),
            TypeError,
            ["masked_fill", "value", "'inf'"],
        ),
        (
            "multinomial negative weight",
            lambda: firefly.tensor([0.5, -0.1, 0.6]).multinomial(1),
            ValueError,
            ["multinomial", "weights", "non-negative", "-0.1"],
        ),
        (
            "multinomial nan weight",
            lambda: firefly.tensor([0.5, float("nan")]).multinomial(1),
            ValueError,
            ["multinomial", "weights", "nan"],
        ),
        (
            "multinomial zero row",
            lambda: firefly.tensor([[0.5, 0.5], [0.0, 0.0]]).multinomial(1),
            ValueError,
            ["multinomial", "row 1", "sum to 0"],
        ),
        (
            "multinomial too many without replacement",
            lambda: firefly.tensor([0.2, 0.3, 0.5]).multinomial(4),
            ValueError,
            ["multinomial", "num_samples=4", "without replacement", "3 categories"],
        ),
        (
            "multinomial too few non-zero without replacement",
            lambda: firefly.tensor([0.2, 0.0, 0.8]).multinomial(3),
            ValueError,
            ["multinomial", "num_samples=3", "2 categories of non-zero weight"],
        ),
        (
            "multinomial num_samples",
            lambda: firefly.tensor([0.2, 0.8]).multinomial(0),
            ValueError,
            ["multinomial", "num_samples", "0"],
        ),
        (
            "multinomial num_samples float",
            lambda: firefly.tensor([0.2, 0.8]).multinomial(2.0),
            TypeError,
            ["multinomial", "num_samples", "2.0"],
        ),
        (
            "multinomial 3-D",
            lambda: firefly.ones(2, 2, 2).multinomial(1),
            ValueError,
            ["multinomial", "1-D or 2-D", "(2, 2, 2)"],
        ),
        (
            "multinomial integer weights",
            lambda: long([1, 2]).multinomial(1),
            TypeError,
            ["multinomial", "float", "int64"],
        ),
        (
            "multinomial generator",
            lambda: firefly.tensor([0.2, 0.8]).multinomial(1, generator=3),
            TypeError,
            ["multinomial", "generator", "3"],
        ),
        ("topk k too large", lambda: x.topk(5), ValueError, ["topk", "k=5", "size 4"]),
        ("topk k negative", lambda: x.topk(-1, dim=0), ValueError, ["topk", "k=-1", "size 3"]),
        ("topk k float", lambda: x.topk(1.5), TypeError, ["topk", "k", "1.5"]),
        ("topk dim", lambda: x.topk(1, dim=2), IndexError, ["topk", "dim 2", "(3, 4)"]),
        ("sort dim", lambda: x.sort(-3), IndexError, ["sort", "dim -3", "(3, 4)"]),
        ("argsort dim", lambda: x.argsort(dim="1"), TypeError, ["sort", "dim", "'1'"]),
        (
            "einsum operand count",
            lambda: firefly.einsum("ij,jk->ik", x),
            ValueError,
            ["einsum", "'ij,jk->ik'", "2 operand", "1 tensor"],
        ),
        (
            "einsum subscripts vs dims",
            lambda: firefly.einsum("ijk->i", x),
            ValueError,
            ["einsum", "'ijk->i'", "operand 0 has 2 dimensions", "3"],
        ),
        (
            "einsum sizes",
            lambda: firefly.einsum("ij,jk->ik", x, f32(3, 2)),
            ValueError,
            ["einsum", "subscript 'j'", "size 3", "4"],
        ),
        (
            "einsum output label",
            lambda: firefly.einsum("ij->ik", x),
            ValueError,
            ["einsum", "output subscript 'k'", "no operand"],
        ),
        (
            "einsum output repeat",
            lambda: firefly.einsum("ij->ii", x),
            ValueError,
            ["einsum", "'ij->ii'", "repeats"],
        ),
        (
            "einsum subscript character",
            lambda: firefly.einsum("i1->i", x),
            ValueError,
            ["einsum", "letters", "'1'"],
        ),
        (
            "einsum two arrows",
            lambda: firefly.einsum("ij->i->j", x),
            ValueError,
            ["einsum", "more than one '->'"],
        ),
        (
            "einsum ellipsis output",
            lambda: firefly.einsum("...j->j", f32(2, 3, 4)),
            ValueError,
            ["einsum", "'...'"],
        ),
        (
            "einsum equation type",
            lambda: firefly.einsum(3, x),
            TypeError,
            ["einsum", "equation", "int"],
        ),
        (
            "index_select float index",
            lambda: x.index_select(0, firefly.tensor([0.0, 1.0])),
            TypeError,
            ["index_select", "index", "float32"],
        ),
        (
            "index_select 2-D index",
            lambda: x.index_select(0, long([[0, 1]])),
            ValueError,
            ["index_select", "index", "(1, 2)"],
        ),
        (
            "index_select out of range",
            lambda: x.index_select(1, long([0, 4])),
            IndexError,
            ["index_select", "index", "4", "size 4"],
        ),
        (
            "index_select dim",
            lambda: x.index_select(2, long([0])),
            IndexError,
            ["index_select", "dim 2", "(3, 4)"],
        ),
        ("narrow dim", lambda: x.narrow(2, 0, 1), IndexError, ["narrow", "dim 2", "(3, 4)"]),
        (
            "narrow start",
            lambda: x.narrow(1, 5, 1),
            IndexError,
            ["narrow", "start 5", "size 4"],
        ),
        (
            "narrow length",
            lambda: x.narrow(0, 2, 2),
            ValueError,
            ["narrow", "start (2) + length (2)", "size 3"],
        ),
        ("narrow 0-d", lambda: f32().narrow(0, 0, 1), IndexError, ["narrow", "0-d"]),
        ("tril 1-D", lambda: f32(3).tril(), ValueError, ["tril", "2 dimensions", "(3,)"]),
        (
            "triu diagonal float",
            lambda: x.triu(0.5),
            TypeError,
            ["triu", "diagonal", "0.5"],
        ),
        ("flip repeated dim", lambda: x.flip(0, -2), ValueError, ["flip", "(0, -2)"]),
        ("flip dim", lambda: x.flip(3), IndexError, ["flip", "dim 3", "(3, 4)"]),
        (
            "roll lengths",
            lambda: x.roll((1, 2), 0),
            ValueError,
            ["roll", "shifts (1, 2)", "dims (0,)"],
        ),
        ("roll shift float", lambda: x.roll(1.5), TypeError, ["roll", "shifts", "1.5"]),
        (
            "repeat too few",
            lambda: x.repeat(2),
            ValueError,
            ["repeat", "(2,)", "(3, 4)", "at least 2"],
        ),
        ("repeat negative", lambda: x.repeat(2, -1), ValueError, ["repeat", "(2, -1)"]),
        (
            "repeat_interleave counts",
            lambda: x.repeat_interleave(long([1, 2]), dim=0),
            ValueError,
            ["repeat_interleave", "2 counts", "3 elements"],
        ),
        (
            "repeat_interleave negative",
            lambda: x.repeat_interleave(-1, dim=1),
            ValueError,
            ["repeat_interleave", "non-negative", "-1"],
        ),
        (
            "repeat_interleave float repeats",
            lambda: x.repeat_interleave(firefly.tensor([1.0, 2.0, 1.0]), dim=0),
            TypeError,
            ["repeat_interleave", "repeats", "float32"],
        ),
        (
            "repeat_interleave output_size",
            lambda: x.repeat_interleave(2, dim=0, output_size=5),
            ValueError,
            ["repeat_interleave", "output_size=5", "6"],
        ),
        (
            "scatter index out of range",
            lambda: x.scatter(1, long([[4], [0], [0]]), f32(3, 1)),
            IndexError,
            ["scatter", "index", "4", "size 4"],
        ),
        (
            "scatter index dims",
            lambda: x.scatter(1, long([0, 1]), f32(2)),
            ValueError,
            ["scatter", "index", "1 dimensions", "(3, 4)"],
        ),
        (
            "scatter_add src smaller",
            lambda: x.scatter_add(0, long([[0, 1, 2]]), f32(1, 2)),
            ValueError,
            ["scatter_add", "index", "(1, 3)", "src", "(1, 2)"],
        ),
        (
            "scatter_add src dtype",
            lambda: x.scatter_add(0, long([[0]]), f64(1, 1)),
            TypeError,
            ["scatter_add", "src", "float64", "float32"],
        ),
        (
            "scatter float index",
            lambda: x.scatter(0, f32(1, 1), 1.0),
            TypeError,
            ["scatter", "index", "float32"],
        ),
        (
            "scatter reduce",
            lambda: x.scatter(0, long([[0]]), 1.0, reduce="max"),
            ValueError,
            ["scatter", "reduce", "'max'"],
        ),
        (
            "scatter neither",
            lambda: x.scatter(0, long([[0]])),
            TypeError,
            ["scatter", "src", "value"],
        ),
        (
            "cumsum dim",
            lambda: x.cumsum(2),
            IndexError,
            ["cumsum", "dim 2", "(3, 4)"],
        ),
        ("mm 3-D", lambda: f32(2, 3, 4).mm(x), ValueError, ["mm", "2-D", "(2, 3, 4)"]),
        ("mm inner", lambda: x.mm(f32(3, 4)), ValueError, ["mm", "(3, 4)", "cannot be multiplied"]),
        ("mm operand", lambda: x.mm(np.ones((4, 2))), TypeError, ["mm", "Tensor", "ndarray"]),
        (
            "bmm batch",
            lambda: f32(2, 3, 4).bmm(f32(3, 4, 5)),
            ValueError,
            ["bmm", "(2, 3, 4)", "(3, 4, 5)", "batch sizes differ"],
        ),
        (
            "baddbmm input shape",
            lambda: f32(4, 1, 1).baddbmm(f32(2, 3, 4), f32(2, 4, 5)),
            ValueError,
            ["baddbmm", "input", "(4, 1, 1)", "(2, 3, 5)"],
        ),
        (
            "addmm alpha",
            lambda: f32(3, 5).addmm(x, f32(4, 5), alpha="2"),
            TypeError,
            ["addmm", "alpha", "'2'"],
        ),
        (
            "norm p string",
            lambda: x.norm("nuc"),
            ValueError,
            ["norm", "p='nuc'", "linalg.matrix_norm"],
        ),
        (
            "svd 1-D",
            lambda: firefly.linalg.svd(f32(3)),
            ValueError,
            ["linalg.svd", "2 dimensions", "(3,)"],
        ),
        (
            "svd integer tensor",
            lambda: firefly.linalg.svd(long([[3, 4], [1, 2]])),
            TypeError,
            ["linalg.svd", "float", "int64"],
        ),
        (
            "svd non-finite",
            lambda: firefly.linalg.svd(Tensor(np.array([[1.0, np.nan], [0.0, 1.0]]))),
            ValueError,
            ["svd", "finite", "(2, 2)", "float64"],
        ),
        (
            "svd driver",
            lambda: firefly.linalg.svd(f32(2, 2), driver="gesvd"),
            ValueError,
            ["linalg.svd", "driver", "'gesvd'"],
        ),
        (
            "svdvals 1-D",
            lambda: firefly.linalg.svdvals(f64(4)),
            ValueError,
            ["linalg.svdvals", "2 dimensions", "(4,)"],
        ),
        (
            "matrix_norm nuc on an integer tensor",
            lambda: firefly.linalg.matrix_norm(long([[3, 4], [1, 2]]), "nuc"),
            TypeError,
            ["linalg.matrix_norm", "float", "int64"],
        ),
        (
            "matrix_norm ord bool",
            lambda: firefly.linalg.matrix_norm(x, ord=True),
            ValueError,
            ["linalg.matrix_norm", "ord", "True", "'nuc'"],
        ),
        (
            "matrix_norm nuc dims",
            lambda: firefly.linalg.matrix_norm(f32(2, 3, 4), "nuc", dim=(1, 1)),
            ValueError,
            ["linalg.matrix_norm", "(1, 1)", "two different dims"],
        ),
        ("norm dim", lambda: x.norm(dim=(0, 0)), ValueError, ["norm", "(0, 0)", "more than once"]),
        ("norm integer tensor", lambda: long([3, 4]).norm(), TypeError, ["norm", "float", "int64"]),
        (
            "vector_norm ord",
            lambda: firefly.linalg.vector_norm(x, ord="fro"),
            TypeError,
            ["linalg.vector_norm", "ord", "'fro'"],
        ),
        (
            "matrix_norm 1-D",
            lambda: firefly.linalg.matrix_norm(f32(3)),
            ValueError,
            ["linalg.matrix_norm", "2 dimensions", "(3,)"],
        ),
        (
            "matrix_norm ord",
            lambda: firefly.linalg.matrix_norm(x, ord=3),
            ValueError,
            ["linalg.matrix_norm", "ord", "3"],
        ),
        (
            "linalg.norm 3-D with ord",
            lambda: firefly.linalg.norm(f32(2, 2, 2), ord=1),
            ValueError,
            ["linalg.norm", "ord=1", "(2, 2, 2)"],
        ),
        (
            "normalize dim",
            lambda: F.normalize(x, dim=2),
            IndexError,
            ["normalize", "dim 2", "(3, 4)"],
        ),
        (
            "normalize eps",
            lambda: F.normalize(x, eps=-1.0),
            ValueError,
            ["normalize", "eps", "-1.0"],
        ),
        (
            "cosine_similarity shapes",
            lambda: F.cosine_similarity(x, f32(2, 4)),
            ValueError,
            ["cosine_similarity", "(3, 4)", "(2, 4)"],
        ),
        (
            "cosine_similarity dim",
            lambda: firefly.cosine_similarity(x, x, dim=2),
            IndexError,
            ["cosine_similarity", "dim 2"],
        ),
        (
            "cdist feature size",
            lambda: firefly.cdist(x, f32(2, 3)),
            ValueError,
            ["cdist", "(3, 4)", "(2, 3)"],
        ),
        ("cdist p", lambda: firefly.cdist(x, x, p=-1.0), ValueError, ["cdist", "p", "-1.0"]),
        (
            "one_hot float",
            lambda: F.one_hot(firefly.tensor([0.0, 1.0])),
            TypeError,
            ["one_hot", "int64", "float32"],
        ),
        (
            "one_hot out of range",
            lambda: F.one_hot(long([0, 3]), num_classes=3),
            ValueError,
            ["one_hot", "3", "num_classes=3"],
        ),
        (
            "one_hot negative class",
            lambda: F.one_hot(long([0, -1])),
            ValueError,
            ["one_hot", "non-negative", "-1"],
        ),
        (
            "tril_indices row",
            lambda: firefly.tril_indices(-1, 3),
            ValueError,
            ["tril_indices", "row", "-1"],
        ),
        (
            "var unbiased and correction",
            lambda: x.var(0, True, correction=0),
            TypeError,
            ["var", "unbiased", "correction"],
        ),
        ("var integer tensor", lambda: long([1, 2]).var(), TypeError, ["var", "float", "int64"]),
        ("std dim", lambda: x.std(4), IndexError, ["var", "dim 4", "(3, 4)"]),
        ("logsumexp dim", lambda: x.logsumexp((1, 1)), ValueError, ["logsumexp", "(1, 1)"]),
        (
            "diagonal same dims",
            lambda: x.diagonal(0, 1, -1),
            ValueError,
            ["diagonal", "dim1", "dim2", "1", "-1"],
        ),
        ("diag 3-D", lambda: f32(2, 2, 2).diag(), ValueError, ["diag", "1-D or 2-D", "(2, 2, 2)"]),
        ("trace 1-D", lambda: f32(3).trace(), ValueError, ["trace", "2-D", "(3,)"]),
        ("outer 2-D", lambda: x.outer(f32(2)), ValueError, ["outer", "1-D", "(3, 4)"]),
        ("dot lengths", lambda: f32(3).dot(f32(4)), ValueError, ["dot", "(3,)", "(4,)"]),
        (
            "masked_select mask dtype",
            lambda: x.masked_select(f32(3, 4)),
            TypeError,
            ["masked_select", "mask", "float32"],
        ),
        (
            "select index",
            lambda: x.select(1, 4),
            IndexError,
            ["select", "index 4", "size 4"],
        ),
        (
            "movedim lengths",
            lambda: x.movedim((0, 1), 0),
            ValueError,
            ["movedim", "(0, 1)", "0"],
        ),
        (
            "unflatten sizes",
            lambda: x.unflatten(1, (3, 2)),
            ValueError,
            ["unflatten", "(3, 2)", "size 4"],
        ),
        (
            "take_along_dim float indices",
            lambda: x.take_along_dim(f32(3, 1), 1),
            TypeError,
            ["take_along_dim", "indices", "float32"],
        ),
        (
            "bincount negative",
            lambda: long([1, -2]).bincount(),
            ValueError,
            ["bincount", "non-negative", "-2"],
        ),
        (
            "bincount float",
            lambda: f32(3).bincount(),
            TypeError,
            ["bincount", "integer", "float32"],
        ),
        (
            "meshgrid indexing",
            lambda: firefly.meshgrid(f32(2), f32(3), indexing="yx"),
            ValueError,
            ["meshgrid", "indexing", "'yx'"],
        ),
        ("diff n", lambda: x.diff(-1), ValueError, ["diff", "n", "-1"]),
        (
            "index_add source shape",
            lambda: x.index_add(0, long([0, 1]), f32(3, 4)),
            ValueError,
            ["index_add", "source", "(3, 4)", "(2, 4)"],
        ),
        (
            "index_copy index range",
            lambda: x.index_copy(1, long([4]), f32(3, 1)),
            IndexError,
            ["index_copy", "index", "4", "size 4"],
        ),
        (
            "index_fill float index",
            lambda: x.index_fill(0, f32(1), 0.0),
            TypeError,
            ["index_fill", "index", "float32"],
        ),
        ("prod dims", lambda: x.prod((0, 1)), TypeError, ["prod", "one int", "(0, 1)"]),
        ("kthvalue k", lambda: x.kthvalue(0), ValueError, ["kthvalue", "k=0", "size 4"]),
        ("median dim", lambda: x.median(5), IndexError, ["median", "dim 5", "(3, 4)"]),
        (
            "tensordot dims",
            lambda: firefly.tensordot(x, x, 3),
            ValueError,
            ["tensordot", "dims=3", "(3, 4)"],
        ),
        ("cross size", lambda: x.cross(x, dim=1), ValueError, ["cross", "dim 1", "size 3"]),
        ("cumprod dim", lambda: x.cumprod(-3), IndexError, ["cumprod", "dim -3", "(3, 4)"]),
        (
            "where half",
            lambda: firefly.where(firefly.ones(2).bool(), f32(2)),
            TypeError,
            ["where", "input", "other"],
        ),
    ]


BAD_TENSOR_OP_INPUTS = _bad_tensor_op_inputs()


@pytest.mark.parametrize(
    "thunk, error, fragments",
    [case[1:] for case in BAD_TENSOR_OP_INPUTS],
    ids=[case[0] for case in BAD_TENSOR_OP_INPUTS],
)
def test_bad_input_to_the_tensor_ops_is_refused_before_any_kernel_runs(
    no_kernel_may_run, thunk, error, fragments
):
    with pytest.raises(error) as info:
        thunk()
    message = str(info.value)
    missing = [f for f in fragments if f not in message]
    assert not missing, f"message {message!r} lacks {missing}"


def _bad_layer_inputs():
    """The layers, functions and losses for whole-program ports: each bad argument is refused,
    naming the function, the argument and the value, before any kernel runs."""
    from firefly import nn
    from firefly.nn import functional as F
    from firefly.optim import LBFGS

    image, sequence = f64(2, 4, 5, 6), f64(2, 4, 7)
    weight = f64(4, 3, 3, 3)
    return [
        (
            "conv_transpose2d rank",
            lambda: F.conv_transpose2d(f64(4, 5), weight),
            ValueError,
            ["conv_transpose2d", "input must be 4-D", "(4, 5)"],
        ),
        (
            "conv_transpose2d output_padding",
            lambda: F.conv_transpose2d(image, weight, stride=2, output_padding=2),
            ValueError,
            ["conv_transpose2d", "output_padding", "(2, 2)", "stride (2, 2)"],
        ),
        (
            "conv_transpose1d channels",
            lambda: F.conv_transpose1d(sequence, f64(3, 2, 3)),
            ValueError,
            ["conv_transpose1d", "4 channels", "in_channels = 3", "(2, 4, 7)"],
        ),
        (
            "conv_transpose2d bias",
            lambda: F.conv_transpose2d(image, weight, f64(4)),
            ValueError,
            ["conv_transpose2d", "bias", "(3,)"],
        ),
        (
            "conv_transpose2d stride",
            lambda: F.conv_transpose2d(image, weight, stride=0),
            ValueError,
            ["conv_transpose2d", "stride", "0"],
        ),
        (
            "ConvTranspose2d output_padding",
            lambda: nn.ConvTranspose2d(4, 6, 3, stride=1, output_padding=1),
            ValueError,
            ["ConvTranspose2d", "output_padding", "(1, 1)", "stride"],
        ),
        (
            "ConvTranspose2d output_size",
            lambda: nn.ConvTranspose2d(4, 6, 3, stride=2)(image, output_size=(30, 30)),
            ValueError,
            ["ConvTranspose2d", "output_size", "(30, 30)"],
        ),
        (
            "max_pool1d rank",
            lambda: F.max_pool1d(image, 2),
            ValueError,
            ["max_pool1d", "3-D", "(2, 4, 5, 6)"],
        ),
        (
            "avg_pool1d kernel",
            lambda: F.avg_pool1d(sequence, 0),
            ValueError,
            ["avg_pool1d", "kernel_size", "0"],
        ),
        (
            "adaptive_max_pool1d size",
            lambda: F.adaptive_max_pool1d(sequence, (2, 3)),
            TypeError,
            ["adaptive_max_pool1d", "output_size", "(2, 3)"],
        ),
        (
            "adaptive_max_pool2d size",
            lambda: F.adaptive_max_pool2d(image, (2, 0)),
            ValueError,
            ["adaptive_max_pool2d", "output_size", "0"],
        ),
        (
            "adaptive_max_pool2d rank",
            lambda: F.adaptive_max_pool2d(f64(5, 6), 2),
            ValueError,
            ["adaptive_max_pool2d", "4-D", "(5, 6)"],
        ),
        (
            "interpolate mode",
            lambda: F.interpolate(image, scale_factor=2, mode="trilinear"),
            ValueError,
            ["interpolate", "mode", "'trilinear'"],
        ),
        (
            "max_pool2d indices_out",
            lambda: apply("max_pool2d", image, kernel_size=2, indices_out=()),
            TypeError,
            ["max_pool2d", "indices_out", "list", "tuple"],
        ),
        (
            "adaptive_max_pool1d return_indices rank",
            lambda: F.adaptive_max_pool1d(image, 2, return_indices=True),
            ValueError,
            ["adaptive_max_pool1d", "3-D", "(2, 4, 5, 6)"],
        ),
        (
            "max_unpool2d indices dtype",
            lambda: F.max_unpool2d(image, f64(2, 4, 5, 6), 2),
            TypeError,
            ["max_unpool2d", "indices", "int64", "float64"],
        ),
        (
            "max_unpool2d indices shape",
            lambda: F.max_unpool2d(image, Tensor(np.zeros((2, 4, 5), np.int64), dtype=np.int64), 2),
            ValueError,
            ["max_unpool2d", "indices", "(2, 4, 5)", "(2, 4, 5, 6)"],
        ),
        (
            "max_unpool2d index outside the output",
            lambda: F.max_unpool2d(
                image, Tensor(np.full((2, 4, 5, 6), 120, np.int64), dtype=np.int64), 2
            ),
            IndexError,
            ["max_unpool2d", "index 120", "(10, 12)", "120 positions"],
        ),
        (
            "max_unpool2d negative index",
            lambda: F.max_unpool2d(
                image, Tensor(np.full((2, 4, 5, 6), -1, np.int64), dtype=np.int64), 2
            ),
            IndexError,
            ["max_unpool2d", "index -1"],
        ),
        (
            "max_unpool2d output_size out of range",
            lambda: F.max_unpool2d(
                image,
                Tensor(np.zeros((2, 4, 5, 6), np.int64), dtype=np.int64),
                2,
                output_size=(12, 12),
            ),
            ValueError,
            ["max_unpool2d", "output_size (12, 12)", "(8, 10)", "(12, 14)"],
        ),
        (
            "max_unpool2d output_size length",
            lambda: F.max_unpool2d(
                image,
                Tensor(np.zeros((2, 4, 5, 6), np.int64), dtype=np.int64),
                2,
                output_size=(10,),
            ),
            ValueError,
            ["max_unpool2d", "output_size", "2 ints", "(10,)"],
        ),
        (
            "max_unpool2d rank",
            lambda: F.max_unpool2d(f64(4, 7), Tensor(np.zeros((4, 7)), dtype=np.int64), 2),
            ValueError,
            ["max_unpool2d", "4-D", "(4, 7)"],
        ),
        (
            "max_unpool2d kernel_size",
            lambda: F.max_unpool2d(
                image, Tensor(np.zeros((2, 4, 5, 6), np.int64), dtype=np.int64), 0
            ),
            ValueError,
            ["max_unpool2d", "kernel_size"],
        ),
        (
            "max_unpool1d rank",
            lambda: F.max_unpool1d(
                image, Tensor(np.zeros((2, 4, 5, 6), np.int64), dtype=np.int64), 2
            ),
            ValueError,
            ["max_unpool1d", "3-D", "(2, 4, 5, 6)"],
        ),
        (
            "max_unpool1d output_size",
            lambda: F.max_unpool1d(
                sequence,
                Tensor(np.zeros((2, 4, 7), np.int64), dtype=np.int64),
                2,
                output_size=(20,),
            ),
            ValueError,
            ["max_unpool1d", "output_size (20,)", "(12,)", "(16,)"],
        ),
        (
            "interpolate bicubic rank",
            lambda: F.interpolate(sequence, size=9, mode="bicubic"),
            ValueError,
            ["interpolate", "'bicubic'", "4-D", "(2, 4, 7)"],
        ),
        (
            "interpolate rank for mode",
            lambda: F.interpolate(sequence, size=9, mode="bilinear"),
            ValueError,
            ["interpolate", "'bilinear'", "4-D", "(2, 4, 7)"],
        ),
        (
            "interpolate align_corners",
            lambda: F.interpolate(image, size=9, align_corners=True),
            ValueError,
            ["interpolate", "align_corners", "'nearest'"],
        ),
        (
            "interpolate size and scale",
            lambda: F.interpolate(image, size=9, scale_factor=2),
            ValueError,
            ["interpolate", "size", "scale_factor"],
        ),
        (
            "interpolate size length",
            lambda: F.interpolate(image, size=(3, 4, 5)),
            ValueError,
            ["interpolate", "size", "(3, 4, 5)"],
        ),
        (
            "interpolate scale",
            lambda: F.interpolate(image, scale_factor=-1.0),
            ValueError,
            ["interpolate", "scale_factor", "-1.0"],
        ),
        (
            "pad odd",
            lambda: F.pad(image, (1, 2, 3)),
            TypeError,
            ["pad", "even", "(1, 2, 3)"],
        ),
        (
            "pad mode",
            lambda: F.pad(image, (1, 1), mode="mirror"),
            ValueError,
            ["pad", "mode", "'mirror'"],
        ),
        (
            "pad reflect too wide",
            lambda: F.pad(sequence, (7, 0), mode="reflect"),
            ValueError,
            ["pad", "'reflect'", "at most 6", "(7, 0)"],
        ),
        (
            "pad too many dims",
            lambda: F.pad(f64(3), (1, 1, 1, 1)),
            ValueError,
            ["pad", "(1, 1, 1, 1)", "(3,)"],
        ),
        (
            "pixel_shuffle channels",
            lambda: F.pixel_shuffle(image, 3),
            ValueError,
            ["pixel_shuffle", "upscale_factor^2 = 9", "(2, 4, 5, 6)"],
        ),
        (
            "pixel_unshuffle size",
            lambda: F.pixel_unshuffle(image, 4),
            ValueError,
            ["pixel_unshuffle", "downscale_factor=4", "(2, 4, 5, 6)"],
        ),
        (
            "instance_norm rank",
            lambda: F.instance_norm(f64(2, 4)),
            ValueError,
            ["instance_norm", "3-D", "(2, 4)"],
        ),
        (
            "InstanceNorm2d channels",
            lambda: nn.InstanceNorm2d(3, affine=True)(image),
            ValueError,
            ["InstanceNorm2d", "3 channels", "got 4", "(2, 4, 5, 6)"],
        ),
        (
            "InstanceNorm1d rank",
            lambda: nn.InstanceNorm1d(4)(image),
            ValueError,
            ["InstanceNorm1d", "3-D", "(2, 4, 5, 6)"],
        ),
        (
            "kl_div shapes",
            lambda: F.kl_div(f64(4, 3), f64(4, 1)),
            ValueError,
            ["kl_div", "input (4, 3)", "target (4, 1)"],
        ),
        (
            "kl_div reduction",
            lambda: nn.KLDivLoss(reduction="batch")(f64(2), f64(2)),
            ValueError,
            ["KLDivLoss", "reduction", "'batch'"],
        ),
        (
            "margin_ranking_loss shapes",
            lambda: F.margin_ranking_loss(f64(4), f64(4), f64(3)),
            ValueError,
            ["margin_ranking_loss", "target (3,)"],
        ),
        (
            "cosine_embedding_loss target",
            lambda: F.cosine_embedding_loss(f64(4, 3), f64(4, 3), f64(3)),
            ValueError,
            ["cosine_embedding_loss", "(4, 3)", "target (3,)"],
        ),
        (
            "triplet_margin_loss shapes",
            lambda: F.triplet_margin_loss(f64(4, 3), f64(4, 3), f64(4, 2)),
            ValueError,
            ["triplet_margin_loss", "negative (4, 2)"],
        ),
        (
            "triplet_margin_loss p",
            lambda: nn.TripletMarginLoss(p=0)(f64(4, 3), f64(4, 3), f64(4, 3)),
            ValueError,
            ["TripletMarginLoss", "p", "0"],
        ),
        (
            "poisson_nll_loss reduction",
            lambda: F.poisson_nll_loss(f64(3), f64(3), reduction="avg"),
            ValueError,
            ["poisson_nll_loss", "reduction", "'avg'"],
        ),
        (
            "gaussian_nll_loss var shape",
            lambda: F.gaussian_nll_loss(f64(4, 3), f64(4, 3), f64(2, 2)),
            ValueError,
            ["gaussian_nll_loss", "var", "(2, 2)", "(4, 3)"],
        ),
        (
            "gaussian_nll_loss negative var",
            lambda: F.gaussian_nll_loss(f64(3), f64(3), -1.0),
            ValueError,
            ["gaussian_nll_loss", "var", "-1.0"],
        ),
        (
            "soft_margin_loss shapes",
            lambda: nn.SoftMarginLoss()(f64(3, 1), f64(3)),
            ValueError,
            ["soft_margin_loss", "input (3, 1)", "target (3,)"],
        ),
        (
            "multilabel_soft_margin_loss shapes",
            lambda: F.multilabel_soft_margin_loss(f64(2, 3), f64(2, 4)),
            ValueError,
            ["multilabel_soft_margin_loss", "(2, 3)", "(2, 4)"],
        ),
        (
            "LBFGS history_size",
            lambda: LBFGS([nn.Parameter(np.zeros(2))], history_size=0),
            ValueError,
            ["LBFGS", "history_size", "0"],
        ),
        (
            "LBFGS line search",
            lambda: LBFGS([nn.Parameter(np.zeros(2))], line_search_fn="wolfe"),
            ValueError,
            ["LBFGS", "line_search_fn", "'wolfe'"],
        ),
    ]


BAD_LAYER_INPUTS = _bad_layer_inputs()


@pytest.mark.parametrize(
    "thunk, error, fragments",
    [case[1:] for case in BAD_LAYER_INPUTS],
    ids=[case[0] for case in BAD_LAYER_INPUTS],
)
def test_bad_input_to_the_new_layers_is_refused_before_any_kernel_runs(
    no_kernel_may_run, thunk, error, fragments
):
    with pytest.raises(error) as info:
        thunk()
    message = str(info.value)
    missing = [f for f in fragments if f not in message]
    assert not missing, f"message {message!r} lacks {missing}"
