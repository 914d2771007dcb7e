"""``firefly.compile(fn)``: record a training step's kernel calls, then replay them.

``step = firefly.compile(fn)`` returns a function that, per signature (the shapes, dtypes and
``requires_grad`` of the Tensor and ndarray arguments, the values of the other arguments, and
the grad mode), does this:

1. The first two calls run ``fn`` eagerly under a recorder. The recorder sees every kernel an
   op runs (through the ops' ``forward_kernel``/``backward_kernel``, the only way an op reaches
   a kernel), every gradient ``backward`` hands to a leaf, and every call of an optimizer's
   ``step``/``zero_grad`` and a scheduler's ``step``.
2. The second recording becomes a plan if it provably computes what eager would: every array
   a kernel reads must be explained by the plan, i.e. be an argument, memory that was there
   when ``fn`` started and that nothing outside the recorded calls changed meanwhile (the
   parameters, optimizer state, tensors ``fn`` closes over), an earlier recorded call's
   output, scratch memory whose contents the kernel does not read (tested by rerunning the
   kernel on poisoned copies), a constant fill (``np.zeros``, ``np.ones``) that the first
   recording also had, or what the engine's own Python makes of explained arrays and is found
   to equal bit for bit: a dtype conversion, the sum of two gradients, a number a kernel
   returned turned into an op's output (``np.array(total / n)``). Both recordings must make
   the same calls, with equal arguments other than arrays.
3. Later calls copy the arguments into the plan's input buffers and replay: kernels are called
   directly on the buffers of the second recording, with no Tensor, graph or validation work.
   Optimizer and scheduler methods run as Python at their place in the plan, so that the
   learning rate, Adam's step count and everything else they read is read at replay time.
   From the first replay, the step's own arrays (those the plan writes before it reads them
   and that nothing outside the plan references) share memory where their lives do not
   overlap, so that a kernel's output mostly lands in memory still in cache.

When the plan cannot be proven (a random draw such as dropout's mask, NumPy work in Python
code, a tensor value read with ``item()``/``float()``/``bool()``/``numpy()`` inside ``fn``),
that signature runs eagerly from then on and one ``RuntimeWarning`` says why and where: results
are always those of the eager step. Replay is checked too: if a parameter's ``requires_grad``,
its data array or its gradient array is no longer the one recorded (say ``zero_grad(
set_to_none=True)`` ran outside ``fn``), the step is recorded again.

What the user must keep in mind: a compiled ``fn`` returns detached copies of the tensors it
returns (no graph), and its Python code runs only while recording, so Python state that it
changes (a counter, a list of losses) changes only then; inputs that change between calls must
be passed as arguments (tensors reached through globals or closures are read in place, so
writing new values into them works, rebinding the name to another tensor does not); and state
that Python code inside ``fn`` changes without reaching a kernel is not replayed.

Recording reaches kernels, random draws and leaf gradients through the hook points their
layers declare (``firefly.ops.base.substituted_kernels``, ``firefly.random.set_draw_hook``,
``firefly.autograd.set_leaf_gradient_hook``), and wraps the public ``step``/``zero_grad`` of
optimizers and schedulers and the Tensor value readers (``item``, ``numpy``, ...) for its
duration. All of these are process-wide: record in one thread at a time.
"""

import collections
import functools
import gc
import sys
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from firefly import autograd
from firefly import random as firefly_random
from firefly.kernels._jit import is_compiled_kernel, is_sized_kernel
from firefly.ops.base import substituted_kernels
from firefly.tensor import Tensor

MAX_PLANS = 8  # signatures kept per compiled function
MAX_RECORDINGS = 3  # eager recordings per signature before giving up on a plan
_VALUE_READS = (
    "item",
    "numpy",
    "to_numpy",
    "tolist",
    "__float__",
    "__int__",
    "__bool__",
    "__array__",
)


# Entries that only the analysed recording has: how it explains memory Python code wrote.
_EXPLANATIONS = ("derived", "cast", "sum")

# A step-local array of at least this many bytes may share its memory with others that are
# not live at the same time (_Plan.share_memory); below it the cache lines saved are few.
SHARE_MIN_BYTES = 4096


def _extent(a):
    """The memory ``a`` spans: (first byte, one past the last byte)."""
    start = a.__array_interface__["data"][0]
    if a.size == 0:
        return start, start
    low = high = start
    for n, stride in zip(a.shape, a.strides):
        if stride >= 0:
            high += (n - 1) * stride
        else:
            low += (n - 1) * stride
    return low, high + a.itemsize


def _digest(a):
    return zlib.crc32(a.tobytes()), a.size


def _uniform_value(a):
    """The one value every element of ``a`` holds, or None."""
    if a.size == 0:
        return None
    first = a.flat[0]
    return (
        first if np.array_equal(a, np.full(a.shape, first, dtype=a.dtype), equal_nan=True) else None
    )


# The most elements an integer array made by the engine's Python may have to count as a
# constant of the step: the shape and strides a strided gather or scatter is handed (a
# transpose, a slice), which Python builds afresh on every call.
SMALL_CONSTANT = 64


def _constant_value(a):
    """What every call of the step holds in ``a`` if it is a constant: its one value, or a
    copy of a small integer array (kernel geometry); else None."""
    value = _uniform_value(a)
    if value is None and a.dtype.kind in "iu" and a.size <= SMALL_CONSTANT:
        return a.copy()
    return value


def _same_value(had, value):
    """Whether two ``_constant_value`` results are the same constant (NaN equal to NaN)."""
    if isinstance(had, np.ndarray) or isinstance(value, np.ndarray):
        return (
            isinstance(had, np.ndarray)
            and isinstance(value, np.ndarray)
            and had.shape == value.shape
            and bool(np.array_equal(had, value))
        )
    return bool(had == value or (had != had and value != value))


def _root(a):
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _view_like(a, root, base):
    """The view of ``base`` (laid out like ``root``) that ``a`` is of ``root``."""
    offset = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return np.ndarray(
        a.shape,
        base.dtype,
        buffer=base,
        offset=offset * base.itemsize // root.itemsize,
        strides=tuple(s * base.itemsize // root.itemsize for s in a.strides),
    )


def _copies(args):
    """Copies of the arguments in which arrays alias one another as the originals do (views of
    one copied base array), and ``{id(base): (base, copy)}``; None if a base is not contiguous.
    A view of another dtype than its base (a parameter in an optimizer's flat byte buffer) is
    the same view of the copy, at the same byte offset and strides."""
    bases = {}
    out = []
    for a in args:
        if not isinstance(a, np.ndarray):
            out.append(a)
            continue
        root = _root(a)
        if not root.flags.c_contiguous:
            return None
        copy = bases.setdefault(id(root), (root, root.copy()))[1]
        if a.dtype == root.dtype:
            out.append(_view_like(a, root, copy))
        else:
            offset = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
            out.append(np.ndarray(a.shape, a.dtype, buffer=copy, offset=offset, strides=a.strides))
    return out, bases


def _equal(a, b):
    """Elementwise equality, NaN equal to NaN."""
    same = a == b
    if a.dtype.kind in "fc":
        same |= np.isnan(a) & np.isnan(b)
    return same


def _poison(a):
    return np.nan if a.dtype.kind in "fc" else -12345


def _where():
    """``file:line`` of the innermost frame outside firefly: the user's line."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("firefly"):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else "an unknown line"


def _leaf_array(t):
    return t._data


class _Recording:
    """One eager run of ``fn``: the calls in order, and (when ``previous`` is given) the checks
    that turn it into a plan."""

    def __init__(self, previous, inputs):
        self.previous = previous  # the prior recording of this signature, or None
        self.entries = []  # (kind, callable, args, extra)
        self.kept = []  # every array seen: keeps its memory from being reused
        self.problem = None  # the first reason this recording cannot become a plan
        self.depth = 0  # > 0 inside an optimizer or scheduler call
        self.expected = {}  # extent -> (array, digest): memory whose contents are explained
        self.leaves = {}  # id -> leaf tensor that received a gradient
        self.optimizers = {}  # id -> optimizer seen
        self.scalars = []  # (entry index, value, candidate divisors) of kernels returning a number
        self.produced = []  # arrays the recorded kernels were given, in call order
        # id(root) -> (root, whether the first recorded call to touch it wrote all of it
        # without reading it): the memory the plan itself fills before any read
        self.touched = {}
        self.older = set()  # ids of the roots of the previous recording's arrays
        if previous is not None:
            self.older = {id(_root(a)) for a in previous.kept}
            for a in previous.kept:
                self._explain(a)
            for leaf in _leaves(previous):  # parameters: what fn started with is state
                self._explain(_leaf_array(leaf))
        self.inputs = list(inputs)
        for a in inputs:
            self._explain(a)

    def fail(self, message):
        if self.problem is None:
            self.problem = message

    def _touch(self, a, written):
        """Note ``a``'s root the first time a recorded call touches it: ``written`` when the
        call (or the plan's fill or conversion before it) writes what it reads of ``a``, which
        counts only if ``a`` is all of its root and the root is new in this recording."""
        root = _root(a)
        if id(root) not in self.touched:
            self.touched[id(root)] = (
                root,
                written and id(root) not in self.older and _extent(a) == _extent(root),
            )

    def _explain(self, a):
        self.expected[_extent(a)] = (a, _digest(a))

    def _refresh(self, touched=None):
        """Re-digest explained memory: all of it, or what overlaps the ``touched`` arrays."""
        spans = None if touched is None else [_extent(a) for a in touched]
        for key, (a, _) in list(self.expected.items()):
            if spans is None or any(key[0] < hi and lo < key[1] for lo, hi in spans):
                self.expected[key] = (a, _digest(a))

    def _check_explained(self, what, a):
        """True when ``a``'s contents are explained; records a problem when they were changed
        by something this recording did not see."""
        self.kept.append(a)
        known = self.expected.get(_extent(a))
        if known is None:
            return False
        # The explained array's own bytes: ``a`` may view the same memory in another order
        # (the attention kernels read a projection's output as (batch, heads, rows, head size)).
        if known[1] != _digest(known[0]):
            self.fail(
                f"{what} read an array that was changed outside the recorded kernels "
                "(NumPy or Python code writing into it)"
            )
        return True

    # ------------------------------------------------------------------ recorded calls
    def kernel(self, kernel, args):
        if self.depth or self.problem is not None:
            return kernel(*args)
        name = getattr(kernel, "__name__", repr(kernel))
        arrays = [(i, a) for i, a in enumerate(args) if isinstance(a, np.ndarray)]
        fills = []
        # What the next recording is compared with: a constant fill must have held then too.
        uniforms = tuple(_constant_value(a) for _, a in arrays)
        if self.previous is None:
            self.kept.extend(a for _, a in arrays)
        else:
            for i, a in arrays:
                if self._check_explained(f"kernel {name}", a):
                    self._touch(a, False)
                    continue
                if self._derived(a):
                    self._touch(a, True)
                    continue
                matters, left_alone = self._content_matters(kernel, args, i)
                if not matters:
                    # What the kernel leaves alone keeps what the memory held: the plan may
                    # give it other memory only if the kernel writes all of it.
                    self._touch(a, not left_alone)
                    continue
                # One value (np.ones, a Tensor(3.0) made inside fn), or the same small integer
                # array (a gather's shape and strides), that the previous recording had here too
                # is a constant; otherwise the engine's Python may have made it.
                value = _constant_value(a)
                if value is not None and self._changed_since_previous(i, arrays, value):
                    value = None
                source = self._python_source(a) if value is None else None
                if source is not None:
                    self.entries.append(source)
                    self._explain(a)
                    self.produced.append(a)
                    self._touch(a, True)
                    continue
                if value is None:
                    self.fail(
                        f"kernel {name} reads an array (argument {i}, {a.shape} {a.dtype}) that no "
                        "recorded kernel wrote (a random draw such as dropout's, or NumPy work in "
                        "Python code)"
                    )
                    return kernel(*args)
                fills.append((i, a, value))
                self._touch(a, True)
        result = kernel(*args)
        outputs = result if isinstance(result, tuple) else (result,)
        numbers = []
        for k, r in enumerate(outputs):
            if isinstance(r, np.ndarray):
                self.kept.append(r)
                self._explain(r)
                self._touch(r, True)  # the plan copies each replay's result into it
            elif isinstance(r, (float, int, np.floating, np.integer)) and not isinstance(r, bool):
                numbers.append(k)
            elif r is not None:
                self.fail(f"kernel {name} returned a {type(r).__name__} that the step may use")
        if numbers:
            sizes = {1} | {a.size for _, a in arrays} | {n for _, a in arrays for n in a.shape}
            self.scalars.append((len(self.entries), outputs, numbers, sorted(sizes)))
        if self.previous is not None:
            self._refresh([a for _, a in arrays])
            for _, a in arrays:
                self._explain(a)
            self.produced.extend(a for _, a in arrays)
        self.entries.append(("kernel", _resolved(kernel, args), args, (fills, result, uniforms)))
        return result

    def _derived(self, a):
        """Whether ``a`` holds one number that Python made from the numbers a kernel returned
        as a loss op does: ``np.array(total / n, dtype)``, n one of the kernel's sizes or
        another returned number (a weight sum). Only the latest such kernel is considered; the
        plan then recomputes it alike."""
        if a.size != 1 or not self.scalars or self.previous is None:
            return False
        index, outputs, numbers, sizes = self.scalars[-1]
        for i in numbers:
            divisors = [(n, None) for n in sizes] + [(None, j) for j in numbers if j != i]
            for n, j in divisors:
                divisor = n if j is None else outputs[j]
                if (
                    divisor
                    and np.array(outputs[i] / divisor, dtype=a.dtype).tobytes() == a.tobytes()
                ):
                    self.entries.append(("derived", None, (a, index, i, n, j), None))
                    self._explain(a)
                    return True
        return False

    def explain_by_python(self, a):
        """Explain ``a`` by the engine's Python (``_python_source``) if it can; True if so."""
        source = self._python_source(a) if self.previous is not None else None
        if source is not None:
            self.entries.append(source)
            self._explain(a)
            self.produced.append(a)
        return source is not None

    def _changed_since_previous(self, i, arrays, value):
        """Whether argument ``i`` of the kernel call being recorded held another one value in
        the same call of the previous recording."""
        previous = [e for e in self.previous.entries if e[0] not in _EXPLANATIONS]
        position = sum(e[0] not in _EXPLANATIONS for e in self.entries)
        if position >= len(previous):
            return False
        kind, _, args, extra = previous[position]
        if kind != "kernel" or len(extra[2]) != len(arrays):
            return False
        had = extra[2][[k for k, _ in arrays].index(i)]
        return had is not None and not _same_value(had, value)

    def _python_source(self, a):
        """The entry that recomputes ``a`` from explained arrays the way the engine's Python
        does, or None: a conversion of another float dtype (the engine promoting a float32
        parameter to meet float64 data, and converting its gradient back), a copy of an
        argument or of what a recorded kernel computed (an integer tensor's reshape, dropout
        with p=0), or the sum of two or three arrays (the engine adding the gradients of a
        tensor used more than once)."""
        if not a.flags.c_contiguous:
            return None
        data = a.tobytes()
        # Copied from the arguments or this recording's own results, latest first: never older
        # memory that happens to hold the same bytes today.
        for b in [*self.inputs, *reversed(self.produced)]:
            if (
                b.size == a.size
                and b.dtype == a.dtype
                and b.flags.c_contiguous
                and not np.shares_memory(a, b)
                and b.tobytes() == data
            ):
                return ("cast", None, (a, b.reshape(a.shape)), None)
        # Ops see reshaped views: candidates match in element count and C order.
        for b, _ in list(self.expected.values()):
            if (
                b.size == a.size
                and b.dtype != a.dtype
                and b.dtype.kind == "f"
                and b.flags.c_contiguous
                and b.astype(a.dtype).tobytes() == data
            ):
                return ("cast", None, (a, b.reshape(a.shape)), None)
        # Summands are gradients this recording computed, latest first: never older memory
        # (say, another all-zero array) that happens to hold the same values today.
        same, seen = [], set()
        for b in reversed(self.produced):
            if (
                b.size == a.size
                and b.dtype == a.dtype
                and b.flags.c_contiguous
                and _extent(b) not in seen
                and not np.shares_memory(a, b)
            ):
                seen.add(_extent(b))
                same.append(b.reshape(a.shape))
        for k, b in enumerate(same):
            for c in same[k:]:
                if np.add(b, c).tobytes() == data:
                    return ("sum", None, (a, b, c), None)
        # Three gradients of a tensor used three times (q, k and v split from one projection):
        # the engine adds them in arrival order, (b + c) + d.
        for k, b in enumerate(same):
            for c in same[k + 1 :]:
                pair = np.add(b, c)
                for d in same:
                    if d is not b and d is not c and np.add(pair, d).tobytes() == data:
                        return ("sum", None, (a, b, c, d), None)
        return None

    def _content_matters(self, kernel, args, i):
        """(Whether the kernel's results depend on what ``args[i]`` holds before the call,
        whether it leaves some of ``args[i]``'s elements alone): run it on copies, once as they
        are and once with ``args[i]`` poisoned, and compare everything but the poisoned
        elements the kernel left alone. A small integer array is geometry (a gather's shape and
        strides): poisoned, it would send the kernel's loads and stores outside its arrays, so
        its contents always matter."""
        if args[i].dtype.kind in "iu" and args[i].size <= SMALL_CONSTANT:
            return True, True
        runs = []
        for poisoned in (False, True):
            copied = _copies(args)
            if copied is None:
                return True, True  # memory laid out in a way the copies cannot reproduce
            copies, bases = copied
            if poisoned:
                copies[i].fill(_poison(copies[i]))
            runs.append((bases, kernel(*copies)))
        (plain, r1), (poisoned, r2) = runs
        target = _root(args[i])
        if args[i].dtype != target.dtype:
            return True, True  # which of the base's elements the poison left alone is not tracked
        left_alone = False
        for (root, c1), (_, c2) in zip(plain.values(), poisoned.values()):
            differ = ~_equal(c1, c2)
            if root is target:
                mine = np.zeros(root.shape, dtype=bool)
                _view_like(args[i], root, mine)[...] = True
                alone = mine & _equal(c2, np.full_like(c2, _poison(c2))) & _equal(c1, root)
                left_alone = bool(alone.any())
                differ &= ~alone
            if differ.any():
                return True, left_alone
        if isinstance(r1, np.ndarray):
            return not np.array_equal(r1, r2, equal_nan=True), left_alone
        return False, left_alone

    def leaf_gradient(self, accumulate, leaf, g):
        if self.depth or self.problem is not None:
            return accumulate(leaf, g)
        self.leaves[id(leaf)] = leaf
        g = np.asarray(g)
        if self.previous is None:
            accumulate(leaf, g)
            self.kept.extend((g, _leaf_array(leaf.grad)))
            self.entries.append(("leaf", None, (leaf, leaf.grad, g, False), None))
            return
        if not self._check_explained("backward", g):
            source = self._python_source(g)
            if source is None:
                self.fail("backward handed a leaf a gradient that no recorded kernel wrote")
            else:
                self.entries.append(source)
                self._explain(g)
                self.produced.append(g)
        had = leaf.grad
        if had is not None and not self._check_explained("backward", _leaf_array(had)):
            self.fail("backward accumulated into a gradient that no recorded call explains")
        accumulate(leaf, g)
        grad = leaf.grad
        self._touch(g, False)
        self._touch(_leaf_array(grad), False)
        self.kept.extend((g, _leaf_array(grad)))
        self._refresh([_leaf_array(grad)])
        self._explain(_leaf_array(grad))
        self.entries.append(("leaf", None, (leaf, grad, g, had is None), None))

    def draw(self, name, real, args, kwargs):
        """A draw from firefly's generator: the plan draws again, at the same place."""
        result = real(*args, **kwargs)
        if self.depth or self.problem is not None:
            return result
        if not isinstance(result, np.ndarray):
            self.fail(
                f"the function draws a random Python number (generator().{name}) at {_where()}"
            )
            return result
        self.kept.append(result)
        if self.previous is not None:
            self._explain(result)
            self.produced.append(result)
            self._touch(result, True)  # the plan draws into it again
        self.entries.append(("draw", name, (result, args, kwargs), None))
        return result

    def method(self, function, owner, args, kwargs):
        if self.depth or self.problem is not None:
            return function(owner, *args, **kwargs)
        if hasattr(owner, "param_groups"):
            self.optimizers[id(owner)] = owner
            if function.__name__ == "step" and self.previous is not None:
                self._check_gradients(owner)
        self.depth += 1
        try:
            result = function(owner, *args, **kwargs)
        finally:
            self.depth -= 1
        if result is not None and not isinstance(result, (int, float)):
            self.fail(
                f"{type(owner).__name__}.{function.__name__} returned {type(result).__name__}"
            )
        if self.previous is not None:
            self._refresh()  # the call reruns at replay: what it changed is explained
        self.entries.append(("method", function, (owner, args, kwargs), function.__name__))
        return result

    def _check_gradients(self, optimizer):
        for group in optimizer.param_groups:
            for p in group["params"]:
                leaf = getattr(p, "tensor", p)
                if leaf.grad is not None:
                    self._check_explained(
                        f"{type(optimizer).__name__}.step", _leaf_array(leaf.grad)
                    )

    def value_read(self, name):
        if not self.depth:
            self.fail(
                f"the function reads a tensor's value with {name}() at {_where()}; move the read "
                "out of the compiled function (return the tensor and read it after the call)"
            )


def _leaves(recording):
    """The leaf tensors a recording gave gradients to, and its optimizers' parameters."""
    leaves = dict(recording.leaves)
    for optimizer in recording.optimizers.values():
        for group in optimizer.param_groups:
            for p in group["params"]:
                leaf = getattr(p, "tensor", p)
                leaves[id(leaf)] = leaf
    return list(leaves.values())


def _resolved(kernel, args):
    """The build a sized kernel would pick for these (fixed) sizes."""
    if (
        is_sized_kernel(kernel)
        and args[0].size < kernel.threshold
        and args[-1].size < kernel.threshold
    ):
        return kernel.serial
    return kernel


def _same_call(mine, theirs):
    (kind, fn, args, extra), (kind2, fn2, args2, extra2) = mine, theirs
    if kind != kind2:
        return False
    if kind == "kernel":
        if fn is not fn2 or len(args) != len(args2):
            return False
        for a, b in zip(args, args2):
            if isinstance(a, np.ndarray) != isinstance(b, np.ndarray):
                return False
            if isinstance(a, np.ndarray):
                if a.shape != b.shape or a.dtype != b.dtype:
                    return False
            elif type(a) is not type(b) or not (a == b or (a != a and b != b)):
                return False
        # theirs is the first recording: a constant fill must have held the same value then
        positions = [k for k, a in enumerate(args) if isinstance(a, np.ndarray)]
        uniforms = extra2[2]
        for i, _, value in extra[0]:
            had = uniforms[positions.index(i)]
            if had is None or not _same_value(had, value):
                return False
        return True
    if kind == "method":
        try:
            return (
                fn is fn2
                and args[0] is args2[0]
                and bool(args[1] == args2[1])
                and bool(args[2] == args2[2])
            )
        except (TypeError, ValueError):  # arguments that do not compare as one bool
            return False
    if kind == "leaf":
        return args[0] is args2[0]
    if kind == "draw":
        try:
            return fn == fn2 and bool(args[1] == args2[1]) and bool(args[2] == args2[2])
        except (TypeError, ValueError):
            return False
    return extra == extra2


def _describe_entry(entry):
    kind, fn, args, extra = entry
    if kind == "kernel":
        parts = [f"{a.shape} {a.dtype}" if isinstance(a, np.ndarray) else repr(a) for a in args]
        return f"kernel {getattr(fn, '__name__', fn)}({', '.join(parts)})"
    if kind == "method":
        return f"{type(args[0]).__name__}.{fn.__name__}"
    return f"a gradient for a leaf of shape {args[0].shape}"


def _first_difference(mine, theirs):
    for k, (a, b) in enumerate(zip(mine, theirs)):
        if not _same_call(a, b):
            return f"call {k} is {_describe_entry(a)}, was {_describe_entry(b)}"
    return f"{len(mine)} calls, were {len(theirs)}"


def _set_leaf_gradient(leaf, grad, g, fresh):
    if fresh:
        np.copyto(grad._data, g)
        leaf.grad = grad
    else:
        grad._data += g


def _redraw(name, out, *args, **kwargs):
    # generator() at replay time: a manual_seed between calls takes effect, as in eager
    np.copyto(out, getattr(firefly_random.generator(), name)(*args, **kwargs))


def _keep_result(kernel, holder, *args):
    holder[0] = kernel(*args)


def _derive(a, holder, i, n, j):
    result = holder[0] if isinstance(holder[0], tuple) else (holder[0],)
    divisor = n if j is None else result[j]
    # as the op: a zero divisor (nothing counted) gives NaN
    a[...] = np.array(result[i] / divisor if divisor else np.nan, dtype=a.dtype)


def _copy_result(kernel, args, recorded):
    result = kernel(*args)
    if isinstance(recorded, tuple):
        for dst, src in zip(recorded, result):
            if isinstance(dst, np.ndarray):
                np.copyto(dst, src)
    else:
        np.copyto(recorded, result)


class _Plan:
    """The second recording, as calls to make."""

    def __init__(self, recording, input_arrays, returned):
        self.calls = []
        numbers = {args[1]: [None] for kind, _, args, _ in recording.entries if kind == "derived"}
        for index, (kind, fn, args, extra) in enumerate(recording.entries):
            if kind == "kernel":
                fills, result, _ = extra
                for _, a, value in fills:
                    self.calls.append((np.copyto, (a, value)))
                if isinstance(result, np.ndarray) or (
                    isinstance(result, tuple) and any(isinstance(r, np.ndarray) for r in result)
                ):
                    self.calls.append((functools.partial(_copy_result, fn), (args, result)))
                elif index in numbers:
                    self.calls.append((functools.partial(_keep_result, fn, numbers[index]), args))
                else:
                    self.calls.append((fn, args))
            elif kind == "derived":
                a, source, i, n, j = args
                self.calls.append((_derive, (a, numbers[source], i, n, j)))
            elif kind == "cast":
                a, source = args
                self.calls.append((functools.partial(np.copyto, casting="unsafe"), (a, source)))
            elif kind == "sum":
                a, *terms = args
                self.calls.append((functools.partial(np.add, out=a), tuple(terms[:2])))
                for term in terms[2:]:
                    self.calls.append((functools.partial(np.add, out=a), (a, term)))
            elif kind == "leaf":
                self.calls.append((_set_leaf_gradient, args))
            elif kind == "draw":
                out, a, kw = args
                self.calls.append((functools.partial(_redraw, fn, out, **kw), a))
            else:
                owner, a, kw = args
                self.calls.append((functools.partial(fn, owner, **kw), a))
        self.inputs = input_arrays
        self.returned = returned
        self.guards = [(t, t.requires_grad, t._data, t.grad) for t in _leaves(recording)]
        kept = {id(_root(a)) for a in input_arrays}
        _rebuild(returned, lambda a: kept.add(id(_root(a))) if isinstance(a, np.ndarray) else None)
        kept.update(id(_root(t._data)) for t in _leaves(recording))
        kept.update(id(_root(t.grad._data)) for t in _leaves(recording) if t.grad is not None)
        # Roots the plan writes before it reads them, for share_memory at the first replay
        # (when no recording holds them any more); ids only, so that they may be freed.
        self.local = {
            key
            for key, (root, written) in recording.touched.items()
            if written and key not in kept and root.nbytes >= SHARE_MIN_BYTES
        }

    def valid(self):
        return all(
            t.requires_grad == rg and t._data is data and t.grad is grad
            for t, rg, data, grad in self.guards
        )

    def share_memory(self):
        """Let the step-local arrays (written by the plan before it reads them, referenced by
        nothing but the plan) share memory with one another where their lives (first to last
        call using them) do not overlap, each taking the most recently freed block that fits.
        The eager step's arrays, and the recording's, are each fresh memory: over a step they
        span several times the last-level cache, so each write began with a miss to DRAM; the
        most recently freed block is likelier to be in cache."""
        gc.collect()  # the recordings' graphs: a cycle could still hold their arrays
        uses, count, objects = collections.defaultdict(list), collections.Counter(), {}
        for index, call in enumerate(self.calls):
            for a in _arrays_in(call):
                count[id(a)] += 1
                objects[id(a)] = a
                uses[id(_root(a))].append(index)
        bases = collections.Counter(
            id(a.base) for a in objects.values() if isinstance(a.base, np.ndarray)
        )
        roots = {id(_root(a)): _root(a) for a in objects.values()}
        # What _references counts for an array that one dict alone holds: the interpreter's
        # own references during the call (which Python versions count differently) and 1.
        alone = _references({0: np.empty(0)}, 0)
        outside = set()
        for key in objects.keys() | roots.keys():
            # References beyond objects and roots: the plan's calls and the plan's views of
            # it. Any other is held outside the plan (say, a module attribute), and so is the
            # memory.
            held = _references(objects if key in objects else roots, key) - alone + 1
            held -= (key in objects) + (key in roots)
            a = objects.get(key, roots.get(key))
            if (
                held != count[key] + bases[key]
                or (a.base is not None and a.base is not _root(a))
                or min(a.strides, default=0) < 0
            ):
                outside.add(id(_root(a)))
            del a
        sizes = {key: root.nbytes for key, root in roots.items()}
        blocks = []  # [buffer, index of the last call using it]
        moved = {}
        for key in sorted((self.local & uses.keys()) - outside, key=lambda key: uses[key][0]):
            first, last, size = uses[key][0], uses[key][-1], sizes[key]
            free = [b for b in blocks if b[1] < first and b[0].nbytes >= size]
            block = max(free, key=lambda b: (b[1], -b[0].nbytes), default=None)
            if block is None:
                block = [np.empty(size, dtype=np.uint8), last]
                blocks.append(block)
            block[1] = last
            moved[key] = block[0]
        self.local = set()

        def moved_view(a):
            root = _root(a)
            buffer = moved.get(id(root))
            if buffer is None:
                return a
            offset = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
            return np.ndarray(a.shape, a.dtype, buffer=buffer, offset=offset, strides=a.strides)

        views = {key: moved_view(a) for key, a in objects.items()}
        self.calls = [_with_arrays(call, views) for call in self.calls]

    def replay(self, arrays):
        if self.local:
            self.share_memory()
        for dst, src in zip(self.inputs, arrays):
            if dst is not src:
                np.copyto(dst, src)
        for fn, args in self.calls:
            fn(*args)
        return _rebuild(self.returned, lambda a: Tensor(np.array(a, copy=True)))


def _references(container, key):
    """sys.getrefcount of container[key]."""
    return sys.getrefcount(container[key])


def _arrays_in(value):
    """The arrays in a plan's call: in its tuples and its partial functions' arguments."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, tuple):
        for v in value:
            yield from _arrays_in(v)
    elif isinstance(value, functools.partial):
        yield from _arrays_in(value.args)
        yield from _arrays_in(tuple(value.keywords.values()))


def _with_arrays(value, views):
    """``value`` (a call, as _arrays_in walks it) with each array replaced by views[id]."""
    if isinstance(value, np.ndarray):
        return views[id(value)]
    if isinstance(value, tuple):
        return tuple(_with_arrays(v, views) for v in value)
    if isinstance(value, functools.partial):
        return functools.partial(
            value.func,
            *_with_arrays(value.args, views),
            **{k: _with_arrays(v, views) for k, v in value.keywords.items()},
        )
    return value


def _rebuild(structure, leaf):
    if isinstance(structure, (tuple, list)):
        return type(structure)(_rebuild(s, leaf) for s in structure)
    return None if structure is None else leaf(structure)


# ---------------------------------------------------------------------- patching
def _subclasses(cls):
    seen, todo = [], [cls]
    while todo:
        c = todo.pop()
        seen.append(c)
        todo.extend(c.__subclasses__())
    return seen


class _RecordingKernel:
    """Stands in for a kernel on an op class while a recording runs."""

    def __init__(self, kernel, recording):
        self.kernel, self.recording = kernel, recording
        self.__name__ = getattr(kernel, "__name__", repr(kernel))

    def __call__(self, *args, **kwargs):
        if kwargs:  # firefly's kernels take positional arguments; this one is not understood
            self.recording.fail(f"kernel {self.__name__} was called with keyword arguments")
            return self.kernel(*args, **kwargs)
        return self.recording.kernel(self.kernel, args)

    def __getattr__(self, name):
        # e.g. a sized kernel's .serial: reached this way, the kernel runs unrecorded, and the
        # memory it writes is then unexplained (the step runs eagerly)
        return getattr(self.kernel, name)


@functools.cache
def _method_owners():
    from firefly.optim.lr_scheduler import LRScheduler
    from firefly.optim.optimizer import Optimizer

    return (Optimizer, ("step", "zero_grad")), (LRScheduler, ("step",))


class _Patched:
    """Installs the recorder's stand-ins, and removes them on exit."""

    def __init__(self, recording):
        self.recording = recording
        self.undo = []

    def __enter__(self):
        rec = self.recording
        # Kernels, random draws and leaf gradients through the hook points their layers
        # declare (firefly.ops.base.substituted_kernels, firefly.random.set_draw_hook,
        # firefly.autograd.set_leaf_gradient_hook).
        kernels = substituted_kernels(
            lambda k: _RecordingKernel(k, rec) if is_compiled_kernel(k) else k
        )
        kernels.__enter__()
        self.undo.append(lambda: kernels.__exit__(None, None, None))
        previous_draw_hook = firefly_random.set_draw_hook(_recording_generator(rec))
        self.undo.append(lambda: firefly_random.set_draw_hook(previous_draw_hook))
        previous_leaf_hook = autograd.set_leaf_gradient_hook(rec.leaf_gradient)
        self.undo.append(lambda: autograd.set_leaf_gradient_hook(previous_leaf_hook))
        # The optimizer and scheduler methods and the Tensor value readers are public methods:
        # wrapped on their classes for the recording's duration (a hook inside each would
        # cost every call outside recordings a check).
        for base, names in _method_owners():
            for cls in _subclasses(base):
                for name in names:
                    if name in cls.__dict__:
                        self._set(cls, name, _recorded_method(cls.__dict__[name], rec))
        for name in _VALUE_READS:
            if name in Tensor.__dict__:
                self._set(Tensor, name, _value_read(Tensor.__dict__[name], name, rec))
        return self

    def _set(self, owner, name, value):
        old = owner.__dict__[name]
        setattr(owner, name, value)
        self.undo.append(lambda: setattr(owner, name, old))

    def __exit__(self, *exc):
        for restore in reversed(self.undo):
            restore()


def _recording_generator(rec):
    """The draw hook while recording: ``generator()`` returns a stand-in whose draws are
    recorded."""

    class RecordingGenerator:
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            real = getattr(self.real, name)
            if not callable(real):
                return real
            return lambda *args, **kwargs: rec.draw(name, real, args, kwargs)

    return RecordingGenerator


def _recorded_method(function, rec):
    @functools.wraps(function)
    def method(self, *args, **kwargs):
        return rec.method(function, self, args, kwargs)

    return method


def _value_read(function, name, rec):
    @functools.wraps(function)
    def read(self, *args, **kwargs):
        rec.value_read(name)
        return function(self, *args, **kwargs)

    return read


# ---------------------------------------------------------------------- the compiled function
def _describe(value):
    if isinstance(value, Tensor):
        return ("Tensor", value.shape, value.dtype.str, value.requires_grad)
    if isinstance(value, np.ndarray):
        return ("ndarray", value.shape, value.dtype.str)
    hash(value)  # TypeError for an unhashable argument: such a call runs eagerly
    return ("value", type(value), value)


def _in_order(args, kwargs):
    """The arguments in the order the signature lists them (keywords sorted by name)."""
    return (*args, *(kwargs[k] for k in sorted(kwargs)))


def _private(value):
    """A copy of a Tensor/ndarray argument that the plan can own as its input buffer."""
    if isinstance(value, Tensor):
        return Tensor(
            np.array(value._data, copy=True), requires_grad=value.requires_grad, dtype=value.dtype
        )
    return np.array(value, copy=True)


class _Signature:
    __slots__ = ("recording", "recordings", "plan", "eager")

    def __init__(self):
        self.recording, self.recordings, self.plan, self.eager = None, 0, None, False


class CompiledFunction:
    """What ``firefly.compile(fn)`` returns; call it like ``fn``."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        # (grad mode, described args, described kwargs) -> its state, least recently used first
        self.signatures: collections.OrderedDict[tuple[Any, ...], _Signature] = (
            collections.OrderedDict()
        )
        self._warned: set[str] = set()
        functools.update_wrapper(self, fn)

    def status(self) -> dict[str, int]:
        """How many signatures replay a plan, run eagerly for good, or are still recording."""
        plans = sum(s.plan is not None for s in self.signatures.values())
        eager = sum(s.eager for s in self.signatures.values())
        return {"plans": plans, "eager": eager, "recording": len(self.signatures) - plans - eager}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            key = (
                autograd.is_grad_enabled(),
                tuple(map(_describe, args)),
                tuple(sorted((k, _describe(v)) for k, v in kwargs.items())),
            )
        except TypeError:
            return self.fn(*args, **kwargs)
        state = self.signatures.get(key)
        if state is None:
            state = self.signatures[key] = _Signature()
            if len(self.signatures) > MAX_PLANS:
                self.signatures.popitem(last=False)
        else:
            self.signatures.move_to_end(key)
        if state.eager:
            return self.fn(*args, **kwargs)
        if state.plan is not None:
            if state.plan.valid():
                return state.plan.replay(
                    [
                        _leaf_array(a) if isinstance(a, Tensor) else a
                        for a in _in_order(args, kwargs)
                        if isinstance(a, (Tensor, np.ndarray))
                    ]
                )
            state.plan, state.recording, state.recordings = None, None, 0
        return self._record(state, args, kwargs)

    def _record(self, state, args, kwargs):
        args = [_private(a) if isinstance(a, (Tensor, np.ndarray)) else a for a in args]
        kwargs = {
            k: _private(v) if isinstance(v, (Tensor, np.ndarray)) else v for k, v in kwargs.items()
        }
        inputs = [
            _leaf_array(a) if isinstance(a, Tensor) else a
            for a in _in_order(args, kwargs)
            if isinstance(a, (Tensor, np.ndarray))
        ]
        previous = state.recording
        rec = _Recording(previous, inputs)
        with _Patched(rec):
            result = self.fn(*args, **kwargs)
        returned = _rebuild(result, lambda t: self._returned_array(rec, t))
        rec.previous, rec.expected = None, {}  # what a later recording needs is in rec.kept
        state.recordings += 1
        if rec.problem is not None and (
            previous is not None or "reads a tensor's value" in rec.problem
        ):
            self._give_up(state, rec.problem)
        elif previous is not None:
            mine = [e for e in rec.entries if e[0] not in _EXPLANATIONS]
            theirs = [e for e in previous.entries if e[0] not in _EXPLANATIONS]
            if len(theirs) == len(mine) and all(map(_same_call, mine, theirs)):
                state.plan = _Plan(rec, inputs, returned)
                state.recording = None
            elif state.recordings >= MAX_RECORDINGS:
                self._give_up(
                    state,
                    "the recorded kernel calls differ from one call to the next "
                    "(Python control flow or values that change between steps): "
                    + _first_difference(mine, theirs),
                )
            else:
                state.recording = rec
        else:
            state.recording = rec
        if state.eager:
            return result
        # The plan's buffers change on every replay: hand back copies, as replay does.
        return _rebuild(
            result, lambda t: Tensor(np.array(t._data, copy=True)) if isinstance(t, Tensor) else t
        )

    def _returned_array(self, rec, t):
        if not isinstance(t, Tensor):
            rec.fail(
                f"the function returned a {type(t).__name__}; a compiled function may return "
                "tensors (or a tuple or list of them) or None"
            )
            return None
        a = _leaf_array(t)
        if (
            not rec._check_explained("the returned tensor", a)
            and not rec._derived(a)
            and not rec.explain_by_python(a)
        ):
            rec.fail("the function returned a tensor that no recorded kernel wrote")
        return a

    def _give_up(self, state, reason):
        state.eager, state.plan, state.recording = True, None, None
        if reason not in self._warned:
            self._warned.add(reason)
            warnings.warn(
                f"firefly.compile({getattr(self.fn, '__qualname__', self.fn)}): "
                f"runs eagerly: {reason}",
                RuntimeWarning,
                stacklevel=3,
            )


def compile(fn: Callable[..., Any]) -> CompiledFunction:
    """Record ``fn`` (typically zero_grad, forward, loss, backward and ``optimizer.step()``,
    returning the loss) and replay its kernels on later calls; see this module's docstring."""
    if not callable(fn):
        raise TypeError(f"firefly.compile: expected a function, got {type(fn).__name__}")
    return CompiledFunction(fn)
