"""The autograd engine: running an op and recording it, and walking the graph backwards.

``apply`` turns user inputs into arrays of one float dtype, lets the op validate and compute,
and links the result to its inputs. ``backward`` visits the recorded graph once, in reverse
topological order, calling each op's backward and accumulating gradients with ``+``.
"""
import threading

import numpy as np

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


class Node(Context):
    """One recorded op application. As in PyTorch, the node is also the op's ``ctx``: it holds
    what forward saved, plus the tensors the op read and the dtype it computed in."""

    def __init__(self, op, needs_input_grad):  # Context's fields set inline: this runs per op
        self.op, self.needs_input_grad, self.saved_tensors = op, needs_input_grad, ()
        self.freed = False

    def release(self):
        """Drop everything forward saved (arrays on ``ctx`` included), keeping the graph's shape."""
        kept = {"op": self.op, "inputs": self.inputs, "needs_input_grad": self.needs_input_grad}
        self.__dict__.clear()
        self.__dict__.update(kept, saved_tensors=None, dtype=None, freed=True)


def _input_arrays(op, args):
    """The arrays an op computes on, the dtype they share, and which inputs require grad.

    Python numbers take the other inputs' dtype (NumPy's rule for scalars); float32 mixed with
    float64 promotes to float64; anything else that is not a float Tensor is refused.
    """
    arrays, needs, dtype = [], [], None
    for x in args:
        if isinstance(x, Tensor):
            a = x._data
            needs.append(x.requires_grad)
        elif isinstance(x, (bool, int, float)):
            arrays.append(x)
            needs.append(False)
            continue
        else:
            try:
                a = Tensor(x)._data
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{op.name}: unsupported input of type {type(x).__name__}: {exc}") from None
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


def apply(op, *args, **attrs):
    """Run Op class ``op`` on Tensors, arrays or Python numbers; record it if needed."""
    if len(args) != op.arity:
        raise TypeError(f"{op.name}: expected {op.arity} tensor input(s), got {len(args)}")
    # Fast path, the common case: Tensors that all share one float dtype, which promote()
    # leaves as it is; anything else takes the general path.
    arrays, needs, dtype = [], [], None
    for x in args:
        if x.__class__ is not Tensor or (dtype is not None and x._data.dtype is not dtype):
            arrays, needs, dtype = _input_arrays(op, args)
            break
        arrays.append(x._data)
        needs.append(x.requires_grad)
        dtype = x._data.dtype
    else:
        if dtype not in FLOAT_DTYPES:
            arrays, needs, dtype = _input_arrays(op, args)

    if _grad_mode.enabled and True in needs:
        ctx = Node(op, tuple(needs))
        ctx.inputs = tuple([x if n else None for x, n in zip(args, needs)])
        ctx.dtype = dtype
    else:
        ctx = Context(op, (False,) * len(args))
    out = op.forward(ctx, *arrays, **attrs)
    if out.__class__ is not np.ndarray or out.dtype is not dtype or not out.flags.c_contiguous:
        raise TypeError(
            f"op '{op.name}': forward must return a C-contiguous {dtype} ndarray, got "
            f"{type(out).__name__} {getattr(out, 'dtype', '')}"
        )
    if ctx.__class__ is Node:
        return Tensor._wrap(out, ctx)
    return Tensor._wrap(out)


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


def _accumulate_leaf(leaf, g):
    if leaf.grad is None:
        leaf.grad = Tensor._wrap(np.array(g, dtype=leaf.dtype, copy=True))
    else:
        leaf.grad._data += g


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
            raise ValueError(f"backward: grad has shape {seed.shape} but the tensor has shape {root.shape}")
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
        input_grads = node.op.backward(node, g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(node.inputs):
            raise RuntimeError(
                f"op '{node.op.name}': backward returned {len(input_grads)} gradient(s) for "
                f"{len(node.inputs)} input(s)"
            )
        for parent, ig in zip(node.inputs, input_grads):
            if parent is None or ig is None:
                continue
            if not isinstance(ig, np.ndarray) or ig.shape != parent.shape or ig.dtype != node.dtype:
                raise RuntimeError(
                    f"op '{node.op.name}': backward returned a gradient of "
                    f"{getattr(ig, 'shape', type(ig).__name__)} {getattr(ig, 'dtype', '')} for an "
                    f"input of shape {parent.shape} {node.dtype}"
                )
            if ig.dtype != parent.dtype:
                ig = ig.astype(parent.dtype)  # undo the engine's own float32 -> float64 promotion
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

