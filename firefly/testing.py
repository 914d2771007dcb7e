"""Checks that built-in and plugin ops alike must pass: ``gradcheck`` against central finite
differences in float64, and ``check_op``, the battery every registered op goes through."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from firefly import autograd
from firefly import ops as ops_package
from firefly.kernels._jit import is_compiled_kernel, is_helper
from firefly.ops import registry
from firefly.ops.base import declared_kernels
from firefly.tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numeric gradients differ."""


def _as_callable(
    fn_or_op_name: str | Callable[..., Tensor], attrs: dict[str, Any]
) -> tuple[Callable[..., Tensor], str]:
    if isinstance(fn_or_op_name, str):
        op = registry.get(fn_or_op_name)
        return lambda *ts: autograd.apply(op, *ts, **attrs), fn_or_op_name
    if attrs:
        raise TypeError(
            "gradcheck: attrs= is only for op names; bind them in your function instead"
        )
    return fn_or_op_name, getattr(fn_or_op_name, "__name__", repr(fn_or_op_name))


def gradcheck(
    fn_or_op_name: str | Callable[..., Tensor],
    *inputs: Tensor | np.ndarray,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    attrs: dict[str, Any] | None = None,
    seed: int = 0,
) -> bool:
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

    def objective() -> float:
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
                f"gradcheck failed for {label}, input {i} (shape {a.shape}) "
                f"at index {tuple(int(w) for w in where)}: "
                f"analytic {analytic[where]:.8g} vs numeric {numeric[where]:.8g}; "
                f"{int(bad.sum())} of {a.size} elements differ beyond atol={atol}, rtol={rtol}"
            )
    return True


def _first_order(
    fn: Callable[..., Tensor], arrays: list[np.ndarray], weights: np.ndarray
) -> list[np.ndarray]:
    """The gradients of ``sum(fn(*arrays) * weights)`` by the plain backward (fused kernels)."""
    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    fn(*tensors).backward(weights)
    return [np.zeros_like(a) if t.grad is None else t.grad.numpy() for a, t in zip(arrays, tensors)]


def gradgradcheck(
    fn_or_op_name: str | Callable[..., Tensor],
    *inputs: Tensor | np.ndarray,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    paths_tol: float = 1e-12,
    attrs: dict[str, Any] | None = None,
    seed: int = 0,
) -> bool:
    """Compare the second derivatives of ``fn(*inputs)`` with central differences, in float64.

    With fixed random output weights ``w`` and directions ``v`` (one per input), the gradients
    ``g = d(sum(fn(x) * w))/dx`` are taken with ``create_graph=True`` and must equal the plain
    backward's (fused kernels) within ``paths_tol``; then ``s = sum(v * g)`` is differentiated
    again, with respect to each input and to ``w``, and compared with central differences of
    ``s`` computed by the plain backward. Returns True, or raises ``GradcheckError`` naming the
    check, the input and the element.
    """
    fn, label = _as_callable(fn_or_op_name, attrs or {})
    arrays = [np.array(x._data if isinstance(x, Tensor) else x, dtype=np.float64) for x in inputs]
    rng = np.random.default_rng(seed)
    with autograd.no_grad():
        shape = fn(*[Tensor(a) for a in arrays]).shape
    weights = rng.uniform(0.5, 1.5, size=shape)
    directions = [rng.uniform(-1.0, 1.0, size=a.shape) for a in arrays]

    tensors = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    weight_tensor = Tensor(weights.copy(), requires_grad=True)
    grads = autograd.grad(
        fn(*tensors), tensors, weight_tensor, create_graph=True, allow_unused=True
    )
    plain = _first_order(fn, arrays, weights)
    for i, (g, expected) in enumerate(zip(grads, plain)):
        got = np.zeros_like(expected) if g is None else g.numpy()
        if not np.allclose(got, expected, rtol=paths_tol, atol=paths_tol):
            where = np.unravel_index(np.argmax(np.abs(got - expected)), got.shape)
            raise GradcheckError(
                f"gradgradcheck failed for {label}, input {i} (shape {got.shape}): the gradient "
                f"with create_graph=True differs from the plain backward's at index "
                f"{tuple(int(k) for k in where)}: {got[where]:.17g} vs {expected[where]:.17g}"
            )
    terms = [(g * Tensor(v)).sum() for g, v in zip(grads, directions) if g is not None]
    variables = tensors + [weight_tensor]
    analytic = [np.zeros_like(t.numpy()) for t in variables]
    if terms:
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        if total.requires_grad:
            found = autograd.grad(total, variables, allow_unused=True)
            analytic = [a if g is None else g.numpy() for a, g in zip(analytic, found)]

    def objective(values: list[np.ndarray], w: np.ndarray) -> float:
        return sum(float(np.sum(g * v)) for g, v in zip(_first_order(fn, values, w), directions))

    for i, a in enumerate(arrays + [weights]):
        numeric = np.empty_like(a)
        flat, num = a.reshape(-1), numeric.reshape(-1)
        for j in range(flat.size):
            keep = flat[j]
            flat[j] = keep + eps
            up = objective(arrays, weights)
            flat[j] = keep - eps
            down = objective(arrays, weights)
            flat[j] = keep
            num[j] = (up - down) / (2 * eps)
        bad = ~np.isclose(analytic[i], numeric, rtol=rtol, atol=atol)
        if bad.any():
            what = "the output weights" if i == len(arrays) else f"input {i}"
            where = np.unravel_index(np.argmax(np.abs(analytic[i] - numeric) * bad), a.shape)
            raise GradcheckError(
                f"gradgradcheck failed for {label}, with respect to {what} (shape {a.shape}) at "
                f"index {tuple(int(w) for w in where)}: analytic {analytic[i][where]:.8g} vs "
                f"numeric {numeric[where]:.8g}; {int(bad.sum())} of {a.size} elements differ "
                f"beyond atol={atol}, rtol={rtol}"
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


def default_shapes(rng: np.random.Generator) -> list[tuple[int, ...]]:
    """0-d, one-element, vector, matrix and batched shapes with random small sizes, and a 4-d
    shape, on which ``sample_inputs`` reaches the rarer paths (the ops' own helpers in
    ``firefly.ops.samples`` broadcast in alternating runs, reduce non-adjacent axes...)."""
    n, m, b = (int(d) for d in rng.integers(1, 5, size=3))
    return [(), (1,), (n,), (m, n), (b, m, n), (2, m + 1, 2, n + 1)]


# ----------------------------------------------------------------------------- kernel declarations
DIRECTIONS = ("forward", "backward")
# The differentiable backward (create_graph=True) runs ops, never a kernel itself; while it
# applies an op, the watch is "inside" that op and records nothing.
GRAPH, INSIDE = "backward_graph", "inside an op"


class _KernelWatch:
    """While active, records every kernel an op runs, and in which direction.

    The op's declared kernels are replaced, on its class, by recording wrappers; every other
    compiled kernel in reach (the globals of firefly's kernel and op modules and of the op's own
    module) by a tripwire that records an undeclared call, then runs the kernel, so that the
    battery can report it. Compiled helpers (scalar math, inlined helpers) are left alone:
    kernels call them, and replacing one would break a kernel compiled meanwhile.
    """

    def __init__(self, op):
        self.op = op
        self.direction = None
        self.ran = set()  # (attr, index) of declared kernels that ran
        self.problems = []  # messages: undeclared kernels, kernels run in the wrong direction
        self._restore = []

    def _record(self, attr, index):
        def record():
            direction = self.direction
            if direction == INSIDE:
                return
            if direction == GRAPH:
                self.problems.append(
                    f"the differentiable backward ran {attr}[{index}] itself; it must be made "
                    "of recorded ops"
                )
                return
            if direction is not None and attr != f"{direction}_kernel":
                self.problems.append(
                    f"{direction} ran {attr}[{index}], which {attr} declares but "
                    f"{direction}_kernel does not"
                )
            self.ran.add((attr, index))

        return record

    def _tripwire(self, label):
        def record():
            if self.direction == INSIDE:
                return
            self.problems.append(
                f"{self.direction or 'the op'} ran {label}, which neither "
                "forward_kernel nor backward_kernel declares"
            )

        return record

    def _set(self, owner, attr, value):
        had = attr in vars(owner)
        old = vars(owner).get(attr)
        setattr(owner, attr, value)
        self._restore.append(lambda: setattr(owner, attr, old) if had else delattr(owner, attr))

    def __enter__(self):
        op = self.op
        for attr in ("forward_kernel", "backward_kernel"):
            value = getattr(op, attr)
            spies = tuple(
                _Spy(k, self._record(attr, i)) for i, k in enumerate(declared_kernels(value))
            )
            self._set(op, attr, spies if isinstance(value, tuple) else spies[0])
        for direction in DIRECTIONS:
            self._set(
                op, direction, staticmethod(self._in_direction(direction, getattr(op, direction)))
            )
        for rule in ("backward_graph", "decomposition"):
            if getattr(op, rule) is not None:
                self._set(op, rule, staticmethod(self._in_direction(GRAPH, getattr(op, rule))))
        engine_apply = autograd.apply

        def apply_inside(*args, **kwargs):
            if self.direction not in (GRAPH, INSIDE):
                return engine_apply(*args, **kwargs)
            outer, self.direction = self.direction, INSIDE
            try:
                return engine_apply(*args, **kwargs)
            finally:
                self.direction = outer

        self._set_global(autograd, "apply", apply_inside)
        self._set_global(ops_package, "_engine_apply", apply_inside)
        modules = [
            m
            for name, m in list(sys.modules.items())
            if name.startswith(("firefly.kernels", "firefly.ops")) or name == op.__module__
        ]
        for module in modules:
            for name, value in list(vars(module).items()):
                if is_compiled_kernel(value) and not is_helper(value):
                    self._set_global(
                        module, name, _Spy(value, self._tripwire(f"{module.__name__}.{name}"))
                    )
        return self

    def _set_global(self, module, name, value):
        old = getattr(module, name)
        setattr(module, name, value)
        self._restore.append(lambda: setattr(module, name, old))

    def _in_direction(self, direction, method):
        def run(*args, **kwargs):
            if self.direction == INSIDE:  # the op applied inside a differentiable backward
                return method(*args, **kwargs)
            outer, self.direction = self.direction, direction
            try:
                return method(*args, **kwargs)
            finally:
                self.direction = outer

        return run

    def __exit__(self, *exc):
        for undo in reversed(self._restore):
            undo()
        self._restore.clear()

    def never_ran(self):
        """Declared kernels that did not run: 'forward_kernel[1]', ..."""
        return [
            f"{attr}[{i}]"
            for attr in ("forward_kernel", "backward_kernel")
            for i in range(len(declared_kernels(getattr(self.op, attr))))
            if (attr, i) not in self.ran
        ]


class _Spy:
    """Calls ``kernel`` after ``record()``."""

    def __init__(self, kernel, record):
        self.kernel, self.record = kernel, record

    def __call__(self, *args):
        self.record()
        return self.kernel(*args)


@contextlib.contextmanager
def _watching(op):
    with _KernelWatch(op) as watch:
        yield watch
    if watch.problems:
        raise OpCheckError(f"check_op('{op.name}'): " + "; ".join(dict.fromkeys(watch.problems)))


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
                f"{tuple(int(k) for k in i)}: "
                f"{float(out.numpy()[i]):.8g} vs {float(expected[i]):.8g} "
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
            raise OpCheckError(
                f"check_op('{op.name}'): forward or backward modified input {i} in place "
                f"for {where}"
            )


def _check_rejects(op, arrays, attrs):
    """Each input position given an int64 Tensor, and a string, must raise a TypeError naming
    the op."""
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
            raise OpCheckError(
                f"check_op('{op.name}'): {label} as input {position} was accepted, "
                "expected TypeError"
            )


def check_op(
    name: str,
    reference: Callable[[tuple[np.ndarray, ...], dict[str, Any]], ArrayLike] | None = None,
    shapes: Sequence[tuple[int, ...]] | None = None,
    dtypes: Sequence[DTypeLike] = (np.float32, np.float64),
    seed: int = 0,
    every_kernel_runs: bool = True,
    second_order: bool = True,
) -> bool:
    """Run the battery every registered op must pass, built-in or plugin. Returns True.

    For each shape (default: ``default_shapes``, 0-d to 4-d), the op's ``sample_inputs``
    gives arrays and attrs, and the battery checks:

    - forward and backward run only the kernels the op declares, each in its own direction
      (``forward_kernel`` in forward, ``backward_kernel`` in backward), and, with
      ``every_kernel_runs``, each declared kernel runs at least once over all the shapes;

    - in each of ``dtypes``: the output keeps the dtype; it matches ``reference(arrays, attrs)``
      (a NumPy function, evaluated in float64 on the same values) within ``FORWARD_TOLERANCES``;
      backward gives every input a gradient of its shape and dtype; inputs are not modified;
    - ``gradcheck`` in float64 against central differences;
    - with ``second_order``: ``gradgradcheck`` in float64, which also checks the gradients of
      the differentiable backward (``create_graph=True``) against the fused backward's within
      1e-12; that backward must run no kernel itself, only recorded ops;
    - an int64 Tensor or a string in any input position raises a TypeError naming the op.

    Failures raise ``OpCheckError`` (an AssertionError) or ``GradcheckError``, saying which
    check failed on which inputs.
    """
    op = registry.get(name)
    if second_order and op.backward_graph is None and op.decomposition is None:
        raise OpCheckError(
            f"check_op('{name}'): the op has no second-order rule (backward_graph or "
            "decomposition), so create_graph=True cannot go through it; give it one, or pass "
            "second_order=False"
        )
    shapes = (
        default_shapes(np.random.default_rng(seed))
        if shapes is None
        else [tuple(s) for s in shapes]
    )
    with _watching(op) as watch:
        for k, shape in enumerate(shapes):
            sample_seed = (seed, k)
            for dtype in dtypes:
                arrays, attrs = _sample(op, shape, dtype, sample_seed)
                _check_forward(op, arrays, attrs, dtype, reference)
            arrays, attrs = _sample(op, shape, np.float64, sample_seed)
            try:
                gradcheck(name, *arrays, attrs=attrs, seed=seed)
            except GradcheckError as exc:
                raise GradcheckError(
                    f"{exc} (check_op on {_describe_inputs(arrays, attrs)})"
                ) from None
            if second_order:
                try:
                    gradgradcheck(name, *arrays, attrs=attrs, seed=seed)
                except GradcheckError as exc:
                    raise GradcheckError(
                        f"{exc} (check_op on {_describe_inputs(arrays, attrs)})"
                    ) from None
            if k == 0:
                _check_rejects(op, arrays, attrs)
    missing = watch.never_ran()
    if every_kernel_runs and missing:
        raise OpCheckError(
            f"check_op('{name}'): declared kernels that never ran on shapes {shapes}: "
            f"{', '.join(missing)}; remove them from the declaration, or make sample_inputs "
            "reach the inputs that need them"
        )
    return True
