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


class OpCheckError(AssertionError):
    """An op failed the ``check_op`` battery; the message says which check, on which inputs."""


# Forward tolerances per dtype, against a reference computed in float64 on the same values.
# float32 leaves room for a few roundings per element (sums and products of short rows).
FORWARD_TOLERANCES = {
    np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
    np.dtype(np.float64): dict(rtol=1e-9, atol=1e-12),
}


def default_shapes(rng):
    """0-d, one-element, vector, matrix and batched shapes with random small sizes."""
    n, m, b = (int(d) for d in rng.integers(1, 5, size=3))
    return [(), (1,), (n,), (m, n), (b, m, n)]


def _describe_inputs(arrays, attrs):
    parts = ", ".join(f"{a.shape} {a.dtype}" for a in arrays)
    return f"inputs [{parts}] with attrs {attrs!r}"


def _sample(op, shape, dtype, seed):
    # A fresh generator per dtype, seeded alike, gives the same values in float32 and float64.
    arrays, attrs = op.sample_inputs(np.random.default_rng(seed), shape, dtype)
    arrays = tuple(np.asarray(a, order="C") for a in arrays)  # ascontiguousarray makes 0-d 1-d
    if len(arrays) != op.arity or any(a.dtype != np.dtype(dtype) for a in arrays):
        raise OpCheckError(
            f"check_op('{op.name}'): sample_inputs must return {op.arity} array(s) of dtype "
            f"{np.dtype(dtype)}, got {_describe_inputs(arrays, attrs)}"
        )
    return arrays, attrs


def _run(op, arrays, attrs, what):
    """apply() the op to leaf tensors that require grad; any exception becomes OpCheckError."""
    leaves = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    try:
        return leaves, autograd.apply(op, *leaves, **attrs)
    except Exception as exc:
        raise OpCheckError(
            f"check_op('{op.name}'): {what} raised {type(exc).__name__}: {exc} "
            f"on {_describe_inputs(arrays, attrs)}"
        ) from exc


def _check_forward(op, arrays, attrs, dtype, reference):
    leaves, out = _run(op, arrays, attrs, "forward")
    where = _describe_inputs(arrays, attrs)
    if not isinstance(out, Tensor) or out.dtype != np.dtype(dtype):
        raise OpCheckError(
            f"check_op('{op.name}'): output must be a {np.dtype(dtype)} Tensor for {where}, "
            f"got {type(out).__name__} {getattr(out, 'dtype', '')}"
        )
    if reference is not None:
        expected = np.asarray(reference(tuple(a.astype(np.float64) for a in arrays), attrs))
        if expected.shape != out.shape:
            raise OpCheckError(
                f"check_op('{op.name}'): output shape {out.shape} differs from the reference's "
                f"{expected.shape} for {where}"
            )
        tol = FORWARD_TOLERANCES[np.dtype(dtype)]
        bad = ~np.isclose(out.numpy(), expected, equal_nan=True, **tol)
        if bad.any():
            i = np.unravel_index(np.argmax(bad), bad.shape)
            raise OpCheckError(
                f"check_op('{op.name}'): forward differs from the reference at index "
                f"{tuple(int(k) for k in i)}: {float(out.numpy()[i]):.8g} vs {float(expected[i]):.8g} "
                f"({int(bad.sum())} of {bad.size} elements beyond {tol}) for {where}"
            )
    # Backward in this dtype must give each leaf a gradient of its own shape and dtype.
    try:
        out.backward(np.ones(out.shape, dtype=out.dtype))
    except Exception as exc:
        raise OpCheckError(
            f"check_op('{op.name}'): backward raised {type(exc).__name__}: {exc} for {where}"
        ) from exc
    for i, (leaf, a) in enumerate(zip(leaves, arrays)):
        if leaf.grad is not None and (leaf.grad.shape != a.shape or leaf.grad.dtype != a.dtype):
            raise OpCheckError(
                f"check_op('{op.name}'): gradient of input {i} is {leaf.grad.shape} "
                f"{leaf.grad.dtype}, expected {a.shape} {a.dtype}, for {where}"
            )
        if not np.array_equal(leaf.numpy(), a, equal_nan=True):
            raise OpCheckError(f"check_op('{op.name}'): forward or backward modified input {i} in place for {where}")


def _check_rejects(op, arrays, attrs):
    """Each input position given an int64 Tensor, and a string, must raise a TypeError naming the op."""
    wrong_inputs = [
        ("an int64 Tensor", lambda a: Tensor(np.zeros(a.shape, dtype=np.int64), dtype=np.int64)),
        ("a string", lambda a: "not a tensor"),
    ]
    for position in range(op.arity):
        for label, make in wrong_inputs:
            inputs = [Tensor(a) for a in arrays]
            inputs[position] = make(arrays[position])
            try:
                autograd.apply(op, *inputs, **attrs)
            except TypeError as exc:
                if op.name not in str(exc):
                    raise OpCheckError(
                        f"check_op('{op.name}'): the TypeError for {label} as input {position} "
                        f"does not name the op: {exc}"
                    ) from exc
                continue
            except Exception as exc:
                raise OpCheckError(
                    f"check_op('{op.name}'): {label} as input {position} raised "
                    f"{type(exc).__name__} ({exc}), expected TypeError"
                ) from exc
            raise OpCheckError(f"check_op('{op.name}'): {label} as input {position} was accepted, expected TypeError")


def check_op(name, reference=None, shapes=None, dtypes=(np.float32, np.float64), seed=0):
    """Run the battery every registered op must pass, built-in or plugin. Returns True.

    For each shape (default: ``default_shapes``, 0-d to batched), the op's ``sample_inputs``
    gives arrays and attrs, and the battery checks:

    - in each of ``dtypes``: the output keeps the dtype; it matches ``reference(arrays, attrs)``
      (a NumPy function, evaluated in float64 on the same values) within ``FORWARD_TOLERANCES``;
      backward gives every input a gradient of its shape and dtype; inputs are not modified;
    - ``gradcheck`` in float64 against central differences;
    - an int64 Tensor or a string in any input position raises a TypeError naming the op.

    Failures raise ``OpCheckError`` (an AssertionError) or ``GradcheckError``, saying which
    check failed on which inputs.
    """
    op = registry.get(name)
    shapes = default_shapes(np.random.default_rng(seed)) if shapes is None else [tuple(s) for s in shapes]
    for k, shape in enumerate(shapes):
        sample_seed = (seed, k)
        for dtype in dtypes:
            arrays, attrs = _sample(op, shape, dtype, sample_seed)
            _check_forward(op, arrays, attrs, dtype, reference)
        arrays, attrs = _sample(op, shape, np.float64, sample_seed)
        try:
            gradcheck(name, *arrays, attrs=attrs, seed=seed)
        except GradcheckError as exc:
            raise GradcheckError(f"{exc} (check_op on {_describe_inputs(arrays, attrs)})") from None
        if k == 0:
            _check_rejects(op, arrays, attrs)
    return True
