"""contiguous, t, new_*, equal/allclose/isclose: names programs reach for (issue 21)."""

import numpy as np
from idiom_twins import run_beside_torch

A = np.arange(6, dtype=np.float32).reshape(2, 3)


def program(torch, nn, data):
    a = torch.tensor(A)
    b = a.t().contiguous()
    ints = torch.tensor([1, 2, 3])
    return {
        "t": b,
        "T": a.T,
        "t_1d": torch.tensor([1.0, 2.0]).t(),
        "contiguous_is_self": a.contiguous() is a,
        "is_contiguous": a.is_contiguous(),
        "new_zeros": a.new_zeros(2, 2),
        "new_ones": a.new_ones((3,)),
        "new_full": a.new_full((2,), 7),
        "new_tensor": a.new_tensor([1, 2]),
        "new_tensor_dtype": ints.new_tensor([1.5], dtype=torch.float64),
        "new_zeros_int": ints.new_zeros(2),
        "new_grad": a.new_zeros(2, requires_grad=True).requires_grad,
        "equal": (torch.equal(a, a.clone()), a.equal(a + 1), torch.equal(a, a[:1])),
        "allclose": (
            torch.allclose(a, a + 1e-7),
            a.allclose(a + 1e-3),
            torch.allclose(a, a + 0.5, atol=0.6),
        ),
        "isclose": torch.isclose(a, a + torch.tensor([0.0, 1e-9, 1.0])),
        "isclose_nan": torch.isclose(
            torch.tensor([float("nan"), 1.0]), torch.tensor([float("nan"), 1.0]), equal_nan=True
        ),
        "element_size": (a.element_size(), a.double().element_size(), a.nelement()),
        "t_grad": torch.tensor(A, requires_grad=True).t().sum(0),
        "type": (a.type(), ints.type(), (a > 1).type()),
        "type_to": a.type(torch.float64),
        "type_name": ints.type("torch.DoubleTensor"),
    }


def test_tensor_surface_matches_torch():
    result = run_beside_torch(program)
    assert result["equal"] == [True, False, False]
    assert result["contiguous_is_self"] is True


def grad_through_t(torch, nn, data):
    w = torch.tensor(A.astype(np.float64), requires_grad=True)
    (w.t() * torch.arange(2, dtype=torch.float64)).sum().backward()
    return w.grad


def test_gradient_flows_through_t_like_torch():
    run_beside_torch(grad_through_t, rtol=1e-15)


def grad_modes(torch, nn, data):
    """The phase switch of torch's fine-tuning tutorial, and the other grad-mode managers."""
    x = torch.ones(2, requires_grad=True)
    seen = []
    for phase in ("train", "val"):
        with torch.set_grad_enabled(phase == "train"):
            seen.append((x * 2).requires_grad)
    with torch.no_grad():
        with torch.enable_grad():
            seen.append((x * 2).requires_grad)
    with torch.inference_mode():
        seen.append((x * 2).requires_grad)

    @torch.inference_mode()
    def predict():
        return (x * 2).requires_grad

    @torch.set_grad_enabled(False)
    def frozen():
        return torch.is_grad_enabled()

    seen += [predict(), torch.is_grad_enabled(), frozen(), torch.is_grad_enabled()]
    torch.set_grad_enabled(False)
    seen.append(torch.is_grad_enabled())
    torch.set_grad_enabled(True)
    seen += [torch.is_tensor(x), torch.is_tensor(2.0), torch.is_floating_point(x)]
    return seen


def test_grad_mode_switches_match_torch():
    result = run_beside_torch(grad_modes)
    assert result[:2] == [True, False]
