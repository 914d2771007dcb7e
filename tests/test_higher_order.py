"""Higher-order gradients and the rest of torch.autograd: ``create_graph``, ``autograd.grad``,
hooks, ``retain_grad``, ``autograd.Function``, ``firefly.func``, and whole programs that need
gradients of gradients (WGAN-GP, a PINN, HVPs, MAML), each against torch in float64."""

import numba
import numpy as np
import pytest

import firefly
import firefly.nn.functional as F
from firefly import Tensor, autograd, func
from firefly.ops import Op, register, unregister
from firefly.testing import GradcheckError, OpCheckError, check_op, gradgradcheck

torch = pytest.importorskip(
    "torch", reason="these tests compare against torch: pip install torch==2.13.0"
)


@pytest.fixture(autouse=True)
def torch_float64():
    """torch builds float64 tensors here, as firefly does from float64 arrays; the default is
    restored so that later modules see torch's own."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def close(a, b, tol):
    a = a.numpy() if isinstance(a, Tensor) else np.asarray(a)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- the engine
def test_grad_returns_tensors_and_accumulates_into_no_grad():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (g,) = autograd.grad((x * x).sum(), x)
    assert isinstance(g, Tensor) and not g.requires_grad
    close(g, [2.0, 4.0], 0)
    assert x.grad is None


def test_create_graph_gradients_carry_a_graph_to_any_order():
    x = Tensor(np.array([0.5, -1.0]), requires_grad=True)
    y = (x * x * x * x).sum()
    (g1,) = autograd.grad(y, x, create_graph=True)
    (g2,) = autograd.grad(g1.sum(), x, create_graph=True)
    (g3,) = autograd.grad(g2.sum(), x, create_graph=True)
    (g4,) = autograd.grad(g3.sum(), x)
    close(g1, 4 * x.numpy() ** 3, 1e-15)
    close(g2, 12 * x.numpy() ** 2, 1e-15)
    close(g3, 24 * x.numpy(), 1e-15)
    close(g4, [24.0, 24.0], 1e-15)
    assert g1.requires_grad and g1.grad_fn is not None and not g4.requires_grad


def test_retain_graph_defaults_to_create_graph():
    x = Tensor(np.array([0.3]), requires_grad=True)
    y = (x.exp() * x).sum()
    autograd.grad(y, x, create_graph=True)
    autograd.grad(y, x)  # the graph was kept by create_graph; this walk frees it
    with pytest.raises(RuntimeError, match="already freed"):
        autograd.grad(y, x)


def test_backward_create_graph_leaves_a_differentiable_grad():
    x = Tensor(np.array([0.4, 0.9]), requires_grad=True)
    (x.sin() * x).sum().backward(create_graph=True)
    first = x.grad
    assert first.requires_grad
    (second,) = autograd.grad(first.sum(), x)
    xt = torch.tensor([0.4, 0.9], requires_grad=True)
    (xt.sin() * xt).sum().backward(create_graph=True)
    (second_t,) = torch.autograd.grad(xt.grad.sum(), xt)
    close(first.detach(), xt.grad, 1e-15)
    close(second, second_t, 1e-15)


def test_grad_of_several_outputs_and_inputs_with_allow_unused():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = Tensor(np.array([3.0]), requires_grad=True)
    unused = Tensor(np.array([5.0]), requires_grad=True)
    gx, gy, gu = autograd.grad([(x * y).sum(), (y * y).sum()], [x, y, unused], allow_unused=True)
    close(gx, [3.0, 3.0], 0)
    close(gy, [3.0 + 6.0], 0)
    assert gu is None


def test_grad_with_respect_to_an_intermediate_stops_there():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * 3.0
    (gh,) = autograd.grad((h * h).sum(), h)
    close(gh, 2 * h.numpy(), 0)
    assert x.grad is None


def test_backward_inputs_accumulates_only_into_those():
    x = Tensor(np.array([1.0]), requires_grad=True)
    w = Tensor(np.array([2.0]), requires_grad=True)
    (x * w).sum().backward(inputs=[w])
    assert x.grad is None
    close(w.grad, [1.0], 0)


def test_is_leaf_grad_fn_and_requires_grad_on_non_leaves_as_torch():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x * 2.0
    assert x.is_leaf and not y.is_leaf and x.grad_fn is None
    assert y.grad_fn.name() == "MulBackward" and "mul" in repr(y.grad_fn)
    assert y.grad_fn.next_functions == ((None, 0), (None, 0))
    assert (y.exp()).grad_fn.next_functions[0][0] is y.grad_fn
    y.requires_grad_()  # already requires grad: allowed, as torch
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)


# ----------------------------------------------------------------------------- hooks
def test_register_hook_scales_a_gradient_and_is_removable_as_torch():
    def run(lib, tensor):
        x = tensor([0.5, -1.5], requires_grad=True)
        h = x * x
        handle = h.register_hook(lambda g: g * 3.0)
        (h.sin()).sum().backward()
        first = x.grad.clone() if lib == "torch" else x.grad.numpy().copy()
        handle.remove()
        x.grad = None
        h = x * x
        (h.sin()).sum().backward()
        return first, x.grad

    ours = run("firefly", lambda v, **k: Tensor(np.array(v), **k))
    theirs = run("torch", lambda v, **k: torch.tensor(v, **k))
    close(ours[0], theirs[0], 1e-15)
    close(ours[1], theirs[1], 1e-15)
    assert not np.allclose(ours[0], ours[1].numpy())


def test_a_hook_on_a_leaf_sees_the_summed_gradient_and_replaces_it():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(g.numpy().copy()) or g * 0.5)
    (x * 3.0 + x * x).sum().backward()
    close(seen[0], 3.0 + 2 * x.numpy(), 0)
    close(x.grad, 0.5 * (3.0 + 2 * x.numpy()), 0)


def test_retain_grad_keeps_a_non_leaf_gradient_as_torch():
    x = Tensor(np.array([0.2, 0.7]), requires_grad=True)
    h = x.tanh()
    h.retain_grad()
    assert h.retains_grad
    (h * h).sum().backward()
    xt = torch.tensor([0.2, 0.7], requires_grad=True)
    ht = xt.tanh()
    ht.retain_grad()
    (ht * ht).sum().backward()
    close(h.grad, ht.grad, 1e-15)
    close(x.grad, xt.grad, 1e-15)


def test_module_hooks_as_torch():
    torch_layer = torch.nn.Linear(3, 2)
    layer = firefly.nn.Linear(3, 2, dtype=np.float64)
    copy_linear(layer, torch_layer)
    records = {}
    for name, module in (("firefly", layer), ("torch", torch_layer)):
        seen = records.setdefault(name, [])
        module.register_forward_pre_hook(lambda m, args: (args[0] * 2.0,))
        module.register_forward_hook(lambda m, args, out: out + 1.0)
        module.register_full_backward_hook(
            lambda m, gin, gout, seen=seen: seen.append((gin[0] * 1.0, gout[0] * 1.0))
        )
    x = Tensor(np.array([[0.1, 0.2, 0.3]]), requires_grad=True)
    xt = torch.tensor([[0.1, 0.2, 0.3]], requires_grad=True)
    (layer(x) ** 2).sum().backward()
    (torch_layer(xt) ** 2).sum().backward()
    close(x.grad, xt.grad, 1e-14)
    (gin, gout), (gin_t, gout_t) = records["firefly"][0], records["torch"][0]
    close(gin, gin_t, 1e-14)
    close(gout, gout_t, 1e-14)


# ----------------------------------------------------------------------------- autograd.Function
def cube_function(base):
    """The same custom Function source for torch and firefly: only the base class differs."""

    class Cube(base):
        @staticmethod
        def forward(ctx, x, scale):
            ctx.save_for_backward(x)
            ctx.scale = scale
            return x * x * x * scale

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            assert ctx.needs_input_grad == (True, False)
            return grad * 3.0 * x * x * ctx.scale, None

    return Cube


def test_a_torch_custom_function_ports_by_changing_the_import():
    Cube, CubeT = cube_function(autograd.Function), cube_function(torch.autograd.Function)
    x = Tensor(np.array([0.3, -0.8]), requires_grad=True)
    xt = torch.tensor([0.3, -0.8], requires_grad=True)
    y, yt = Cube.apply(x.sin(), 2.0), CubeT.apply(xt.sin(), 2.0)
    close(y, yt, 1e-15)
    (g,) = autograd.grad(y.sum(), x, create_graph=True)
    (gt,) = torch.autograd.grad(yt.sum(), xt, create_graph=True)
    close(g, gt, 1e-15)
    (h,) = autograd.grad(g.sum(), x)  # double backward: Cube.backward is made of firefly ops
    (ht,) = torch.autograd.grad(gt.sum(), xt)
    close(h, ht, 1e-14)
    y = Cube.apply(x, 2.0)
    y.sum().backward()
    close(x.grad, 6.0 * x.numpy() ** 2, 1e-15)


def linear_function(base):
    class LinearFn(base):
        @staticmethod
        def forward(ctx, x, weight, bias=None):
            ctx.save_for_backward(x, weight)
            out = x.mm(weight.t())
            return out if bias is None else out + bias

        @staticmethod
        def backward(ctx, grad):
            x, weight = ctx.saved_tensors
            return grad.mm(weight), grad.t().mm(x), None  # the bias's None, given or not

    return LinearFn


def test_a_function_called_without_its_defaulted_input_may_return_a_trailing_none():
    """torch drops extra trailing None gradients; a non-None extra is still an error
    (tests/test_op_input_errors.py)."""
    Mine, Theirs = linear_function(autograd.Function), linear_function(torch.autograd.Function)
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3)), rng.standard_normal((4, 3))
    xm, wm = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    (Mine.apply(xm, wm) ** 2).sum().backward()
    (Theirs.apply(xt, wt) ** 2).sum().backward()
    close(xm.grad, xt.grad, 1e-14)
    close(wm.grad, wt.grad, 1e-14)


def test_a_function_with_a_saved_output_and_a_non_differentiable_output():
    class ExpAndSign(autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            sign = x.sign()
            ctx.mark_non_differentiable(sign)
            ctx.save_for_backward(y)
            return y, sign

        @staticmethod
        def backward(ctx, grad_y, grad_sign):
            (y,) = ctx.saved_tensors
            return grad_y * y

    x = Tensor(np.array([0.5, -0.25]), requires_grad=True)
    y, sign = ExpAndSign.apply(x)
    assert not sign.requires_grad and y.requires_grad
    (g,) = autograd.grad(y.sum(), x, create_graph=True)
    (h,) = autograd.grad(g.sum(), x)  # through the saved output
    close(g, np.exp(x.numpy()), 1e-15)
    close(h, np.exp(x.numpy()), 1e-15)


# ----------------------------------------------------------------------------- firefly.func
def mlp_loss(lib):
    rng = np.random.default_rng(7)
    data = rng.normal(size=(6, 3))
    target = rng.normal(size=(6, 1))
    as_tensor = Tensor if lib == "firefly" else torch.tensor

    def loss(w1, b1, w2, b2):
        h = (as_tensor(data) @ w1 + b1).tanh()
        out = (h @ w2 + b2).sigmoid()
        return ((out - as_tensor(target)) ** 2).mean()

    return loss


def mlp_parameters(seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s) * 0.7 for s in ((3, 5), (5,), (5, 1), (1,))]


def test_hvp_of_an_mlp_loss_matches_torch():
    params, vectors = mlp_parameters(1), mlp_parameters(2)
    out, hv = func.hvp(
        mlp_loss("firefly"), tuple(Tensor(p) for p in params), tuple(Tensor(v) for v in vectors)
    )
    out_t, hv_t = torch.autograd.functional.hvp(
        mlp_loss("torch"),
        tuple(torch.tensor(p) for p in params),
        tuple(torch.tensor(v) for v in vectors),
    )
    close(out, out_t, 1e-14)
    for a, b in zip(hv, hv_t):
        close(a, b, 1e-10)


def test_grad_vjp_jacobian_and_hessian_match_torch():
    rng = np.random.default_rng(3)
    x, v, w = rng.normal(size=3), rng.normal(size=2), rng.normal(size=(3, 2))
    vector_fn = lambda lib: lambda t: ((t @ lib(w)).sin() * 2.0).exp()  # noqa: E731
    scalar_fn = lambda lib: lambda t: ((t @ lib(w)).tanh() ** 2).sum() * t.sum()  # noqa: E731
    close(
        func.jacobian(vector_fn(Tensor), Tensor(x)),
        torch.autograd.functional.jacobian(vector_fn(torch.tensor), torch.tensor(x)),
        1e-13,
    )
    close(
        func.hessian(scalar_fn(Tensor), Tensor(x)),
        torch.autograd.functional.hessian(scalar_fn(torch.tensor), torch.tensor(x)),
        1e-13,
    )
    _, vjp = func.vjp(vector_fn(Tensor), Tensor(x), Tensor(v))
    _, vjp_t = torch.autograd.functional.vjp(
        vector_fn(torch.tensor), torch.tensor(x), torch.tensor(v)
    )
    close(vjp, vjp_t, 1e-13)
    nested = func.grad(lambda t: func.grad(scalar_fn(Tensor))(t).sum())(Tensor(x))
    nested_t = torch.func.grad(lambda t: torch.func.grad(scalar_fn(torch.tensor))(t).sum())
    close(nested, nested_t(torch.tensor(x)), 1e-13)


@pytest.mark.parametrize(
    "chain",
    [
        lambda x: x.tanh().tanh() * x,
        lambda x: (x.sigmoid() * 3.0).exp(),
        lambda x: (x.exp() + 1.0).log() * x.sigmoid(),
        lambda x: (x * x + 1.0).log().tanh(),
    ],
)
def test_third_derivatives_of_elementwise_chains_match_torch(chain):
    values = np.array([-1.3, -0.2, 0.4, 1.7])
    x, xt = Tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    g, gt = chain(x), chain(xt)
    for _ in range(3):
        (g,) = autograd.grad(g.sum(), x, create_graph=True)
        (gt,) = torch.autograd.grad(gt.sum(), xt, create_graph=True)
    close(g, gt, 1e-12)


# ----------------------------------------------------------------------------- programs vs torch
def copy_linear(layer, torch_layer):
    """torch's weight and bias into a firefly Linear."""
    weight = torch_layer.weight.detach().numpy()
    np.copyto(layer.weight.numpy(), weight)
    np.copyto(layer.bias.numpy(), torch_layer.bias.detach().numpy())


def mlp_pair(sizes, activation, seed):
    torch.manual_seed(seed)
    torch_layers = [torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    layers = [firefly.nn.Linear(a, b, dtype=np.float64) for a, b in zip(sizes[:-1], sizes[1:])]
    for layer, torch_layer in zip(layers, torch_layers):
        copy_linear(layer, torch_layer)

    def run(x, lib):
        chosen = layers if lib == "firefly" else torch_layers
        for i, layer in enumerate(chosen):
            x = layer(x)
            if i < len(chosen) - 1:
                x = activation(x, i)
        return x

    return layers, torch_layers, run


def parameters_of(layers):
    return [p for layer in layers for p in (layer.weight, layer.bias)]


def test_wgan_gp_training_matches_torch():
    rng = np.random.default_rng(0)

    def leaky(x, layer):
        if isinstance(x, Tensor):
            return F.leaky_relu(x, 0.2)
        return torch.nn.functional.leaky_relu(x, 0.2)

    critic, critic_t, run_critic = mlp_pair((2, 16, 16, 1), leaky, 1)
    generator, generator_t, run_generator = mlp_pair((2, 16, 2), lambda x, i: x.tanh(), 2)
    opt_d = firefly.optim.Adam(parameters_of(critic), lr=1e-3, betas=(0.5, 0.9))
    opt_g = firefly.optim.Adam(parameters_of(generator), lr=1e-3, betas=(0.5, 0.9))
    opt_d_t = torch.optim.Adam(parameters_of(critic_t), lr=1e-3, betas=(0.5, 0.9))
    opt_g_t = torch.optim.Adam(parameters_of(generator_t), lr=1e-3, betas=(0.5, 0.9))

    def penalty(lib, real, fake, eps):
        run = run_critic
        if lib == "firefly":
            mixed = Tensor(eps * real + (1 - eps) * fake.numpy(), requires_grad=True)
            (g,) = autograd.grad(run(mixed, lib).sum(), mixed, create_graph=True)
        else:
            mixed = (
                torch.tensor(eps) * torch.tensor(real) + (1 - torch.tensor(eps)) * fake
            ).requires_grad_()
            (g,) = torch.autograd.grad(run(mixed, lib).sum(), mixed, create_graph=True)
        return (((g * g).sum(1) + 1e-12).sqrt() - 1.0).pow(2.0).mean()

    losses, losses_t = [], []
    for step in range(20):
        angle = rng.uniform(0, 2 * np.pi, size=8)
        real = np.stack([np.cos(angle), np.sin(angle)], 1) * 2.0
        noise, eps = rng.normal(size=(8, 2)), rng.uniform(size=(8, 1))
        for lib, opt_d_, opt_g_, tensor in (
            ("firefly", opt_d, opt_g, Tensor),
            ("torch", opt_d_t, opt_g_t, torch.tensor),
        ):
            fake = run_generator(tensor(noise), lib).detach()
            gp = penalty(lib, real, fake, eps)
            if step == 0:
                params = parameters_of(critic if lib == "firefly" else critic_t)
                # The first bias reaches the penalty only through leaky_relu's piecewise
                # constant slope: torch gives it zeros, firefly's graph does not hold it.
                grads = (autograd if lib == "firefly" else torch.autograd).grad(
                    gp, params, retain_graph=True, allow_unused=True
                )
                grads = [np.zeros(p.shape) if g is None else g for g, p in zip(grads, params)]
                if lib == "firefly":
                    gp_grads = grads
                else:
                    for (gw, gb), (gw_t, gb_t) in zip(
                        zip(gp_grads[::2], gp_grads[1::2]),
                        zip(grads[::2], grads[1::2]),
                    ):
                        close(np.asarray(gw), gw_t, 1e-10)
                        close(gb, gb_t, 1e-10)
            loss_d = run_critic(fake, lib).mean() - run_critic(tensor(real), lib).mean() + 10.0 * gp
            opt_d_.zero_grad()
            loss_d.backward()
            opt_d_.step()
            loss_g = -run_critic(run_generator(tensor(noise), lib), lib).mean()
            opt_g_.zero_grad()
            loss_g.backward()
            opt_g_.step()
            (losses if lib == "firefly" else losses_t).append((loss_d.item(), loss_g.item()))
    np.testing.assert_allclose(losses, losses_t, rtol=1e-10, atol=1e-10)
    assert np.ptp(np.array(losses)[:, 0]) > 1e-3  # the losses moved: 20 real steps


def laplacian_residual(lib, net, points, forcing):
    """-(u_xx + u_yy) - f at the points, through two nested grad(create_graph=True)."""
    grad = autograd.grad if lib == "firefly" else torch.autograd.grad
    u = net(points)
    (du,) = grad(u.sum(), points, create_graph=True)
    (d_ux,) = grad(du[:, 0].sum(), points, create_graph=True)
    (d_uy,) = grad(du[:, 1].sum(), points, create_graph=True)
    return -(d_ux[:, 0] + d_uy[:, 1]) - forcing


def test_pinn_on_poisson_matches_torch_for_50_adam_steps():
    rng = np.random.default_rng(5)
    inside = rng.uniform(0, 1, size=(24, 2))
    t = rng.uniform(0, 1, size=12)
    boundary = np.concatenate(
        [np.stack([t, np.zeros(12)], 1), np.stack([np.ones(12), t], 1)]
        + [np.stack([t, np.ones(12)], 1), np.stack([np.zeros(12), t], 1)]
    )
    forcing = 2 * np.pi**2 * np.sin(np.pi * inside[:, 0]) * np.sin(np.pi * inside[:, 1])
    activations = lambda x, i: x.tanh() if i == 0 else x.sin()  # noqa: E731
    layers, torch_layers, run = mlp_pair((2, 16, 16, 1), activations, 3)
    series = {}
    for lib, tensor, adam, params in (
        ("firefly", Tensor, firefly.optim.Adam, parameters_of(layers)),
        ("torch", torch.tensor, torch.optim.Adam, parameters_of(torch_layers)),
    ):
        opt = adam(params, lr=1e-2)
        net = lambda x, lib=lib: run(x, lib)  # noqa: E731
        for _ in range(50):
            points = tensor(inside.copy(), requires_grad=True)
            residual = laplacian_residual(lib, net, points, tensor(forcing))
            edge = net(tensor(boundary))
            loss = (residual * residual).mean() + (edge * edge).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            series.setdefault(lib, []).append(loss.item())
    np.testing.assert_allclose(series["firefly"], series["torch"], rtol=1e-9, atol=1e-9)
    assert series["firefly"][-1] < 0.5 * series["firefly"][0]


def test_second_order_maml_on_sine_regression_matches_torch():
    rng = np.random.default_rng(11)
    tasks = []
    for _ in range(3):
        amplitude, phase = rng.uniform(0.5, 2.0), rng.uniform(0, np.pi)
        xs, xq = rng.uniform(-3, 3, size=(10, 1)), rng.uniform(-3, 3, size=(10, 1))
        tasks.append((xs, amplitude * np.sin(xs + phase), xq, amplitude * np.sin(xq + phase)))
    init = [rng.normal(size=s) * 0.5 for s in ((1, 20), (20,), (20, 1), (1,))]

    def model(x, w):
        return (x @ w[0] + w[1]).tanh() @ w[2] + w[3]

    results = {}
    for lib, tensor, grad in (
        ("firefly", Tensor, autograd.grad),
        ("torch", torch.tensor, torch.autograd.grad),
    ):
        weights = [tensor(w.copy(), requires_grad=True) for w in init]
        losses = []
        for _ in range(4):
            meta_loss = 0.0
            for xs, ys, xq, yq in tasks:
                support = ((model(tensor(xs), weights) - tensor(ys)) ** 2).mean()
                grads = grad(support, weights, create_graph=True)
                adapted = [w - 0.1 * g for w, g in zip(weights, grads)]
                meta_loss = meta_loss + ((model(tensor(xq), adapted) - tensor(yq)) ** 2).mean()
            meta_grads = grad(meta_loss, weights)
            weights = [
                tensor((w.detach() - 0.05 * g).numpy().copy(), requires_grad=True)
                for w, g in zip(weights, meta_grads)
            ]
            losses.append(meta_loss.item())
        results[lib] = (losses, [w.detach().numpy() for w in weights])
    np.testing.assert_allclose(results["firefly"][0], results["torch"][0], rtol=1e-10, atol=1e-10)
    for a, b in zip(results["firefly"][1], results["torch"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- second-order checks
@pytest.mark.parametrize("name", firefly.ops.names())
def test_gradgradcheck_passes_for_every_op(name):
    op = firefly.ops.get(name)
    arrays, attrs = op.sample_inputs(np.random.default_rng(0), (2, 3), np.float64)
    assert gradgradcheck(name, *arrays, attrs=attrs)


@numba.njit(cache=False)
def _copy_kernel(src, dst):
    for i in range(src.size):
        dst[i] = src[i]


def _make_square(name, derivative=None, backward_graph=None):
    class Square(Op):
        forward_kernel = backward_kernel = _copy_kernel

        @classmethod
        def forward(cls, ctx, x):
            out = np.empty_like(x)
            cls.forward_kernel(x.reshape(-1), out.reshape(-1))
            ctx.save_for_backward(x)
            return out * out

        @classmethod
        def backward(cls, ctx, grad):
            (x,) = ctx.saved_tensors
            dx = np.empty_like(x)
            cls.backward_kernel(x.reshape(-1), dx.reshape(-1))
            return 2.0 * dx * grad

    Square.name = name
    if backward_graph is not None:
        Square.backward_graph = staticmethod(backward_graph)
    return register(Square)


@pytest.fixture
def square_op():
    made = []

    def make(**kwargs):
        made.append(_make_square(f"test_square_{len(made)}", **kwargs))
        return made[-1]

    yield make
    for op in made:
        unregister(op.name)


def test_check_op_catches_a_wrong_second_order_rule(square_op):
    op = square_op(backward_graph=lambda ctx, grad, inputs, out: grad * inputs[0] * 3.0)
    with pytest.raises(GradcheckError, match="create_graph=True differs"):
        check_op(op.name, shapes=[(3,)], dtypes=(np.float64,))


def test_check_op_proves_the_differentiable_backward_runs_only_recorded_ops(square_op):
    def sneaky(ctx, grad, inputs, out):  # right values, but a kernel run outside any op
        copy = np.empty(inputs[0].shape)
        ctx.op.backward_kernel(inputs[0].numpy().reshape(-1), copy.reshape(-1))
        return grad * inputs[0] * 2.0

    op = square_op(backward_graph=sneaky)
    with pytest.raises(OpCheckError, match="differentiable backward ran backward_kernel"):
        check_op(op.name, shapes=[(3,)], dtypes=(np.float64,))
    good = square_op(backward_graph=lambda ctx, grad, inputs, out: grad * inputs[0] * 2.0)
    assert check_op(good.name, shapes=[(3,), (2, 2)])


def test_an_op_without_a_second_order_rule_fails_check_op_unless_told(square_op):
    op = square_op()
    with pytest.raises(OpCheckError, match="no second-order rule"):
        check_op(op.name, shapes=[(3,)])
    assert check_op(op.name, shapes=[(3,)], second_order=False)


def test_second_order_through_a_slice_with_an_ellipsis():
    # getitem's differentiable backward once added a second Ellipsis to an index with one.
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    assert gradgradcheck(lambda t: (t[..., 1:3] ** 3).sum(), x)
