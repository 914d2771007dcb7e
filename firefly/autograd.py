"""The autograd engine: running an op and recording it, and walking the graph backwards.

``apply`` turns user inputs into arrays of one float dtype, lets the op validate and compute,
and links the result to its inputs. ``backward`` visits the recorded graph once, in reverse
topological order, calling each op's backward and accumulating gradients with ``+``.
"""

import threading
import weakref
from collections.abc import Callable

import numpy as np

from firefly import ops
from firefly.dtypes import FLOAT_DTYPES, promote
from firefly.ops.base import Context

# The Tensor class, bound by firefly.tensor when it defines it (tensor.py imports this module,
# so this module cannot import tensor.py without an import cycle).
Tensor = None


def bind_tensor_type(cls):
    """Called once by ``firefly.tensor``: the class that ops return and gradients are made of."""
    global Tensor
    Tensor = cls


class _GradMode(threading.local):
    enabled = True  # a class default: each thread starts with recording on


_grad_mode = _GradMode()


def is_grad_enabled():
    return _grad_mode.enabled


class no_grad:
    """Context manager (and decorator) under which ops record no graph."""

    def __enter__(self):
        self._previous = _grad_mode.enabled
        _grad_mode.enabled = False

    def __exit__(self, *exc):
        _grad_mode.enabled = self._previous

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)

        wrapper.__name__, wrapper.__doc__, wrapper.__wrapped__ = fn.__name__, fn.__doc__, fn
        return wrapper


# ----------------------------------------------------------------------------- in-place writes
# PyTorch keeps a version counter per storage; firefly keeps one clock for the process. Every
# in-place write ticks it and records, per base array written, the tick of its latest write.
# A node remembers the tick it was recorded at, so backward has nothing to check (one integer
# comparison) unless some array was written after the node ran.
_clock = 0
_written = {}  # id(base array) -> (weak reference to it, tick of its latest in-place write)


def _base(array):
    while array.base is not None and isinstance(array.base, np.ndarray):
        array = array.base
    return array


def mark_modified(array):
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
        entry = (weakref.ref(base, lambda _, key=key: _written.pop(key, None)), _clock)
    _written[key] = (entry[0], _clock)


def _saved_arrays(node):
    for value in node.__dict__.values():
        if isinstance(value, np.ndarray):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from (v for v in value if isinstance(v, np.ndarray))


def _check_saved_unmodified(node):
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
        self, op, needs_input_grad, inputs, dtype
    ):  # Context's fields set inline: runs per op
        self.op, self.needs_input_grad, self.inputs, self.dtype = (
            op,
            needs_input_grad,
            inputs,
            dtype,
        )
        self.saved_tensors = ()
        self.freed = False
        self.tick = _clock

    def release(self):
        """Drop everything forward saved (arrays on ``ctx`` included), keeping the graph's shape."""
        self.__dict__ = {
            "op": self.op,
            "inputs": self.inputs,
            "needs_input_grad": self.needs_input_grad,
            "tick": self.tick,
            "saved_tensors": None,
            "dtype": None,
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
_constants = {_FLOAT32: {}, _FLOAT64: {}}
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


def apply(op, *args, **attrs):
    """Run Op class ``op`` on Tensors, arrays or Python numbers; record it if needed."""
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
        ctx = Node(op, needs, inputs, dtype)
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
    return t


_new_tensor = object.__new__
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


def write_in_place(target, result):
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


def _topological_order(root):
    """Tensors with a recorded node, each once, every tensor after the ones it was made from."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        # Mark a tensor when it is expanded, not when pushed: a tensor pushed as one consumer's
        # input may be reached again below another consumer, and must finish before both.
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        for parent in t._node.inputs:
            if parent is not None and parent._node is not None and id(parent) not in visited:
                stack.append((parent, False))
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


def _add_to_leaf_grad(leaf, g):
    if leaf.grad is None:
        leaf.grad = Tensor._wrap(np.array(g, dtype=leaf.dtype, copy=True))
    else:
        leaf.grad._data += g


def _accumulate_leaf(leaf, g):
    if _leaf_gradient_hook is not None:
        _leaf_gradient_hook(_add_to_leaf_grad, leaf, g)
    else:
        _add_to_leaf_grad(leaf, g)


def backward(root, grad=None, retain_graph=False):
    """Accumulate d(root)/d(leaf) into ``.grad`` of every leaf that requires grad."""
    if not root.requires_grad:
        raise RuntimeError(
            "backward: this tensor does not require grad and was not made from one that does; "
            "create the inputs with requires_grad=True (and outside firefly.no_grad())"
        )
    if grad is None:
        if root._data.size != 1:
            raise RuntimeError(
                f"backward: grad can be created implicitly only for a one-element tensor, but this "
                f"one has shape {root.shape}; pass backward(grad=...) with that shape"
            )
        seed = np.ones(root.shape, dtype=root.dtype)
    else:
        seed = grad._data if isinstance(grad, Tensor) else np.asarray(grad)
        if seed.shape != root.shape:
            raise ValueError(
                f"backward: grad has shape {seed.shape} but the tensor has shape {root.shape}"
            )
        seed = np.asarray(seed, dtype=root.dtype, order="C")
    if root._node is None:
        _accumulate_leaf(root, seed)
        return

    grads = {id(root): seed}
    for t in reversed(_topological_order(root)):
        node = t._node
        g = grads.pop(id(t), None)
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
        for parent, ig in zip(inputs, input_grads):
            if parent is None or ig is None:
                continue
            data = parent._data
            if ig.__class__ is not np.ndarray or ig.dtype is not dtype or ig.shape != data.shape:
                _check_gradient(node, parent, ig)
            if dtype is not data.dtype:
                ig = ig.astype(data.dtype)  # undo the engine's own float32 -> float64 promotion
            if parent._node is None:
                _accumulate_leaf(parent, ig)
            else:
                key = id(parent)
                if key in grads:
                    # A fresh array, never ``+=``: either operand may be an array that an op's
                    # backward also handed to another input. ``asarray``: the sum of two 0-d
                    # arrays is a NumPy scalar, and a gradient must stay an ndarray.
                    grads[key] = np.asarray(grads[key] + ig)
                else:
                    grads[key] = ig
        if not retain_graph:
            node.release()


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
