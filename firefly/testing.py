"""Checks that built-in and plugin ops alike must pass: ``gradcheck`` against central finite
differences in float64, and ``check_op``, the battery every registered op goes through."""
import numpy as np

from firefly import autograd
from firefly.ops import registry
from firefly.tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numeric gradients differ."""


def _as_callable(fn_or_op_name, attrs):
    if isinstance(fn_or_op_name, str):
        op = registry.get(fn_or_op_name)
        return lambda *ts: autograd.apply(op, *ts, **attrs), fn_or_op_name
    if attrs:
        raise TypeError("gradcheck: attrs= is only for op names; bind them in your function instead")
    return fn_or_op_name, getattr(fn_or_op_name, "__name__", repr(fn_or_op_name))


def gradcheck(fn_or_op_name, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, attrs=None, seed=0):
    """Compare the gradients of ``fn(*inputs)`` with central differences, in float64.

    ``fn_or_op_name`` is a function of Tensors or the name of a registered op (its keyword
    attributes go in ``attrs``). The output is reduced to a scalar with fixed random weights,
    so every output element takes part. Returns True, or raises ``GradcheckError`` showing the
    input and element where the analytic and numeric gradients differ most.
    """
    fn, label = _as_callable(fn_or_op_name, attrs or {})
    arrays = [np.array(x._data if isinstance(x, Tensor) else x, dtype=np.float64) for x in inputs]
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: {label} must return a Tensor, got {type(out).__name__}")
    weights = np.random.default_rng(seed).uniform(0.5, 1.5, size=out.shape)

    def objective():
        with autograd.no_grad():
            return float(np.sum(fn(*[Tensor(a) for a in arrays])._data * weights))

    out.backward(weights)
    for i, (a, t) in enumerate(zip(arrays, tensors)):
        analytic = np.zeros_like(a) if t.grad is None else t.grad._data
        numeric = np.empty_like(a)
        flat, num = a.reshape(-1), numeric.reshape(-1)
        for j in range(flat.size):
            keep = flat[j]
            flat[j] = keep + eps
            up = objective()
            flat[j] = keep - eps
            down = objective()
            flat[j] = keep
            num[j] = (up - down) / (2 * eps)
        bad = ~np.isclose(analytic, numeric, rtol=rtol, atol=atol)
        if bad.any():
            where = np.unravel_index(np.argmax(np.abs(analytic - numeric) * bad), a.shape)
            raise GradcheckError(
                f"gradcheck failed for {label}, input {i} (shape {a.shape}) at index {tuple(int(w) for w in where)}: "
                f"analytic {analytic[where]:.8g} vs numeric {numeric[where]:.8g}; "
                f"{int(bad.sum())} of {a.size} elements differ beyond atol={atol}, rtol={rtol}"
            )
    return True
