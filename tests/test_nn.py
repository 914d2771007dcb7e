"""firefly.nn: Parameter, Module registration and state, Linear, activations, containers,
MSELoss."""

import numpy as np
import pytest

import firefly
from firefly import nn
from firefly.nn.module import Module
from firefly.nn.parameter import Parameter
from firefly.tensor import Tensor


# ----------------------------------------------------------------------------- Parameter
def test_parameter_from_data_copies_and_keeps_float_dtype():
    source = np.arange(6, dtype=np.float64).reshape(2, 3)
    p = Parameter(source)
    assert p.dtype == np.float64 and p.shape == (2, 3)
    assert p.tensor.requires_grad and p.tensor.is_leaf
    p.numpy()[0, 0] = 100.0
    assert source[0, 0] == 0.0  # the caller's array is never written


def test_parameter_from_shape_is_float32_zeros_and_dtype_overrides():
    p = Parameter(shape=(2, 4))
    assert p.dtype == np.float32 and np.array_equal(p.numpy(), np.zeros((2, 4)))
    assert Parameter([1, 2], dtype=np.float64).dtype == np.float64
    assert Parameter([1, 2]).dtype == np.float32  # integer data becomes float32, as in Tensor


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({}, ValueError),
        ({"data": [1.0], "shape": (1,)}, ValueError),
        ({"shape": (2,), "dtype": np.int64}, TypeError),
        ({"data": [1.0], "dtype": np.float16}, TypeError),
    ],
)
def test_parameter_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error, match="Parameter"):
        Parameter(**kwargs)


def test_non_trainable_parameter_does_not_require_grad():
    p = Parameter(shape=(3,), trainable=False)
    assert not p.trainable and not p.tensor.requires_grad
    p.trainable = True
    assert p.tensor.requires_grad


def test_update_writes_in_place_casts_and_leaves_a_fresh_leaf():
    p = Parameter(np.ones((2, 2), dtype=np.float32))
    storage, tensor = p.numpy(), p.tensor
    view = storage.reshape(-1)
    new_value = p.tensor * Tensor(np.full((2, 2), 3.0))  # float64, and a graph result
    assert new_value.dtype == np.float64 and not new_value.is_leaf
    p.update(new_value)
    assert p.tensor is tensor and p.numpy() is storage  # same leaf, same array
    assert np.array_equal(view, np.full(4, 3.0))  # views of the storage see the new value
    assert p.dtype == np.float32 and p.tensor.is_leaf and p.tensor.requires_grad


def test_update_with_a_wrong_shape_names_both_shapes():
    p = Parameter(shape=(2, 3))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        p.update(np.zeros((3, 2)))
    assert np.array_equal(p.numpy(), np.zeros((2, 3)))


# ----------------------------------------------------------------------------- Module registration
class Block(Module):
    def __init__(self):
        super().__init__()
        self.scale = Parameter(shape=(1,))
        self.inner = nn.Linear(2, 2)
        self.offset = Parameter(shape=(1,), trainable=False)


class Net(Module):
    def __init__(self):
        super().__init__()
        self.z_first = Parameter(shape=(1,))
        self.block = Block()
        self.heads = [nn.Linear(2, 1), nn.Linear(2, 1)]
        self.a_last = Parameter(shape=(1,))
        self.note = "not a parameter"

    def forward(self, x):
        return self.block.inner(x)


EXPECTED_NAMES = [
    "z_first",
    "block.scale",
    "block.inner.weight",
    "block.inner.bias",
    "block.offset",
    "heads.0.weight",
    "heads.0.bias",
    "heads.1.weight",
    "heads.1.bias",
    "a_last",
]


def test_named_parameters_follow_definition_order_with_dotted_names():
    net = Net()
    assert [name for name, _ in net.named_parameters()] == EXPECTED_NAMES
    assert list(net.parameters()) == [p for _, p in net.named_parameters()]


def test_get_parameters_discards_non_trainable_by_default():
    net = Net()
    trainable = net.get_parameters()
    # Identity, not ``in``: Parameters are Tensors, whose == is elementwise (as in PyTorch).
    assert (
        all(p is not net.block.offset for p in trainable)
        and len(trainable) == len(EXPECTED_NAMES) - 1
    )
    everything = net.get_parameters(discard_non_trainable=False)
    assert [id(p) for p in everything] == [id(p) for p in net.parameters()]


def test_lists_are_read_live_and_reassignment_unregisters():
    net = Net()
    net.heads.append(nn.Linear(2, 1))
    assert "heads.2.weight" in dict(net.named_parameters())
    net.block = None
    assert not any(name.startswith("block.") for name, _ in net.named_parameters())
    del net.a_last
    assert "a_last" not in dict(net.named_parameters())


def test_a_shared_parameter_is_listed_once():
    net = Net()
    net.alias = net.z_first
    assert [p is net.z_first for p in net.parameters()].count(
        True
    ) == 1  # identity: == is elementwise


def test_a_list_mixing_parameters_and_other_values_is_refused():
    net = Net()
    with pytest.raises(TypeError, match="separate attribute"):
        net.mixed = [Parameter(shape=(1,)), 3]


def test_assigning_before_init_explains_the_fix():
    class Forgetful(Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Forgetful()


def test_call_runs_forward_and_a_module_without_forward_says_so():
    net = Net()
    x = np.ones((3, 2), dtype=np.float32)
    assert np.array_equal(net(x).numpy(), net.forward(x).numpy())
    with pytest.raises(NotImplementedError, match="Block must define forward"):
        Block()(x)


def test_train_eval_and_zero_grad_reach_every_submodule():
    net = Net()
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules()) and len(list(net.modules())) == 5
    net(np.ones((1, 2), dtype=np.float32)).sum().backward()
    assert net.block.inner.weight.grad is not None
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_repr_is_a_tree_like_pytorch():
    model = nn.Sequential(
        nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 1, bias=False), nn.Sigmoid())
    )
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=3, out_features=4, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Linear(in_features=4, out_features=1, bias=False)\n"
        "    (1): Sigmoid()\n"
        "  )\n"
        ")"
    )


# ----------------------------------------------------------------------------- state_dict
def test_state_dict_round_trips_into_a_fresh_model():
    firefly.manual_seed(1)
    source = Net()
    state = source.state_dict()
    assert list(state) == EXPECTED_NAMES
    firefly.manual_seed(2)
    target = Net()
    x = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    assert not np.array_equal(source(x).numpy(), target(x).numpy())
    storage = target.block.inner.weight.numpy()
    assert target.load_state_dict(state) == ([], [])
    assert np.array_equal(source(x).numpy(), target(x).numpy())
    assert target.block.inner.weight.numpy() is storage  # loaded in place


def test_state_dict_holds_copies():
    net = Net()
    state = net.state_dict()
    net.z_first.update(np.array([5.0]))
    assert state["z_first"][0] == 0.0


def test_load_state_dict_reports_missing_and_unexpected_keys():
    net = Net()
    state = net.state_dict()
    del state["a_last"]
    state["extra.weight"] = np.zeros(1, dtype=np.float32)
    with pytest.raises(
        ValueError, match=r"missing keys \['a_last'\], unexpected keys \['extra.weight'\]"
    ):
        net.load_state_dict(state)
    state["z_first"] = np.array([7.0], dtype=np.float32)
    result = net.load_state_dict(state, strict=False)
    assert result.missing_keys == ["a_last"] and result.unexpected_keys == ["extra.weight"]
    assert net.z_first.numpy()[0] == 7.0


def test_load_state_dict_mismatches_name_the_key_and_write_nothing():
    net = Net()
    state = net.state_dict()
    state["z_first"] = np.array([9.0], dtype=np.float32)
    state["heads.1.bias"] = np.zeros((2,), dtype=np.float32)
    with pytest.raises(
        ValueError, match=r"'heads.1.bias' has shape \(2,\) in the state but \(1,\)"
    ):
        net.load_state_dict(state)
    assert net.z_first.numpy()[0] == 0.0  # every value is checked before any is written
    state["heads.1.bias"] = np.zeros((1,), dtype=np.float64)
    with pytest.raises(
        TypeError, match="'heads.1.bias' has dtype float64 in the state but float32"
    ):
        net.load_state_dict(state)


# ----------------------------------------------------------------------------- Linear
def test_linear_layout_dtype_and_pytorch_init_bounds():
    firefly.manual_seed(0)
    layer = nn.Linear(400, 300)
    bound = 1.0 / np.sqrt(400)
    assert layer.weight.shape == (300, 400) and layer.bias.shape == (300,)  # torch's layout
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    for p in (layer.weight, layer.bias):
        assert np.abs(p.numpy()).max() <= bound and np.abs(p.numpy()).max() > 0.95 * bound
    assert abs(layer.weight.numpy().mean()) < 0.01 * bound  # centred: U(-b, b), not U(0, b)
    assert nn.Linear(3, 2, dtype=np.float64).weight.dtype == np.float64


def test_manual_seed_makes_init_reproducible():
    firefly.manual_seed(42)
    first = nn.Linear(5, 3).state_dict()
    firefly.manual_seed(42)
    second = nn.Linear(5, 3).state_dict()
    third = nn.Linear(5, 3).state_dict()
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert not np.array_equal(second["weight"], third["weight"])


def test_linear_forward_and_backward_match_numpy():
    layer = nn.Linear(3, 2, dtype=np.float64)
    x = Tensor(np.random.default_rng(0).normal(size=(5, 3)), requires_grad=True)
    y = layer(x)
    W, b = layer.weight.numpy(), layer.bias.numpy()
    assert W.shape == (2, 3)
    np.testing.assert_allclose(y.numpy(), x.numpy() @ W.T + b, rtol=1e-12)
    upstream = np.random.default_rng(1).normal(size=(5, 2))
    y.backward(upstream)
    np.testing.assert_allclose(layer.weight.grad.numpy(), upstream.T @ x.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.bias.grad.numpy(), upstream.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), upstream @ W, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_layout", ["C", "F"])
@pytest.mark.parametrize(
    "n, k, m",
    [(5, 4, 3), (1, 4, 3), (5, 4, 1), (1, 4, 1), (5, 4, 0), (5, 1, 3), (5, 0, 3)],
    ids=["matrix", "one-row", "one-column", "one-by-one", "no-outputs", "k1", "no-depth"],
)
def test_linear_kernels_match_numpy_in_every_blas_branch(n, k, m, weight_layout, dtype):
    # The kernels' products go through dot_into, one CBLAS gemm call for every shape (OpenBLAS
    # hands a single row or column to its gemv), reading a transposed (F-layout) operand
    # through BLAS's transpose flag; the shapes cover those paths and the empty products.
    from firefly.kernels.linalg import linear_backward, linear_forward

    rng = np.random.default_rng(n * 100 + k * 10 + m)
    x, bias = rng.normal(size=(n, k)).astype(dtype), rng.normal(size=m).astype(dtype)
    weight = rng.normal(size=(m, k)).astype(dtype)
    if weight_layout == "F":
        weight = np.asfortranarray(weight)
    out = np.full((n, m), np.nan, dtype)
    linear_forward(x, weight, bias, out)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, x @ weight.T + bias, rtol=rtol, atol=rtol)
    grad = rng.normal(size=(n, m)).astype(dtype)
    dx, dweight = np.full((n, k), np.nan, dtype), np.full((m, k), np.nan, dtype)
    dbias = np.full(m, np.nan, dtype)
    linear_backward(grad, x, weight, True, dx, dweight, dbias)
    np.testing.assert_allclose(dx, grad @ weight, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dweight, grad.T @ x, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(dbias, grad.sum(axis=0), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("need_dx", [True, False])
@pytest.mark.parametrize("weight_layout", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shared_linear_kernels_match_float64_numpy(dtype, weight_layout, need_dx, threads):
    # float32 products of SHARED_LINEAR_MIN multiply-adds or more run in row blocks on Numba's
    # threads through the micro-kernel (on the weight transposed first), float64 through BLAS;
    # (64, 192) @ (192, 176) is just above it, with odd columns past a multiple of 16.
    import numba

    from firefly.kernels.linalg import SHARED_LINEAR_MIN, linear_backward, linear_forward

    n, k, m = 64, 192, 176
    assert n * k * m >= SHARED_LINEAR_MIN
    rng = np.random.default_rng(threads)
    x, bias = rng.normal(size=(n, k)).astype(dtype), rng.normal(size=m).astype(dtype)
    weight = rng.normal(size=(m, k)).astype(dtype)
    if weight_layout == "F":
        weight = np.asfortranarray(weight)
    grad = rng.normal(size=(n, m)).astype(dtype)
    x64, w64, g64 = (a.astype(np.float64) for a in (x, weight, grad))
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        out = np.full((n, m), np.nan, dtype)
        linear_forward(x, weight, bias, out)
        dx, dweight = np.full((n, k), np.nan, dtype), np.full((m, k), np.nan, dtype)
        dbias = np.full(m, np.nan, dtype)
        linear_backward(grad, x, weight, need_dx, dx, dweight, dbias)
    finally:
        numba.set_num_threads(before)
    rtol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, x64 @ w64.T + bias, rtol=rtol, atol=rtol * k)
    np.testing.assert_allclose(dweight, g64.T @ x64, rtol=rtol, atol=rtol * n)
    np.testing.assert_allclose(dbias, g64.sum(axis=0), rtol=rtol, atol=rtol * n)
    if need_dx:
        np.testing.assert_allclose(dx, g64 @ w64, rtol=rtol, atol=rtol * m)
    else:
        assert np.isnan(dx).all()  # left alone


def test_shared_linear_kernels_refuse_operands_that_do_not_fit():
    from firefly.kernels.linalg import linear_backward, linear_forward

    def ones(*shape):
        return np.ones(shape, np.float32)

    x, weight, bias = ones(64, 192), ones(176, 192), ones(176)
    with pytest.raises(ValueError, match="do not fit"):
        linear_forward(x, weight, bias, ones(64, 175))
    with pytest.raises(ValueError, match="does not fit"):
        linear_forward(x, weight, ones(175), ones(64, 176))
    grad = ones(64, 176)
    with pytest.raises(ValueError, match="do not fit"):
        linear_backward(grad, x, weight, True, ones(64, 192), ones(176, 191), bias)
    with pytest.raises(ValueError, match="does not fit"):
        linear_backward(grad, x, weight, True, ones(64, 191), ones(176, 192), bias)


def test_linear_kernel_refuses_an_output_of_the_wrong_shape():
    from firefly.kernels.linalg import linear_forward

    x, weight, bias = np.ones((5, 4)), np.ones((3, 4)), np.ones(3)
    with pytest.raises(ValueError, match="do not fit"):
        linear_forward(x, weight, bias, np.empty((5, 2)))


def test_linear_without_bias():
    layer = nn.Linear(3, 2, bias=False)
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]
    x = np.ones((4, 3), dtype=np.float32)
    np.testing.assert_allclose(layer(x).numpy(), x @ layer.weight.numpy().T, rtol=1e-6)


@pytest.mark.parametrize(
    "args, error",
    [((0, 2), ValueError), ((2, -1), ValueError), ((2.5, 2), TypeError), ((True, 2), TypeError)],
)
def test_linear_rejects_bad_sizes(args, error):
    with pytest.raises(error, match="Linear"):
        nn.Linear(*args)


# -------------------------------------------------------------------------- activations, containers
def test_activations_match_numpy():
    x = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(nn.ReLU()(x).numpy(), np.maximum(x, 0))
    np.testing.assert_allclose(nn.Sigmoid()(x).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(nn.Tanh()(x).numpy(), np.tanh(x), rtol=1e-6)


def test_sequential_runs_in_order_and_indexes_like_a_list():
    first, second = nn.Linear(3, 4), nn.Linear(4, 2)
    model = nn.Sequential(first, nn.Tanh(), second)
    x = np.ones((2, 3), dtype=np.float32)
    expected = second(nn.Tanh()(first(x)))
    np.testing.assert_allclose(model(x).numpy(), expected.numpy())
    assert (
        len(model) == 3
        and model[0] is first
        and model[-1] is second
        and list(model)[1].__class__ is nn.Tanh
    )
    head = model[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is first
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    with pytest.raises(IndexError, match="out of range"):
        model[3]
    with pytest.raises(TypeError, match="expected a Module"):
        nn.Sequential(first, np.tanh)


def test_module_list_registers_what_it_holds():
    class Tower(Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])

    tower = Tower()
    tower.layers.append(nn.Linear(2, 1))
    assert [n for n, _ in tower.named_parameters()][-2:] == ["layers.2.weight", "layers.2.bias"]
    tower.layers[0] = nn.Linear(2, 2, bias=False)
    assert len(tower.get_parameters()) == 5


# ----------------------------------------------------------------------------- MSELoss
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_numpy_and_differentiates(reduction):
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    pred_t = Tensor(pred, requires_grad=True)
    loss = nn.MSELoss(reduction=reduction)(pred_t, Tensor(target))
    squared = (pred - target) ** 2
    expected = {"mean": squared.mean(), "sum": squared.sum(), "none": squared}[reduction]
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-12)
    loss.backward(np.ones(loss.shape))
    scale = 1 / pred.size if reduction == "mean" else 1.0
    np.testing.assert_allclose(pred_t.grad.numpy(), 2 * (pred - target) * scale, rtol=1e-12)


def test_mse_loss_refuses_shapes_that_would_broadcast():
    with pytest.raises(
        ValueError, match=r"MSELoss: input has shape \(4, 1\) but target has shape \(4,\)"
    ):
        nn.MSELoss()(Tensor(np.zeros((4, 1))), Tensor(np.zeros(4)))
    with pytest.raises(ValueError, match="reduction must be one of"):
        nn.MSELoss(reduction="average")
