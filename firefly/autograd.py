"""The autograd engine: running an op and recording it, and walking the graph backwards.

``apply`` turns user inputs into arrays of one float dtype, lets the op validate and compute,
and links the result to its inputs. ``backward`` visits the recorded graph once, in reverse
topological order, calling each op's backward and accumulating gradients with ``+``.
"""

from __future__ import annotations

import functools
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from firefly import ops
from firefly.dtypes import FLOAT_DTYPES, promote
from firefly.hooks import RemovableHandle
from firefly.ops.base import Context, Op

# The Tensor class, bound by firefly.tensor when it defines it (tensor.py imports this module,
# so this module cannot import tensor.py without an import cycle). The type checker imports it.
if TYPE_CHECKING:
    from firefly.tensor import Tensor
else:
    Tensor = None

# A function that no_grad and its kin decorate, returned with the same signature.
F = TypeVar("F", bound=Callable[..., Any])


def bind_tensor_type(cls: type[Tensor]) -> None:
    """Called once by ``firefly.tensor``: the class that ops return and gradients are made of."""
    global Tensor
    Tensor = cls  # type: ignore[misc]  # the run-time binding of the class imported above


class _GradMode(threading.local):
    enabled = True  # a class default: each thread starts with recording on


_grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    return _grad_mode.enabled


class no_grad:
    """Context manager (and decorator) under which ops record no graph."""

    def __enter__(self) -> None:
        self._previous = _grad_mode.enabled
        _grad_mode.enabled = False

    def __exit__(self, *exc: object) -> None:
        _grad_mode.enabled = self._previous

    def __call__(self, fn: F) -> F:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with no_grad():
                return fn(*args, **kwargs)

        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        wrapper.__wrapped__ = fn  # type: ignore[attr-defined]  # as functools.wraps sets it
        return cast(F, wrapper)


class _GradSwitch(no_grad):
    """A context manager and decorator that sets recording to ``_mode`` inside it (None:
    leaves it as it is); torch's enable_grad, inference_mode and set_grad_enabled."""

    _mode: bool | None = None

    def __enter__(self) -> None:
        self._previous = _grad_mode.enabled
        if self._mode is not None:
            _grad_mode.enabled = self._mode

    def __call__(self, fn: F) -> F:
        mode = self._mode

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            previous = _grad_mode.enabled
            if mode is not None:
                _grad_mode.enabled = mode
            try:
                return fn(*args, **kwargs)
            finally:
                _grad_mode.enabled = previous

        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        wrapper.__wrapped__ = fn  # type: ignore[attr-defined]  # as functools.wraps sets it
        return cast(F, wrapper)


class enable_grad(_GradSwitch):
    """Record inside it, even within ``no_grad`` (torch's ``enable_grad``)."""

    _mode = True


class inference_mode(_GradSwitch):
    """``inference_mode(mode=True)``: as ``no_grad`` when ``mode`` (firefly has no separate
    inference tensors); ``inference_mode(False)`` changes nothing."""

    def __init__(self, mode: bool = True) -> None:
        self._mode = False if mode else None


class set_grad_enabled(_GradSwitch):
    """``set_grad_enabled(mode)``: recording on or off, as torch's. Called, it sets the mode at
    once; as a context manager or decorator, the previous mode returns at the end."""

    def __init__(self, mode: bool) -> None:
        self._mode = bool(mode)
        self._previous = _grad_mode.enabled
        _grad_mode.enabled = self._mode

    def __enter__(self) -> None:
        pass  # already set by the constructor, as in torch

    def __call__(self, fn: F) -> F:
        _grad_mode.enabled = self._previous  # decorating must not change the mode now
        return super().__call__(fn)


# ----------------------------------------------------------------------------- in-place writes
# PyTorch keeps a version counter per storage; firefly keeps one clock for the process. Every
# in-place write ticks it and records, per base array written, the tick of its latest write.
# A node remembers the tick it was recorded at, so backward has nothing to check (one integer
# comparison) unless some array was written after the node ran.
_clock = 0
_written: dict[
    int, tuple[weakref.ref[np.ndarray], int]
] = {}  # id(base array) -> (weak reference to it, tick of its latest in-place write)


def _base(array: np.ndarray) -> np.ndarray:
    while array.base is not None and isinstance(array.base, np.ndarray):
        array = array.base
    return array


def mark_modified(array: np.ndarray) -> None:
    """Record that ``array`` (and every array sharing its base) was just written in place.

    Everything that writes into a tensor's existing storage calls this: the in-place methods,
    ``Parameter.update``, and anything else that mutates an array a recorded op may have saved.
    """
    global _clock
    _clock += 1
    base = _base(array)
    key = id(base)
    entry = _written.get(key)
    if entry is None or entry[0]() is not base:

        def forget(_: object, key: int = key) -> None:
            _written.pop(key, None)

        entry = (weakref.ref(base, forget), _clock)
    _written[key] = (entry[0], _clock)


def _saved_arrays(node: Node) -> Iterator[np.ndarray]:
    for value in node.__dict__.values():
        if isinstance(value, np.ndarray):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from (v for v in value if isinstance(v, np.ndarray))


def _check_saved_unmodified(node: Node) -> None:
    """Raise if an array ``node`` saved for backward was written in place after it was recorded."""
    for array in _saved_arrays(node):
        base = _base(array)
        entry = _written.get(id(base))
        if entry is not None and entry[0]() is base and entry[1] > node.tick:
            raise RuntimeError(
                f"backward: one of the arrays that '{node.op.name}' saved for its backward (shape "
                f"{array.shape}, {array.dtype}) was modified by an in-place operation after "
                f"'{node.op.name}' ran, so its gradient would be wrong. Modify a clone() "
                "instead, or do the in-place update after backward()"
            )


class Node(Context):
    """One recorded op application. As in PyTorch, the node is also the op's ``ctx``: it holds
    what forward saved, plus the tensors the op read (None for inputs that need no gradient)
    and the dtype it computed in."""

    def __init__(
        self,
        op: type[Op],
        needs_input_grad: tuple[bool, ...],
        inputs: tuple[Tensor | None, ...],
        dtype: np.dtype | None,
        args: tuple[Any, ...],
        attrs: dict[str, Any],
    ) -> None:  # Context's fields set inline: runs per op
        self.op, self.needs_input_grad, self.inputs, self.dtype = (
            op,
            needs_input_grad,
            inputs,
            dtype,
        )
        # What the op was applied to, for a backward run as ops (create_graph=True): the
        # inputs that need no gradient as constants, and the attributes.
        self.applied_to, self.applied_attrs = args, attrs
        self.saved_tensors = ()
        self.freed = False
        self.tick = _clock

    def name(self) -> str:
        """``'MulBackward'`` for the op ``mul``: torch's ``grad_fn.name()``."""
        return "".join(p[:1].upper() + p[1:] for p in self.op.name.split("_")) + "Backward"

    @property
    def next_functions(self) -> tuple[tuple[Node | None, int], ...]:
        """One ``(grad_fn, 0)`` pair per input, as torch's: None for an input that is a leaf
        or needs no gradient."""
        return tuple((x._node if x is not None else None, 0) for x in self.inputs)

    def __repr__(self) -> str:
        return f"<{self.name()} of op '{self.op.name}'>"

    def release(self) -> None:
        """Drop everything forward saved (arrays on ``ctx`` included), keeping the graph's shape."""
        self.__dict__ = {
            "op": self.op,
            "inputs": self.inputs,
            "needs_input_grad": self.needs_input_grad,
            "tick": self.tick,
            "saved_tensors": None,
            "dtype": None,
            "applied_to": None,
            "applied_attrs": None,
            "freed": True,
        }


def _input_arrays(op, args):
    """The arrays an op computes on, the dtype they share, and which inputs require grad.

    Python numbers take the other inputs' dtype (NumPy's rule for scalars); float32 mixed with
    float64 promotes to float64; anything else that is not a float Tensor is refused.
    """
    arrays, needs, dtype = [], [], None
    for x in args:
        if isinstance(x, Tensor):
            a = x._data
            needs.append(x._requires_grad)
        elif isinstance(x, (bool, int, float)):
            arrays.append(x)
            needs.append(False)
            continue
        else:
            try:
                a = Tensor(x)._data
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"{op.name}: unsupported input of type {type(x).__name__}: {exc}"
                ) from None
            needs.append(False)
        if a.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{op.name}: inputs must be float32 or float64, got {a.dtype} "
                f"(shape {a.shape}); convert with Tensor(x, dtype=np.float32)"
            )
        dtype = promote(dtype, a.dtype)
        arrays.append(a)
    dtype = dtype or FLOAT_DTYPES[0]
    for i, a in enumerate(arrays):
        if a.__class__ is not np.ndarray:
            arrays[i] = np.array(a, dtype=dtype)
        elif a.dtype is not dtype:
            arrays[i] = a.astype(dtype)
    return arrays, needs, dtype


_FLOAT32, _FLOAT64 = FLOAT_DTYPES
# Python numbers as 0-d arrays, per dtype, so that ``t * 0.5`` in a loop converts its number
# once. Zeros and NaNs are not kept: -0.0 == 0.0 would find the other sign's array, and each
# NaN is a key of its own. The dict is emptied when it fills. The arrays stay writeable,
# although only kernels' inputs ever see them: Numba compiles a read-only array as another
# type, which would compile every binary kernel twice and slow its dispatch.
_constants: dict[np.dtype, dict[float, np.ndarray]] = {_FLOAT32: {}, _FLOAT64: {}}
_MAX_CONSTANTS = 1024


def _constant(x, dtype):
    cache = _constants[dtype]
    a = cache.get(x)
    if a is None:
        a = np.array(x, dtype)
        if x and x == x:
            if len(cache) >= _MAX_CONSTANTS:
                cache.clear()
            cache[x] = a
    return a


def _mixed_arrays(op, args):
    """``_input_arrays``, with a fast path for Tensors of one float dtype and Python numbers."""
    arrays, needs, dtype, number_first = [], [], None, False
    for x in args:
        if isinstance(x, Tensor):
            a = x._data
            if a.dtype is not dtype:
                if dtype is not None:
                    break
                dtype = a.dtype
            arrays.append(a)
            needs.append(x._requires_grad)
        elif x.__class__ is float or x.__class__ is int:
            if dtype is None:
                number_first = True
                arrays.append(x)
            else:
                arrays.append(_constant(x, dtype) if dtype is _FLOAT32 or dtype is _FLOAT64 else x)
            needs.append(False)
        else:
            break
    if len(arrays) != len(args) or not (dtype is _FLOAT32 or dtype is _FLOAT64):
        return _input_arrays(op, args)
    if number_first:
        arrays = [a if a.__class__ is np.ndarray else _constant(a, dtype) for a in arrays]
    return arrays, needs, dtype


def apply(op: type[Op], *args: Any, **attrs: Any) -> Tensor:
    """Run Op class ``op`` on Tensors, arrays or Python numbers; record it if needed."""
    arrays: Sequence[Any]
    needs: Sequence[bool]
    inputs: tuple[Any, ...]
    ctx: Context
    if len(args) != op.arity:
        raise TypeError(f"{op.name}: expected {op.arity} tensor input(s), got {len(args)}")
    # Fast paths, the common cases, unrolled as this runs once per op: a float Tensor alone,
    # with a Tensor of its dtype, or with a Python float (which takes the Tensor's dtype).
    # Then Tensors and Python numbers in any order; anything else takes the general path.
    # Dtypes are compared by identity.
    if (
        args
        and isinstance(x := args[0], Tensor)
        and ((dtype := x._data.dtype) is _FLOAT32 or dtype is _FLOAT64)
    ):
        if len(args) == 1:
            arrays, needs = (x._data,), (x._requires_grad,)
        elif len(args) == 2 and isinstance(y := args[1], Tensor) and y._data.dtype is dtype:
            arrays, needs = (x._data, y._data), (x._requires_grad, y._requires_grad)
        elif len(args) == 2 and y.__class__ is float:
            number = _constants[dtype].get(y)
            arrays = (x._data, number if number is not None else _constant(y, dtype))
            needs = (x._requires_grad, False)
        else:
            arrays, needs, dtype = _mixed_arrays(op, args)
    else:
        arrays, needs, dtype = _mixed_arrays(op, args)
    if True in needs and _grad_mode.enabled:
        needs = tuple(needs)
        if len(args) == 1:
            inputs = args
        elif len(args) == 2:  # unrolled: a comprehension costs several times as much
            inputs = (args[0] if needs[0] else None, args[1] if needs[1] else None)
        else:
            inputs = tuple([x if n else None for x, n in zip(args, needs)])
        ctx = Node(op, needs, inputs, dtype, args, attrs)
    else:
        ctx = Context(op, (False,) * len(args))
    out = op.forward(ctx, *arrays, **attrs)
    # Ops whose base class makes the output (the kernel families) are trusted to return what
    # it makes; any other op's output is checked before a kernel can read it.
    if not op.forward_output_trusted and (
        out.__class__ is not np.ndarray or out.dtype is not dtype or not out.flags.c_contiguous
    ):
        _check_output(op, out, dtype)
    t = _new_tensor(Tensor)
    t._data, t.grad = out, None
    if ctx.__class__ is Node:
        t._requires_grad, t._node = True, ctx
    else:
        t._requires_grad, t._node = False, None
    if _op_hook is not None:
        _op_hook(op, args, attrs, t)
    return t


_new_tensor = object.__new__
_op_hook = None  # set_op_hook's function, or None


def set_op_hook(hook: Callable | None) -> Callable | None:
    """Hook point: while ``hook`` is set (None removes it), every op that ``apply`` runs calls
    ``hook(op, args, attrs, out)`` after its forward: the Op class, its inputs as given
    (Tensors, arrays, Python numbers), its attributes and the output Tensor. Returns the hook
    it replaces. ``firefly.onnx.export`` traces a forward through it. Process-wide, not per
    thread."""
    global _op_hook
    previous, _op_hook = _op_hook, hook
    return previous


ops.bind_engine(apply)


def _check_output(op, out, dtype):
    """Raise unless ``out`` is what an op's forward may return: a C-contiguous ndarray of the
    dtype it computed in, or of any float dtype for an op that ``casts_dtype``."""
    if (
        out.__class__ is np.ndarray
        and out.flags.c_contiguous
        and (
            out.dtype is dtype or (getattr(op, "casts_dtype", False) and out.dtype in FLOAT_DTYPES)
        )
    ):
        return
    raise TypeError(
        f"op '{op.name}': forward must return a C-contiguous {dtype} ndarray, got "
        f"{type(out).__name__} {getattr(out, 'dtype', '')}"
    )


def write_in_place(target: Tensor, result: Tensor) -> Tensor:
    """Make ``target`` hold ``result``'s value: the end of every in-place Tensor method.

    Recorded (``result`` has a node): ``target`` takes ``result``'s array and node, as PyTorch
    rebases an in-place op's output onto the op; its own history moves to a stand-in Tensor
    that the new node reads in its place. Its old array is left as it was, so whatever a
    recorded op saved from it stays valid. Not recorded: the value is copied into ``target``'s
    own array (views of it, such as an optimizer's flat buffer, see the change) and the write
    is recorded for the saved-array check.
    """
    node = result._node
    if node is None:
        np.copyto(target._data, result._data, casting="same_kind")
        mark_modified(target._data)
        return target
    if target._node is not None or target._requires_grad:
        stand_in = Tensor._wrap(target._data, target._node)
        stand_in._requires_grad = target._requires_grad
        node.inputs = tuple(stand_in if x is target else x for x in node.inputs)
    target._data = result._data
    target._node, target._requires_grad = node, True
    return target


def _topological_order(roots):
    """Tensors with a recorded node, each once, every tensor after the ones it was made from.

    Tensors are set members and dict keys here and in the walks: they hash by identity (their
    ``==`` is elementwise, but a dict compares keys of equal hash by identity first, and two
    live objects never share an identity hash), which is cheaper than keying by ``id()``.
    """
    order, visited = [], set()
    stack = [root for root in reversed(roots) if root._node is not None]
    push, pop, finish, mark = stack.append, stack.pop, order.append, visited.add
    while stack:
        t = pop()
        if t.__class__ is tuple:  # (tensor,): its inputs are all in order, so it follows them
            finish(t[0])
            continue
        # Mark a tensor when it is expanded, not when pushed: a tensor pushed as one consumer's
        # input may be reached again below another consumer, and must finish before both.
        if t in visited:
            continue
        mark(t)
        push((t,))
        for parent in t._node.inputs:
            if parent is not None and parent._node is not None and parent not in visited:
                push(parent)
    return order


_leaf_gradient_hook = None  # set_leaf_gradient_hook's function, or None


def set_leaf_gradient_hook(hook: Callable | None) -> Callable | None:
    """Hook point: while ``hook`` is set (None removes it), backward calls
    ``hook(accumulate, leaf, grad)`` instead of ``accumulate(leaf, grad)`` for every gradient
    it hands to a leaf (``accumulate`` adds ``grad``, an ndarray, into ``leaf.grad``, creating it
    when None); returns the hook it replaces. ``firefly.compile`` records leaf gradients
    through it. Process-wide, not per thread."""
    global _leaf_gradient_hook
    previous, _leaf_gradient_hook = _leaf_gradient_hook, hook
    return previous


def _add_to_leaf_grad(leaf, g, owned=False):
    """``leaf.grad += g``, creating it when None: as ``g`` itself where ``owned`` (a fresh
    array that nothing else holds, see ``_owned``), else as a copy, so that ``.grad`` never
    aliases another gradient, a tensor's data or the caller's array."""
    if leaf.grad is None:
        leaf.grad = Tensor._wrap(g if owned else np.array(g, dtype=leaf.dtype, copy=True))
    else:
        leaf.grad._data += g


def _accumulate_leaf(leaf, g, owned=False):
    if _leaf_gradient_hook is not None:
        _leaf_gradient_hook(_add_to_leaf_grad, leaf, g)  # a hook may keep g: never adopted
    else:
        _add_to_leaf_grad(leaf, g, owned)


# The references to an input gradient that ``backward``'s loop holds when it asks ``_owned``:
# the op's returned tuple, the loop variable ``ig``, ``_owned``'s parameter and getrefcount's
# argument (CPython moves a call's arguments into the callee's frame). An array with no others
# was made by the op's backward for this input alone: another node's pending gradient, a
# tensor's data, a saved array, the incoming ``g``, a second slot of the tuple or the caller's
# array would each add one. tests/test_autograd.py checks both directions: a fresh kernel
# output is adopted, and each kind of shared array is copied.
_FRESH_REFERENCES = 4
# The references to the array that a view of it returned as a gradient (an op's
# ``dx.reshape(shape)``) is the only other holder of: the view's ``.base``, _owned's local and
# getrefcount's argument. Any other view of that memory, or the op's own name for it, is one
# more (NumPy points every view at the array that owns the memory, never at another view).
_SOLE_VIEW_BASE_REFERENCES = 3
# The counts above are CPython's from 3.11 to 3.13. Python 3.14 keeps borrowed references on
# the stack, so getrefcount can read lower there and a shared array would look fresh: adoption
# is off elsewhere (and on other implementations), where every first gradient is copied.
_CPYTHON_VERSION = sys.version_info[:2] if sys.implementation.name == "cpython" else (0, 0)
ADOPTS_FRESH_GRADIENTS = (3, 11) <= _CPYTHON_VERSION <= (3, 13)


def _owned(ig, leaf_data):
    """Whether a leaf may adopt ``ig`` as its ``.grad`` without a copy: a writable, C-contiguous
    ndarray of the leaf's dtype that only the backward loop refers to, holding its own memory
    or viewing the whole of an array that nothing but ``ig`` refers to. Called from that loop
    only, where the references counted in _FRESH_REFERENCES are known."""
    if not (
        ig.__class__ is np.ndarray
        and sys.getrefcount(ig) <= _FRESH_REFERENCES
        and ig.dtype is leaf_data.dtype
    ):
        return False
    flags = ig.flags  # a new object per access: read once
    if not (flags.c_contiguous and flags.writeable):
        return False
    base = ig.base
    return base is None or (
        base.__class__ is np.ndarray
        and base.flags.owndata
        and base.nbytes == ig.nbytes
        and sys.getrefcount(base) <= _SOLE_VIEW_BASE_REFERENCES
    )


def _seed(method, root, grad, create_graph):
    """The gradient a walk starts from at ``root``: ones for a one-element tensor, else
    ``grad``, checked against the root's shape. A Tensor with ``create_graph`` (which keeps
    the graph a Tensor ``grad`` carries), an ndarray otherwise."""
    if grad is None:
        if root._data.size != 1:
            raise RuntimeError(
                f"{method}: grad can be created implicitly only for a one-element tensor, but this "
                f"one has shape {root.shape}; pass "
                f"{'grad_outputs' if method == 'grad' else 'backward(grad=...)'} with that shape"
            )
        seed = np.ones(root.shape, dtype=root.dtype)
    elif create_graph and isinstance(grad, Tensor):
        if grad.shape != root.shape:
            raise ValueError(
                f"{method}: the gradient has shape {grad.shape} but the tensor has shape "
                f"{root.shape}"
            )
        return grad if grad.dtype == root.dtype else grad.to(root.dtype)
    else:
        seed = grad._data if isinstance(grad, Tensor) else np.asarray(grad)
        if seed.shape != root.shape:
            raise ValueError(
                f"{method}: the gradient has shape {seed.shape} but the tensor has shape "
                f"{root.shape}"
            )
        seed = np.asarray(seed, dtype=root.dtype, order="C")
    return Tensor._wrap(seed) if create_graph else seed


def backward(
    root: Tensor,
    grad: Tensor | np.ndarray | None = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    inputs: Sequence[Tensor] | None = None,
) -> None:
    """Accumulate d(root)/d(leaf) into ``.grad`` of every leaf that requires grad (of each of
    ``inputs`` only, when given). ``create_graph``: the gradients are recorded Tensors that
    can be differentiated again; ``retain_graph`` defaults to ``create_graph``."""
    if not root.requires_grad:
        raise RuntimeError(
            "backward: this tensor does not require grad and was not made from one that does; "
            "create the inputs with requires_grad=True (and outside firefly.no_grad())"
        )
    if retain_graph is None:
        retain_graph = create_graph
    seed = _seed("backward", root, grad, create_graph)
    if create_graph or inputs is not None or _hooks:
        if inputs is not None:
            inputs = _as_tensor_list("backward", "inputs", inputs)
        _walk((root,), (seed,), retain_graph, create_graph, inputs, accumulate=True)
        return
    if root._node is None:
        _accumulate_leaf(root, seed)
        return
    # The plain backward: fused backward kernels on ndarrays, no hooks, every leaf.
    grads = {root: seed}
    for t in reversed(_topological_order((root,))):
        node = t._node
        g = grads.pop(t, None)
        if g is None:
            continue  # nothing flowed here (all its consumers' gradients were None)
        if node.freed:
            raise RuntimeError(
                f"backward: the graph through '{node.op.name}' was already freed by an earlier "
                "backward(); pass retain_graph=True to the first backward() to go through it twice"
            )
        if node.tick != _clock:
            _check_saved_unmodified(node)
        input_grads = node.op.backward(node, g)
        if input_grads.__class__ is not tuple:
            input_grads = (input_grads,)
        inputs, dtype = node.inputs, node.dtype
        if len(input_grads) != len(inputs):
            raise RuntimeError(
                f"op '{node.op.name}': backward returned {len(input_grads)} gradient(s) for "
                f"{len(inputs)} input(s)"
            )
        for i, parent in enumerate(inputs):
            # Indexed, not zipped: zip's reused result tuple would hold ``ig`` too, a reference
            # _owned would have to count on the strength of an implementation detail.
            ig = input_grads[i]
            if parent is None or ig is None:
                continue
            data = parent._data
            if ig.__class__ is not np.ndarray or ig.dtype is not dtype or ig.shape != data.shape:
                _check_gradient(node, parent, ig)
            if dtype is not data.dtype:
                ig = ig.astype(data.dtype)  # undo the engine's own float32 -> float64 promotion
            if parent._node is None:
                # Asked in a statement of its own: as an argument of the call below, ``ig``
                # would already be on the stack once more when _owned counts.
                owned = ADOPTS_FRESH_GRADIENTS and parent.grad is None and _owned(ig, data)
                _accumulate_leaf(parent, ig, owned)
            else:
                previous = grads.get(parent)
                # A fresh array, never ``+=``: either operand may be an array that an op's
                # backward also handed to another input. ``asarray``: the sum of two 0-d
                # arrays is a NumPy scalar, and a gradient must stay an ndarray.
                grads[parent] = ig if previous is None else np.asarray(previous + ig)
        if not retain_graph:
            node.release()


def _as_tensor_list(method: str, what: str, values: Tensor | Iterable[Tensor]) -> list[Tensor]:
    values = [values] if isinstance(values, Tensor) else list(values)
    for i, v in enumerate(values):
        if not isinstance(v, Tensor):
            raise TypeError(f"{method}: {what}[{i}] must be a Tensor, got {type(v).__name__}")
    return values


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Tensor | np.ndarray | Sequence[Tensor | np.ndarray | None] | None = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[Tensor | None, ...]:
    """The gradients of ``outputs`` with respect to ``inputs``, as ``torch.autograd.grad``: a
    tuple of Tensors, one per input, accumulated into no ``.grad``.

    ``grad_outputs`` weights each output (required for outputs of more than one element);
    ``create_graph`` records the gradients so that they can be differentiated again;
    ``retain_graph`` (default: ``create_graph``) keeps the graph for another walk; an input
    that the outputs do not depend on is an error unless ``allow_unused``, and then gives None.
    """
    outputs = _as_tensor_list("grad", "outputs", outputs)
    inputs = _as_tensor_list("grad", "inputs", inputs)
    if grad_outputs is None or isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs] * len(outputs) if grad_outputs is None else [grad_outputs]
    grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(
            f"grad: {len(grad_outputs)} grad_outputs given for {len(outputs)} outputs; "
            "give one each"
        )
    for i, out in enumerate(outputs):
        if not out._requires_grad:
            raise RuntimeError(
                f"grad: outputs[{i}] (shape {out.shape}) does not require grad and was not made "
                "from a tensor that does"
            )
    for i, x in enumerate(inputs):
        if not x._requires_grad:
            raise RuntimeError(
                f"grad: inputs[{i}] (shape {x.shape}, {x.dtype}) does not require grad, so it "
                "has no gradient; create it with requires_grad=True"
            )
    if retain_graph is None:
        retain_graph = create_graph
    seeds = [_seed("grad", out, g, create_graph) for out, g in zip(outputs, grad_outputs)]
    captured = _walk(outputs, seeds, retain_graph, create_graph, inputs, accumulate=False)
    results: list[Tensor | None] = []
    for i, x in enumerate(inputs):
        g = captured.get(x)
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"grad: inputs[{i}] (shape {x.shape}, {x.dtype}) was not used to compute the "
                    "outputs (it is not in their graph); pass allow_unused=True to get None for it"
                )
            results.append(None)
        elif create_graph:
            results.append(g)
        else:  # a fresh array: an op's backward may pass on the seed, or one array twice
            results.append(Tensor._wrap(np.array(g, copy=True)))
    return tuple(results)


def _walk(roots, seeds, retain_graph, create_graph, targets, accumulate):
    """The general backward walk: hooks, ``retain_grad``, gradients of chosen ``targets`` only
    (pruning the nodes that lead to none of them), and with ``create_graph`` every gradient a
    recorded Tensor made by each op's differentiable backward. Gradients reach ``.grad``
    where ``accumulate``; the targets' gradients are returned, keyed by the tensors."""
    order = _topological_order(roots)
    target_set = leads = None
    if targets is not None:
        target_set = set(targets)
        leads = set(target_set)  # tensors with a path to a target
        for t in order:
            for parent in t._node.inputs:
                if parent is not None and parent in leads:
                    leads.add(t)
                    break
    add = _add_tensors if create_graph else _add_arrays
    grads, leaves, captured = {}, {}, {}
    for root, seed in zip(roots, seeds):
        if leads is not None and root not in leads:
            continue
        store = grads if root._node is not None else leaves
        previous = store.get(root)
        store[root] = seed if previous is None else add(previous, seed)
    recording = _grad_mode.enabled
    _grad_mode.enabled = create_graph or recording
    try:
        for t in reversed(order):
            g = grads.pop(t, None)
            if g is None:
                continue  # nothing flowed here (all its consumers' gradients were None)
            if _hooks:
                g = _run_hooks(t, g, create_graph)
            if target_set is not None and t in target_set:
                captured[t] = g
            node = t._node
            inputs = node.inputs
            needs = None
            if leads is not None:
                needs = tuple(
                    [
                        need and parent is not None and parent in leads
                        for parent, need in zip(inputs, node.needs_input_grad)
                    ]
                )
                if True not in needs:
                    continue
            for parent, ig in zip(inputs, _node_backward(node, g, t, create_graph, needs)):
                if parent is None or ig is None or (leads is not None and parent not in leads):
                    continue
                ig = _parent_gradient(node, parent, ig, create_graph)
                store = grads if parent._node is not None else leaves
                previous = store.get(parent)
                store[parent] = ig if previous is None else add(previous, ig)
            if not retain_graph:
                node.release()
        for leaf, g in leaves.items():
            if _hooks:
                g = _run_hooks(leaf, g, create_graph)
            captured[leaf] = g
    finally:
        _grad_mode.enabled = recording
    if accumulate:
        for t in targets if targets is not None else list(leaves):
            g = captured.get(t)
            if g is not None:
                _accumulate(t, g, create_graph)
    return captured


def _add_arrays(a, b):
    # A fresh array, never ``+=``: either operand may be an array that an op's backward also
    # handed to another input. ``asarray``: the sum of two 0-d arrays is a NumPy scalar.
    return np.asarray(a + b)


def _add_tensors(a, b):
    return a + b


def _accumulate(t, g, create_graph):
    """``t.grad += g``; with ``create_graph`` out of place, so that ``t.grad`` keeps ``g``'s
    graph."""
    if not create_graph:
        _accumulate_leaf(t, g)
    elif t.grad is None:
        t.grad = g
    else:
        t.grad = t.grad + g


def _node_backward(node, g, out, create_graph, needs):
    """One node's input gradients, from its fused backward (ndarrays) or, with
    ``create_graph``, its differentiable one (Tensors); ``needs``, when not None, replaces the
    node's ``needs_input_grad`` for this call (narrowed to the inputs on a path to a target of
    ``grad``)."""
    if node.freed:
        raise RuntimeError(
            f"backward: the graph through '{node.op.name}' was already freed by an earlier "
            "backward(); pass retain_graph=True to the first backward() to go through it twice"
        )
    if node.tick != _clock:
        _check_saved_unmodified(node)
    kept = node.needs_input_grad
    if needs is not None:
        node.needs_input_grad = needs
    try:
        if create_graph:
            input_grads = _differentiable_backward(node, g, out)
        else:
            input_grads = node.op.backward(node, g)
    finally:
        node.needs_input_grad = kept
    if input_grads.__class__ is not tuple:
        input_grads = (input_grads,)
    if len(input_grads) != len(node.inputs):
        raise RuntimeError(
            f"op '{node.op.name}': backward returned {len(input_grads)} gradient(s) for "
            f"{len(node.inputs)} input(s)"
        )
    return input_grads


def _parent_gradient(node, parent, ig, create_graph):
    """``ig`` checked as ``parent``'s gradient and cast to its dtype (undoing the engine's
    own float32 -> float64 promotion)."""
    if create_graph:
        if not isinstance(ig, Tensor) or ig._data.shape != parent._data.shape:
            raise RuntimeError(
                f"op '{node.op.name}': its differentiable backward returned "
                f"{getattr(ig, 'shape', type(ig).__name__)} for an input of shape "
                f"{parent.shape}; it must return a Tensor of the input's shape"
            )
        dtype = parent._data.dtype
        return ig if ig._data.dtype is dtype else ig.to(dtype)
    data = parent._data
    if ig.__class__ is not np.ndarray or ig.dtype is not node.dtype or ig.shape != data.shape:
        _check_gradient(node, parent, ig)
    return ig if node.dtype is data.dtype else ig.astype(data.dtype)


# ----------------------------------------------------------------------------- create_graph
def input_tensors(node: Node) -> tuple[Tensor | None, ...]:
    """The Tensors ``node``'s op was applied to: the recorded ones where they need a gradient,
    the others (Tensors, numbers) as constants in the dtype the op computed in."""
    inputs = node.inputs
    for x in inputs:
        if x is None:
            break
    else:  # every input recorded (the common case inside a graph): nothing to convert
        return inputs
    return tuple(
        x
        if x is not None
        else (a if a is None or isinstance(a, Tensor) else Tensor._wrap(np.array(a, node.dtype)))
        for x, a in zip(node.inputs, node.applied_to)
    )


def _differentiable_backward(node, grad, out):
    """``node``'s input gradients as recorded Tensors: its op's ``backward_graph``, or the
    gradient of its ``decomposition`` (the op's forward written with other ops)."""
    op = node.op
    inputs = input_tensors(node)
    if op.backward_graph is not None:
        return op.backward_graph(node, grad, inputs, out)
    if op.decomposition is not None:
        return _backward_by_decomposition(node, grad, inputs)
    raise RuntimeError(
        f"backward(create_graph=True): op '{op.name}' has no second-order rule, so its "
        "gradient cannot be differentiated again. Give the op a backward_graph(ctx, grad, "
        "inputs, out) written with firefly ops, or a decomposition(*inputs, **attrs) (see "
        "docs/autograd.md), or call backward without create_graph"
    )


def _backward_by_decomposition(node, grad_output, inputs):
    """Differentiate ``op.decomposition`` at ``inputs``. Each input that needs a gradient is
    first copied by a recorded op, so that the walk stops there (an input made from another
    would otherwise pass its gradient on) while the copy keeps the path to the input."""
    needs = node.needs_input_grad
    stand_ins = [x.clone() if need else x for x, need in zip(inputs, needs)]
    out = node.op.decomposition(*stand_ins, **node.applied_attrs)
    wanted = [s for s, need in zip(stand_ins, needs) if need]
    found = iter(grad(out, wanted, grad_output, create_graph=True, allow_unused=True))
    return tuple((next(found) if need else None) for need in needs)


# ----------------------------------------------------------------------------- hooks
class _TensorHooks:
    """The hooks registered on one tensor, and whether it retains its gradient."""

    __slots__ = ("ref", "hooks", "retains_grad", "next_key")

    def __init__(self, ref):
        self.ref, self.hooks, self.retains_grad, self.next_key = ref, {}, False, 0


_hooks: dict[
    int, _TensorHooks
] = {}  # id(tensor) -> _TensorHooks; empty unless a hook or retain_grad is registered


def _hooks_of(tensor):
    key = id(tensor)
    entry = _hooks.get(key)
    if entry is None or entry.ref() is not tensor:

        def forget(_, key=key):
            if _hooks.get(key) is entry:
                del _hooks[key]

        entry = _TensorHooks(weakref.ref(tensor, forget))
        _hooks[key] = entry
    return entry


def _drop_if_empty(tensor):
    entry = _hooks.get(id(tensor))
    if entry is not None and entry.ref() is tensor and not entry.hooks and not entry.retains_grad:
        del _hooks[id(tensor)]


def _remove_hook(tensor_ref: weakref.ref[Tensor], key: int) -> None:
    tensor = tensor_ref()
    entry = _hooks.get(id(tensor)) if tensor is not None else None
    if entry is not None and entry.ref() is tensor:
        entry.hooks.pop(key, None)
        _drop_if_empty(tensor)


def register_hook(tensor: Tensor, hook: Callable[[Tensor], Tensor | None]) -> RemovableHandle:
    """Call ``hook(grad)`` whenever ``tensor``'s gradient is computed; a Tensor it returns
    replaces the gradient. Returns a handle whose ``remove()`` unregisters it."""
    if not tensor._requires_grad:
        raise RuntimeError(
            f"register_hook: this tensor (shape {tensor.shape}) does not require grad, so it "
            "never gets a gradient; set requires_grad=True first"
        )
    if not callable(hook):
        raise TypeError(f"register_hook: hook must be callable, got {type(hook).__name__}")
    entry = _hooks_of(tensor)
    key = entry.next_key
    entry.next_key += 1
    entry.hooks[key] = hook
    return RemovableHandle(functools.partial(_remove_hook, weakref.ref(tensor), key))


def retain_grad(tensor: Tensor) -> None:
    """Keep a non-leaf tensor's gradient in ``.grad`` (leaves keep theirs anyway)."""
    if not tensor._requires_grad:
        raise RuntimeError(
            f"retain_grad: this tensor (shape {tensor.shape}) does not require grad, so it "
            "has no gradient to retain"
        )
    if tensor._node is not None:
        _hooks_of(tensor).retains_grad = True


def retains_grad(tensor: Tensor) -> bool:
    entry = _hooks.get(id(tensor))
    return entry is not None and entry.ref() is tensor and entry.retains_grad


def _run_hooks(t, g, create_graph):
    """``t``'s hooks applied to its gradient ``g`` in order of registration, then its
    gradient retained if asked."""
    entry = _hooks.get(id(t))
    if entry is None or entry.ref() is not t:
        return g
    for hook in tuple(entry.hooks.values()):
        replaced = hook(g if create_graph else Tensor._wrap(g))
        if replaced is None:
            continue
        if (
            not isinstance(replaced, Tensor)
            or replaced.shape != t.shape
            or replaced.dtype != t.dtype
        ):
            raise RuntimeError(
                f"hook {getattr(hook, '__name__', hook)!r} returned "
                f"{type(replaced).__name__} {getattr(replaced, 'shape', '')} "
                f"{getattr(replaced, 'dtype', '')} as the gradient of a tensor of shape "
                f"{t.shape} {t.dtype}; a hook returns None or a Tensor of the tensor's shape "
                "and dtype"
            )
        g = replaced if create_graph else replaced._data
    if entry.retains_grad and t._node is not None:
        _accumulate(t, g, create_graph)
    return g


def _check_gradient(node, parent, ig):
    """Raise unless ``ig`` can be ``parent``'s gradient: an ndarray of its shape, in the dtype
    ``node`` computed in."""
    if isinstance(ig, np.ndarray) and ig.shape == parent.shape and ig.dtype == node.dtype:
        return
    raise RuntimeError(
        f"op '{node.op.name}': backward returned a gradient of "
        f"{getattr(ig, 'shape', type(ig).__name__)} {getattr(ig, 'dtype', '')} for an "
        f"input of shape {parent.shape} {node.dtype}"
    )


# ----------------------------------------------------------------------------- Function


class FunctionCtx(Node):
    """The ``ctx`` of a Function: ``save_for_backward`` / ``saved_tensors``,
    ``needs_input_grad``, ``mark_non_differentiable``, ``set_materialize_grads``, and any
    attribute forward sets."""

    def __init__(
        self,
        op: type[Op],
        needs_input_grad: tuple[bool, ...],
        inputs: tuple[Tensor | None, ...],
        dtype: np.dtype | None,
        args: tuple[Any, ...],
    ) -> None:
        super().__init__(op, needs_input_grad, inputs, dtype, args, {})
        self.non_differentiable: tuple[Any, ...] = ()
        self.materialize_grads = True
        # Set by Function.apply once forward has returned:
        self.output_count: int
        self.differentiable_index: int
        self.output_shapes: tuple[tuple[int, ...], ...]

    def mark_non_differentiable(self, *tensors: Any) -> None:
        self.non_differentiable += tensors

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = bool(value)


class _FunctionOp(Op):
    """The engine's view of one Function subclass (made for each): backward calls the
    subclass's ``backward`` on Tensors, without recording, or recording with create_graph."""

    function = None

    @classmethod
    def backward(cls, ctx, grad):
        with no_grad():
            grads = cls._grads(ctx, Tensor._wrap(grad))
        return tuple(
            None if g is None else np.asarray(g._data, dtype=ctx.dtype, order="C") for g in grads
        )

    @classmethod
    def backward_graph(cls, ctx, grad, inputs, out):
        return cls._grads(ctx, grad)

    @classmethod
    def _grads(cls, ctx, grad):
        name = cls.function.__name__
        outputs = ctx.output_count
        grads = [None] * outputs
        grads[ctx.differentiable_index] = grad
        if ctx.materialize_grads:
            for i, shape in enumerate(ctx.output_shapes):
                if grads[i] is None:
                    grads[i] = Tensor._wrap(np.zeros(shape, dtype=grad.dtype))
        result = cls.function.backward(ctx, *grads)
        result = result if isinstance(result, tuple) else (result,)
        # Extra trailing Nones are dropped, as torch does: a forward with a defaulted argument
        # (``bias=None``) called without it keeps one backward for both calls.
        extra = result[len(ctx.inputs) :]
        if len(result) < len(ctx.inputs) or any(g is not None for g in extra):
            raise RuntimeError(
                f"{name}.backward returned {len(result)} gradient(s), but forward took "
                f"{len(ctx.inputs)} input(s); return one per input of forward (None for an "
                "input that needs none)"
            )
        result = result[: len(ctx.inputs)]
        checked = []
        for i, (g, x, need) in enumerate(zip(result, ctx.applied_to, ctx.needs_input_grad)):
            if g is not None and not isinstance(g, Tensor):
                raise TypeError(
                    f"{name}.backward: gradient {i} must be a Tensor or None, got "
                    f"{type(g).__name__}"
                )
            if g is not None and need and g.shape != x.shape:
                raise RuntimeError(
                    f"{name}.backward: gradient {i} has shape {g.shape}, but input {i} has "
                    f"shape {x.shape}"
                )
            checked.append(g if need else None)
        return tuple(checked)


class Function:
    """``firefly.autograd.Function``: a custom op written in Python with Tensors, as torch's.

    A subclass gives ``forward(ctx, *args)`` and ``backward(ctx, *grads)`` as static methods and
    is called through ``apply``; a torch custom Function ports by changing the import::

        class Exp(firefly.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                y = x.exp()
                ctx.save_for_backward(y)
                return y

            @staticmethod
            def backward(ctx, grad):
                (y,) = ctx.saved_tensors
                return grad * y

    ``forward`` runs without recording; ``apply`` records one node whose backward calls the
    subclass's ``backward``. Written with firefly ops, that backward is recorded in its turn under
    ``create_graph=True``, so the Function can be differentiated again. See docs/autograd.md for
    when to write a Function and when a kernel op.
    """

    _op: type[_FunctionOp]  # the engine's op for this subclass, made by __init_subclass__

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._op = type(f"{cls.__name__}Op", (_FunctionOp,), {"name": cls.__name__, "function": cls})

    @staticmethod
    def forward(ctx: Any, *args: Any) -> Any:
        raise NotImplementedError("a Function subclass defines forward(ctx, *args)")

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise NotImplementedError("a Function subclass defines backward(ctx, *grads)")

    @classmethod
    def apply(cls, *args: Any) -> Any:
        needs = tuple(isinstance(a, Tensor) and a._requires_grad for a in args)
        record = is_grad_enabled() and True in needs
        dtype = None
        for a in args:
            if isinstance(a, Tensor) and a._data.dtype.kind == "f":
                dtype = promote(dtype, a._data.dtype)
        inputs = tuple(a if need else None for a, need in zip(args, needs))
        ctx = FunctionCtx(
            cls._op,
            needs if record else (False,) * len(args),
            inputs,
            dtype,
            tuple(a if isinstance(a, Tensor) else None for a in args),
        )
        with no_grad():
            output = cls.forward(ctx, *args)
        if not record:
            return output
        outputs = output if isinstance(output, tuple) else (output,)
        marked = {id(t) for t in ctx.non_differentiable}
        differentiable = [
            i
            for i, t in enumerate(outputs)
            if isinstance(t, Tensor) and id(t) not in marked and t._data.dtype.kind == "f"
        ]
        if len(differentiable) != 1:
            raise NotImplementedError(
                f"{cls.__name__}.forward returned {len(differentiable)} differentiable Tensor "
                "outputs; firefly records a Function with exactly one (mark the others with "
                "ctx.mark_non_differentiable)"
            )
        (index,) = differentiable
        raw = outputs[index]
        data = raw._data.copy() if any(raw is a for a in args) else raw._data
        recorded = Tensor._wrap(data, ctx)
        ctx.output_count, ctx.differentiable_index = len(outputs), index
        ctx.output_shapes = tuple(getattr(t, "shape", ()) for t in outputs)
        # A saved output is the recorded one, so that a second backward goes through it.
        ctx.saved_tensors = tuple(recorded if t is raw else t for t in ctx.saved_tensors or ())
        if not isinstance(output, tuple):
            return recorded
        return tuple(recorded if i == index else t for i, t in enumerate(outputs))
