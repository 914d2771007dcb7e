"""Function transforms over firefly's autograd, kept small: ``grad`` as ``torch.func.grad``,
and ``vjp``, ``hvp``, ``jacobian`` and ``hessian`` as ``torch.autograd.functional``.

``hvp`` and ``hessian`` differentiate a gradient: they run through every op's differentiable
backward (``create_graph=True``). ``jacobian`` and ``hessian`` take one backward per output
element, for small inputs.
"""

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from firefly import autograd
from firefly.tensor import Tensor


def _tensors(method, inputs):
    values = inputs if isinstance(inputs, tuple) else (inputs,)
    for i, x in enumerate(values):
        if not isinstance(x, Tensor):
            raise TypeError(f"{method}: inputs[{i}] must be a Tensor, got {type(x).__name__}")
    return values


def _variables(inputs, create_graph):
    """Each input as a variable to differentiate against: a fresh leaf, or (create_graph, for
    an input already in a graph) a recorded copy that keeps the path to it."""
    return tuple(
        x.clone() if create_graph and x.requires_grad else x.detach().requires_grad_()
        for x in inputs
    )


def _scalar_output(method, out):
    if not isinstance(out, Tensor) or out.numel() != 1:
        raise RuntimeError(
            f"{method}: the function must return a Tensor of one element, got "
            f"{getattr(out, 'shape', type(out).__name__)}"
        )
    return out


def _filled(grads, variables):
    return tuple(
        Tensor(np.zeros(x.shape, x.dtype)) if g is None else g for g, x in zip(grads, variables)
    )


def _shaped_like(values, inputs):
    return values if isinstance(inputs, tuple) else values[0]


def grad(func: Callable[..., Tensor], argnums: int | tuple[int, ...] = 0) -> Callable[..., Any]:
    """``grad(f)(*args)``: the gradient of ``f`` (returning one element) with respect to
    ``args[argnums]`` (an int, or a tuple of ints for a tuple of gradients). Nested, as
    ``grad(grad(f))``, it gives higher derivatives."""

    @functools.wraps(func)
    def gradient(*args, **kwargs):
        positions = argnums if isinstance(argnums, tuple) else (argnums,)
        chosen = _tensors("grad", tuple(args[i] for i in positions))
        nested = autograd.is_grad_enabled() and any(x.requires_grad for x in chosen)
        variables = _variables(chosen, nested)
        args = list(args)
        for i, v in zip(positions, variables):
            args[i] = v
        out = _scalar_output("grad", func(*args, **kwargs))
        found = autograd.grad(out, variables, create_graph=nested, allow_unused=True)
        found = _filled(found, variables)
        return found if isinstance(argnums, tuple) else found[0]

    return gradient


def vjp(
    func: Callable[..., Tensor],
    inputs: Tensor | tuple[Tensor, ...],
    v: Tensor | None = None,
    create_graph: bool = False,
) -> tuple[Tensor, Any]:
    """``(func(*inputs), v^T J)``: the output and the vector-Jacobian product, as
    ``torch.autograd.functional.vjp``; ``v`` may be omitted for a one-element output."""
    variables = _variables(_tensors("vjp", inputs), create_graph)
    out = func(*variables)
    found = autograd.grad(out, variables, v, create_graph=create_graph, allow_unused=True)
    out = out if create_graph else out.detach()
    return out, _shaped_like(_filled(found, variables), inputs)


def hvp(
    func: Callable[..., Tensor],
    inputs: Tensor | tuple[Tensor, ...],
    v: Tensor | tuple[Tensor, ...],
    create_graph: bool = False,
) -> tuple[Tensor, Any]:
    """``(func(*inputs), H v)``: the Hessian of a one-element ``func`` times ``v``, by a
    second backward through the first (double backward), as
    ``torch.autograd.functional.hvp``."""
    variables = _variables(_tensors("hvp", inputs), create_graph)
    directions = _tensors("hvp", v)
    if len(directions) != len(variables):
        raise ValueError(f"hvp: {len(directions)} vectors given for {len(variables)} inputs")
    out = _scalar_output("hvp", func(*variables))
    grads = autograd.grad(out, variables, create_graph=True, allow_unused=True)
    product = None
    for g, d in zip(grads, directions):
        if g is not None:
            term = (g * d).sum()
            product = term if product is None else product + term
    if product is None or not product.requires_grad:
        found: tuple[Tensor | None, ...] = (None,) * len(variables)
    else:
        found = autograd.grad(product, variables, create_graph=create_graph, allow_unused=True)
    out = out if create_graph else out.detach()
    return out, _shaped_like(_filled(found, variables), inputs)


def _jacobian_rows(out, variables, create_graph):
    """For each variable, the Jacobian of ``out`` (shape out.shape + variable.shape): one
    backward per output element."""
    rows = [[] for _ in variables]
    flat_size = out.numel()
    for k in range(flat_size):
        seed = np.zeros(flat_size, out.dtype)
        seed[k] = 1.0
        found = autograd.grad(
            out,
            variables,
            Tensor(seed.reshape(out.shape)),
            retain_graph=True,
            create_graph=create_graph,
            allow_unused=True,
        )
        for row, g in zip(rows, _filled(found, variables)):
            row.append(g if create_graph else g.detach())
    from firefly import stack

    return tuple(
        stack(row).reshape(out.shape + x.shape)
        if row
        else Tensor(np.zeros(out.shape + x.shape, x.dtype))
        for row, x in zip(rows, variables)
    )


def jacobian(
    func: Callable[..., Tensor], inputs: Tensor | tuple[Tensor, ...], create_graph: bool = False
) -> Any:
    """The Jacobian of ``func`` (one Tensor output) at ``inputs``: out.shape + input.shape
    per input, as ``torch.autograd.functional.jacobian``."""
    variables = _variables(_tensors("jacobian", inputs), create_graph)
    out = func(*variables)
    if not isinstance(out, Tensor):
        raise TypeError(f"jacobian: the function must return a Tensor, got {type(out).__name__}")
    if not out.requires_grad:
        return _shaped_like(
            tuple(Tensor(np.zeros(out.shape + x.shape, x.dtype)) for x in variables), inputs
        )
    return _shaped_like(_jacobian_rows(out, variables, create_graph), inputs)


def hessian(
    func: Callable[..., Tensor], inputs: Tensor | tuple[Tensor, ...], create_graph: bool = False
) -> Any:
    """The Hessian of a one-element ``func`` at ``inputs``, as
    ``torch.autograd.functional.hessian``: for one input, a Tensor of shape
    input.shape + input.shape; for a tuple, H[i][j] for inputs i and j."""
    variables = _variables(_tensors("hessian", inputs), create_graph)
    out = _scalar_output("hessian", func(*variables))
    grads = _filled(autograd.grad(out, variables, create_graph=True, allow_unused=True), variables)
    blocks = tuple(
        _jacobian_rows(g, variables, create_graph)
        if g.requires_grad
        else tuple(Tensor(np.zeros(g.shape + x.shape, x.dtype)) for x in variables)
        for g in grads
    )
    return blocks if isinstance(inputs, tuple) else blocks[0][0]
