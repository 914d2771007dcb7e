"""How firefly compiles kernels: one decorator, and loops run serially or in shares by size.

Every kernel is ``njit(error_model="numpy")`` with an on-disk cache (``firefly.kernels._cache``:
one user-level folder, built per kernel on its first call), as a ``LazyDispatcher`` whose
Python half Numba builds on first use. The numpy error model matters for
speed: under the default ("python") model Numba inserts a zero-division check into every
divide, which stops LLVM from vectorizing the loop (an Adam-like kernel ran 2.5x slower).

Nothing here compiles at import time: ``njit`` without signatures compiles on first call.
"""

import ast
import contextlib
import functools
import hashlib
import inspect
import os
import sys
import textwrap
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import _dispatcher
from numba.core import errors, event, sigutils
from numba.core import types as numba_types
from numba.core.dispatcher import OmittedArg
from numba.core.registry import CPUDispatcher
from numba.core.typeconv.rules import default_type_manager
from numba.np import numpy_support
from numba.np.ufunc import parallel as _numba_parallel

from firefly.kernels import _cache
from firefly.kernels._blas import (
    preload_scipy_blas,
    single_threaded_blas,
)
from firefly.kernels._cache import (
    LazyKernelCache,
    _KernelCacheImpl,
    _llvm_lock_events_paused,
    report_cache_disabled,
    root_is_writable,
)
from firefly.kernels._shares import _ShareRaised, assume_nonnegative, each_share_of, share_range
from firefly.kernels._threading import preload_tbb

# Element counts from which the prange build of a kernel runs instead of the serial one.
# In isolation, on a quiet 2-core machine, the parallel add first wins between 1e5 and 3e5
# elements and the vectorized exp near 1e4 (benchmarks/measure_thresholds.py prints the
# table). Training interleaves kernels with multithreaded BLAS calls, though, and a woken
# pool then competes with BLAS's spinning threads for the cores: an MLP's training step
# (benchmarks/bench_training.py) got slower with the memory-bound threshold at 262k, where its
# 235k-parameter update went parallel. From 524k (2**19) elements the parallel build of add,
# mul and relu, op to op and interleaved on a quiet machine, took half the serial build's time
# at 1e6, and neither the MLP steps nor the digits CNN epoch changed (docs/performance.md,
# "The memory-bound threshold at two threads"). Below it an op's fixed cost is as large as the
# second core's gain.
PARALLEL_MIN_MEMORY_BOUND = 524_288
PARALLEL_MIN_TRANSCENDENTAL = 262_144

# The threading layer that runs the parallel builds, unless the user chose one through
# NUMBA_THREADING_LAYER or NUMBA_THREADING_LAYER_PRIORITY. Measured with
# `python -m benchmarks.measure_thresholds --layers` on the 2-core machine while other processes
# kept it loaded (docs/performance.md): a parallel call's fork/join cost ~2 us with tbb, ~70 us
# with workqueue and 30-48 ms with omp, whose join waits on a worker spinning for a core that
# another process holds. Numba's own order puts omp before workqueue; tbb is used when its
# library loads (the `tbb` pip package).
if not {"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & os.environ.keys():
    numba.config.THREADING_LAYER_PRIORITY = ["tbb", "workqueue", "omp"]  # type: ignore[attr-defined]
# Before any kernel asks Numba for its thread count, which starts the layer (~1 ms).
preload_tbb()

_first_kernel_checked = False
_dispatchers: list[CPUDispatcher] = []  # every Numba dispatcher made here, for kernel_load_counts()
_dispatcher_ids: set[int] = set()


def kernel_load_counts():
    """``(loaded, compiled)``: how many kernel specializations this process has so far taken
    from the on-disk cache, and how many it compiled."""
    loaded = compiled = 0
    for dispatcher in _dispatchers:
        if not dispatcher.is_complete:
            continue  # never called: nothing loaded or compiled
        hits = len(dispatcher.stats.cache_hits)
        loaded += hits
        compiled += len(dispatcher.signatures) - hits
    return loaded, compiled


def kernel_seconds():
    """``(compiling, loading)``: seconds this process has spent compiling firefly kernels
    (type inference and LLVM, as Numba's ``numba:compile`` event times it) and reading them
    from the on-disk cache."""
    return _compile_watch.seconds, LazyKernelCache.load_seconds


def _jit(fn, parallel, **extra_options):
    dispatcher = _compile_lazily(fn, parallel, **extra_options)
    _dispatchers.append(dispatcher)
    _dispatcher_ids.add(id(dispatcher))
    return dispatcher


def _compile_lazily(fn, parallel, **extra_options):
    global _first_kernel_checked
    # The options that njit(error_model="numpy", parallel=..., **extra_options) gives Numba.
    options = dict(error_model="numpy", parallel=parallel, **extra_options)
    dispatcher = LazyDispatcher(fn, dict(options, nopython=True, boundscheck=None))
    if not _first_kernel_checked:
        # One check, at the first kernel (so at import): whether any cache folder is writable.
        # The cache object of each kernel is built when it is first called (LazyKernelCache).
        _first_kernel_checked = True
        if not root_is_writable():
            try:
                _KernelCacheImpl(fn)  # Numba's own folders: the package's, then the user's
            except RuntimeError as exc:
                report_cache_disabled(exc)
    return dispatcher


_completing = threading.RLock()  # a kernel's compile completes the helpers it calls, nested
_libraries_preloaded = False


def _preload_libraries():
    """Once, before the process's first kernel runs: SciPy's BLAS and LAPACK extensions
    without scipy.linalg (``_blas.preload_scipy_blas``), since kernels that multiply
    matrices import them at their first run."""
    global _libraries_preloaded
    _libraries_preloaded = True
    try:
        preload_scipy_blas()
    except (ImportError, OSError):  # Numba then imports them the usual way, when it needs them
        pass


class LazyDispatcher(CPUDispatcher):
    """A Numba CPU dispatcher (``njit``) whose Python half is built on first use.

    Numba's constructor costs 150-400 us (``inspect.signature`` twice, a compiler object, a
    Numba type, a finalizer), and firefly makes some 600 kernels and helpers at import: 0.09 to
    0.17 s of ``import firefly`` on the loaded 2-core machine. Here the constructor runs only
    the C half, which Numba's call path needs (argument names and defaults, read from the code
    object), and sets what Numba's inliner and firefly read without calling (``py_func``,
    ``targetoptions``, the names). Every other attribute is missing until ``__getattr__``
    runs Numba's own constructor on the first access, which the first call makes (the C call
    path asks for ``_compile_for_args``), as does type inference when another kernel calls
    this one.

    It is a dispatcher, not a proxy in front of one: once complete, a call goes straight to
    Numba's C dispatch, and ``isinstance(k, CPUDispatcher)`` holds from the start.
    """

    def __init__(self, py_func, targetoptions):
        code = py_func.__code__
        # Numba's constructor reads the same from inspect.signature: positional and keyword
        # parameters, then *args (kernels take no **kwargs).
        n_params = code.co_argcount + code.co_kwonlyargcount
        has_stararg = bool(code.co_flags & inspect.CO_VARARGS)
        argnames = code.co_varnames[: n_params + has_stararg]
        defaults = tuple(OmittedArg(value) for value in py_func.__defaults__ or ())
        _dispatcher.Dispatcher.__init__(
            self,
            default_type_manager.get_pointer(),
            len(argnames),
            self._fold_args,
            argnames,
            defaults,
            False,  # can_fallback: nopython
            has_stararg,
            False,  # exact_match_required
        )
        functools.update_wrapper(self, py_func)
        self.py_func = py_func
        self.targetoptions = targetoptions

    @classmethod
    def _rebuild(cls, uuid, py_func, locals, targetoptions, can_compile, sigs):
        # Unpickled (Numba pickles a dispatcher as its function and options) as Numba's own
        # dispatcher, with the signature Numba's _rebuild calls it with.
        return CPUDispatcher._rebuild(uuid, py_func, locals, targetoptions, can_compile, sigs)

    literals_as_values = False  # set by called_helper

    def compile(self, sig):
        # Another kernel's call of a helper that is not inlined makes Numba compile the helper
        # for the call's argument types, literal constants included: conv's per-sample helper
        # was compiled twice in every conv kernel's compile, for n0 = Literal[int](0) on one
        # thread and for the prange's int64 n0 (4.8 and 6.4 s on the loaded machine, the
        # largest function in conv's kernels). A called helper compiles for the constants'
        # types instead (int64 for 0), to which the caller's typing converts each constant.
        if not self.literals_as_values:
            return super().compile(sig)
        args, _ = sigutils.normalize_signature(sig)
        return super().compile(tuple(numba_types.unliteral(arg) for arg in args))

    def typeof_pyval(self, val):
        # Numba types a plain ndarray argument through its typeof, which first asks whether
        # it is a ``numpy.ma.MaskedArray``: reading ``np.ma`` imports numpy.ma, 40-60 ms of
        # CPU in the first kernel call of every process, cached kernels or not. An exact
        # ndarray is never a masked one: it, and a tuple of them (an optimizer's states), are
        # typed here as Numba's typeof types them; anything else goes to Numba.
        tp = _array_type(val)
        if tp is None:
            return super().typeof_pyval(val)
        self._types_active_call.add(tp)
        return tp

    @property
    def is_complete(self) -> bool:
        """Whether Numba's constructor has run (the kernel was called, typed or inspected)."""
        return "_compiler" in self.__dict__

    def __getattr__(self, name):
        # Only reached for attributes that are missing: before completion, anything but the
        # few set above; after it, attributes that do not exist at all.
        with _completing:
            attributes = self.__dict__
            if "_compiler" in attributes:
                # Complete: by another thread while this one waited for the lock (two threads
                # calling a kernel for the first time at once), or the attribute does not exist.
                return object.__getattribute__(self, name)
            if attributes.get("_completing_now"):
                raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")
            attributes["_completing_now"] = True
            try:
                # Numba's constructor runs its C half again, with the same values.
                if not _libraries_preloaded:
                    _preload_libraries()
                CPUDispatcher.__init__(self, self.py_func, {}, self.targetoptions)
                if _cache.cache_enabled:
                    self._cache = LazyKernelCache(self.py_func)
            finally:
                del attributes["_completing_now"]
        return getattr(self, name)


def _array_type(val):
    """Numba's argument type of an exact ndarray, or of a non-empty tuple of them, read as
    Numba's typeof reads it (dtype, dimensions, layout, read-only flag); None for any other
    value, or a dtype Numba does not support (Numba's typeof then says why)."""
    if type(val) is np.ndarray:
        try:
            dtype = numpy_support.from_dtype(val.dtype)
        except errors.NumbaNotImplementedError:
            return None
        layout = numpy_support.map_layout(val)
        return numba_types.Array(dtype, val.ndim, layout, readonly=not val.flags.writeable)
    if type(val) is tuple and val:
        items = [_array_type(item) for item in val]
        if any(item is None for item in items):
            return None
        return numba_types.BaseTuple.from_types(items, tuple)
    return None


# Environment variable that silences the line printed when compiling takes a while.
QUIET_ENV = "FIREFLY_NO_COMPILE_NOTICE"
COMPILE_NOTICE_AFTER_SECONDS = 1.0


class _CompileWatch(event.Listener):
    """Times Numba's compiles of firefly's kernels and, once per process, says on stderr
    what is compiling when one has run for a second: a silent first run looks hung.

    It also pauses Numba's ``numba:llvm_lock`` events while a kernel compiles: two events
    around each of the thousands of calls into LLVM that a compile makes, which only time
    them for the compile's metadata (``timers``), and cost about a fifteenth of the compile's
    CPU. The compile runs under Numba's compiler lock, so no other compile loses its times."""

    def __init__(self):
        self.seconds = 0.0
        self.notice_given = False
        self._depth = 0  # a kernel's compile compiles the helpers it calls inside it
        self._start = 0.0
        self._timer = None
        self._paused = contextlib.ExitStack()

    def on_start(self, ev):
        if id(ev.data["dispatcher"]) not in _dispatcher_ids:
            return
        self._depth += 1
        if self._depth == 1:
            self._paused.enter_context(_llvm_lock_events_paused())
            self._start = time.perf_counter()
            if not self.notice_given and not os.environ.get(QUIET_ENV):
                self._timer = threading.Timer(
                    COMPILE_NOTICE_AFTER_SECONDS,
                    self._notice,
                    (_caller_name(ev.data["dispatcher"]),),
                )
                self._timer.daemon = True
                self._timer.start()

    def on_end(self, ev):
        if id(ev.data["dispatcher"]) not in _dispatcher_ids:
            return
        self._depth -= 1
        if self._depth == 0:
            self._paused.close()
            self.seconds += time.perf_counter() - self._start
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _notice(self, name):
        if not self.notice_given:
            self.notice_given = True
            print(
                f"compiling kernels for {name} (first use; cached for later runs, "
                "`python -m firefly warmup` fills the cache ahead)",
                file=sys.stderr,
                flush=True,
            )


def _caller_name(dispatcher):
    """The op (or optimizer) whose kernel is compiling: the nearest caller that is an op class
    or instance, else an optimizer, else the kernel's own name. An op is recognised by its
    ``name`` and ``forward_kernel`` attributes, since this layer does not import ops/."""
    frame = sys._getframe(2)
    while frame is not None:
        for local in ("cls", "op", "self"):
            value = frame.f_locals.get(local)
            name = getattr(value, "name", None)
            if isinstance(name, str) and name and hasattr(value, "forward_kernel"):
                return name
            if type(value).__module__.startswith(("firefly.optim", "firefly.nn.optimizers")):
                return type(value).__name__
        frame = frame.f_back
    # the qualname: a rewritten loop's or launcher's, as a specialised kernel's, starts with
    # the kernel's name (its __name__ may be the template's, or "launch")
    return dispatcher.py_func.__qualname__.rsplit(".", 1)[-1].split("__")[0]


_compile_watch = _CompileWatch()
event.register("numba:compile", _compile_watch)


def kernel(fn):
    """Compile ``fn`` as a serial firefly kernel."""
    return _jit(fn, parallel=False)


# ids of compiled helpers (inline_helper, scalar): called by kernels, not ops
_helpers: set[int] = set()


def inline_helper(fn):
    """Compile ``fn`` as a helper that kernels call; Numba inlines it into each caller."""
    helper = _jit(fn, parallel=False, inline="always")
    _helpers.add(id(helper))
    return helper


def called_helper(fn=None, *, reassociate=False):
    """Compile ``fn`` as a helper that kernels call as a function of its own, not inlined: a
    parallel kernel whose loop body calls it stays small, and compiles in a fraction of the
    time that the inlined copies take.

    ``@called_helper(reassociate=True)`` lets LLVM reorder the helper's float additions
    (fastmath's ``reassoc`` flag alone: NaN, infinity and signed-zero semantics, and unfused
    multiply-adds, stay exact), so that a running sum vectorizes into as many partial sums as
    its registers hold. Only for a helper that is a sum, whose order of terms is free: its
    caller, compiled without the flag, keeps its own arithmetic exact."""
    if fn is None:
        return functools.partial(called_helper, reassociate=reassociate)
    options = {"fastmath": {"reassoc"}} if reassociate else {}
    helper = _jit(fn, parallel=False, **options)
    helper.literals_as_values = True
    _helpers.add(id(helper))
    return helper


def scalar(fn):
    """``fn``, math on scalars that kernels call, compiled to be inlined into each kernel that
    calls it (returned unchanged if it is compiled already).

    The kernel families take an op's scalar math either as a plain Python function or
    compiled by this decorator (or any ``numba.njit``). Inlined by Numba before LLVM sees the
    loop, the call costs nothing and the loop vectorizes whenever the math does; LLVM's own
    inliner gives up on a function as large as log1p(exp(x)), and the loop then does not vectorize.
    """
    if isinstance(fn, CPUDispatcher):
        return fn
    if not callable(fn):
        raise TypeError(f"expected a function of scalars, got {fn!r}")
    return inline_helper(fn)


def _code_fingerprint(code, digest):
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_fingerprint(const, digest)
        else:
            digest.update(repr(const).encode())


def specialise(template, name, **functions):
    """A copy of the loop ``template`` named ``name``, whose global names ``functions`` (the
    op's scalar math) are bound to the given functions, compiled with ``scalar``.

    Nothing compiles here. Numba names a cache file after a function's qualified name and the
    line of its source, and checks the source file's time stamp: every copy of one template
    would share one file. So each copy's name carries a digest of the template's code and of
    the scalar functions' code: a specialisation gets a cache file of its own, and editing an
    op's scalar math gives it a new one. (Functions that the scalar math calls in turn are not
    in the name's digest; the cache's stamp covers their files, ``_cache._Dependencies``.)
    """
    digest = hashlib.sha1()
    _code_fingerprint(template.__code__, digest)
    bound = {}
    for placeholder, fn in functions.items():
        compiled = scalar(fn)
        _code_fingerprint(compiled.py_func.__code__, digest)
        bound[placeholder] = compiled
    namespace = dict(template.__globals__, **bound)
    qualname = f"{name}__{digest.hexdigest()[:12]}"
    copy = types.FunctionType(
        template.__code__, namespace, qualname, template.__defaults__, template.__closure__
    )
    copy.__qualname__ = qualname
    copy.__module__ = template.__module__
    copy.__doc__ = template.__doc__
    return copy


# The default workqueue threading layer aborts the process when two Python threads enter
# parallel kernels at the same time. Parallel kernels already use every core, so running
# them one at a time costs nothing and makes concurrent use from threads safe with any layer.
_parallel_lock = threading.Lock()


# id -> every kernel made by sized_kernel, for is_sized_kernel()
_sized_kernels: dict[int, Callable[..., object]] = {}


def _launched_thread_count():
    """``numba.get_num_threads()``: the calling thread's count, read straight from the
    threading layer once the layer is up. Numba's own function takes two locks on every call,
    to launch the layer the first time, and the size-chosen kernels ask it on every call that
    may run in parallel. The first call launches the layer through it and then rebinds
    ``_thread_count`` to the layer's C getter, which reads the same thread-local count
    (``numba.set_num_threads`` sets it), where Numba names it."""
    global _thread_count
    count = numba.get_num_threads()
    _thread_count = getattr(_numba_parallel, "_get_num_threads", numba.get_num_threads)
    return count


_thread_count = _launched_thread_count


def thread_count() -> int:
    """``numba.get_num_threads()``, the calling thread's count, without its two locks per call
    after the first (``_launched_thread_count``): for the ops that pick a build or a number of
    shares on every call."""
    return _thread_count()


# Shares per thread of a size-chosen kernel's parallel run: more than one, so that a thread
# whose core another process holds falls behind by a share, not by half the loop, without
# stalling the join; each share costs a call.
SHARES_PER_THREAD = 4


class SharesError(TypeError):
    """A ``sized_kernel`` loop that cannot be cut into shares."""


def _is_prange(node):
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "prange"
        and len(node.args) in (1, 2)
        and not node.keywords
    )


def _loop_path(body, loop):
    """The statements from ``body`` down to the ``for`` statement ``loop``, each the last of
    its body but for bare returns after the outermost (and each an enclosing ``for``), or None
    if ``loop`` is not so placed: the shares then do their parts of every enclosing loop's
    iterations, which a barrier between those iterations would have ordered otherwise."""
    if not body:
        return None
    last = body[-1]
    if last is loop:
        return [last]
    if isinstance(last, ast.For) and not last.orelse:
        path = _loop_path(last.body, loop)
        if path is not None:
            return [last, *path]
    return None


def _shared_loop(fn):
    """``fn``, a kernel with one ``prange`` loop, rewritten as ``fn(t__, threads__, *its
    parameters)``, which runs the statements before the loop and share t__ of threads__ of the
    loop's range (``_launcher`` runs the shares at once).

    The loop may be nested in plain ``for`` loops, each the last statement of its parent's
    body; nothing but a bare return may follow it, and the kernel returns no value. A prange
    loop's iterations are independent by its contract, so the shares of its range together
    compute what the loop computes.
    """
    code = fn.__code__
    if fn.__closure__:
        raise SharesError(f"kernel {fn.__qualname__}: a closure cannot be cut into shares")
    try:
        source = inspect.getsource(code)
    except (OSError, TypeError):  # defined in an interpreter session, or shipped without source
        raise SharesError(f"kernel {fn.__qualname__}: no source to rewrite") from None
    definition = ast.parse(textwrap.dedent(source)).body[0]
    assert isinstance(definition, ast.FunctionDef)
    pranges = [node for node in ast.walk(definition) if _is_prange(node)]
    loops = [
        node for node in ast.walk(definition) if isinstance(node, ast.For) and node.iter in pranges
    ]
    body = definition.body
    if len(pranges) != 1 or len(loops) != 1:
        raise SharesError(
            f"kernel {fn.__qualname__}: a size-chosen kernel has exactly one prange loop "
            f"(prange(stop) or prange(start, stop)); found {len(pranges)}"
        )
    (loop,) = loops
    end = next(i for i, s in enumerate(body) if loop in ast.walk(s)) + 1  # past the loop's
    trailing = body[end:]
    path = _loop_path(body[:end], loop)
    returns = [node for node in ast.walk(definition) if isinstance(node, ast.Return)]
    if (
        path is None
        or loop.orelse
        or any(not (isinstance(s, ast.Return) and s.value is None) for s in trailing)
        or any(r.value is not None for r in returns)
        or {"t__", "threads__"} & set(code.co_varnames)
    ):
        raise SharesError(
            f"kernel {fn.__qualname__}: its prange loop must be the last statement of the "
            "kernel (or of plain for loops that are), and the kernel must return nothing"
        )
    bounds = loop.iter.args
    start = bounds[0] if len(bounds) == 2 else ast.Constant(0)
    count = ast.BinOp(bounds[-1], ast.Sub(), start) if len(bounds) == 2 else bounds[0]
    parent = path[-2].body if len(path) > 1 else body
    share = ast.parse("lo__, hi__ = share_range__(t__, threads__, COUNT)").body[0]
    share.value.args[2] = count  # type: ignore[attr-defined]
    parent.insert(parent.index(loop), share)
    if len(bounds) == 1 and isinstance(loop.target, ast.Name):
        # Numba wraps a negative index around, and LLVM cannot tell that an index counted
        # from lo__ (not from 0) is never negative: the loop kept a compare and select per
        # access and did not vectorize (an add ran 10x slower than with range(n)).
        loop.body.insert(0, ast.parse(f"assume_nonnegative__({loop.target.id})").body[0])
    loop.iter = ast.Call(
        ast.Name("range", ast.Load()),
        [
            ast.BinOp(start, ast.Add(), ast.Name("lo__", ast.Load())),
            ast.BinOp(start, ast.Add(), ast.Name("hi__", ast.Load())),
        ],
        [],
    )
    definition.args.args[:0] = [ast.arg("t__"), ast.arg("threads__")]
    definition.decorator_list = []
    module = ast.Module([definition], [])
    ast.fix_missing_locations(module)
    ast.increment_lineno(module, code.co_firstlineno - 1)
    namespace = dict(
        fn.__globals__, assume_nonnegative__=assume_nonnegative, share_range__=share_range
    )
    exec(compile(module, code.co_filename, "exec"), namespace)
    shared = namespace[definition.name]
    shared.__defaults__ = fn.__defaults__
    # Named apart from the loop as written: Numba names cache files after the qualname.
    shared.__qualname__ = fn.__qualname__ + "__shares"
    shared.__module__, shared.__doc__ = fn.__module__, fn.__doc__
    return shared


def _launcher(fn, loop):
    """``launch(threads, *fn's parameters)``: the compiled ``loop`` (``_shared_loop(fn)``)
    run in ``threads`` shares at once (``each_share_of``); returns how many shares raised."""
    code = fn.__code__
    names = ", ".join(code.co_varnames[: code.co_argcount])
    source = (
        f"def launch(threads__, {names}):\n"
        f"    return each_share_of__(LOOP__, threads__, ({names},))\n"
    )
    namespace = {"each_share_of__": each_share_of, "LOOP__": loop}
    exec(compile(source, code.co_filename, "exec"), namespace)
    launch = namespace["launch"]
    launch.__qualname__ = fn.__qualname__ + "__launch"
    launch.__module__ = fn.__module__
    return _jit(launch, parallel=False)


def _renamed(fn, suffix):
    # Numba names cache files after the function's qualname and line, and leaves compile flags
    # out of the key: a serial and a parallel build of one function would overwrite each
    # other's cache entries. A renamed copy gets files of its own.
    twin = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__ + suffix, fn.__defaults__, fn.__closure__
    )
    twin.__qualname__ = fn.__qualname__ + suffix
    twin.__module__ = fn.__module__
    return twin


def _parfor_launcher(fn):
    """For a loop that ``_shared_loop`` cannot cut into shares (several prange loops, or work
    after one): its parfor build, called as a launcher is (``launch(shares, *args)``; the
    parfor build raises a share's error itself)."""
    parallel = _jit(_renamed(fn, "__parallel"), parallel=True)

    def launch(shares, *args):
        return parallel(*args)

    return launch, parallel


def _serial_build(fn):
    """``sized_kernel``'s serial run: the loop compiled as written."""
    build = _jit(fn, parallel=False)
    return build, (build,)


def _share_run(fn):
    """``sized_kernel``'s parallel run: the loop cut into shares and their launcher, or the
    loop's parfor build where it cannot be cut."""
    try:
        loop = _jit(_shared_loop(fn), parallel=False)
    except SharesError:
        launch, parallel = _parfor_launcher(fn)
        return launch, None, (parallel,)

    def rerun(shares, *args):
        for t in range(shares):
            loop(t, shares, *args)

    launcher = _launcher(fn, loop)

    def launch(shares, *args):
        if launcher(shares, *args):
            raise _ShareRaised("a share raised")

    return launch, rerun, (loop, launcher)


def size_chosen(
    fn: Callable[..., object],
    threshold: int,
    make_serial: Callable[[], tuple],
    make_parallel: Callable[[], tuple],
) -> Callable[..., object]:
    """The kernel ``kernel(*args)`` named after ``fn``: its serial run, or, when its first or
    last argument (the main input, the output) has at least ``threshold`` elements and Numba
    has more than one thread, its parallel run in ``SHARES_PER_THREAD`` shares per thread.

    Each run is made on its first use: ``make_serial()`` returns ``(serial, dispatchers)``,
    ``serial(*args)`` the serial run; ``make_parallel()`` returns ``(launch, rerun,
    dispatchers)``, ``launch(shares, *args)`` running the shares at once and returning the
    kernel's result, or raising ``_ShareRaised`` if a share raised, and ``rerun(shares,
    *args)`` running them again on the calling thread to raise the error (None where launch
    raises it itself). ``sized_kernel`` makes both from a
    prange loop; ``reduce.partials_kernel`` from a driven kernel.

    The result has ``serial`` and ``parallel`` attributes that run the kernel either way
    whatever the size, ``threshold``, read per call (a test sets it to force either run), and
    ``dispatchers()``, the Numba dispatchers (the serial run's, made by asking, and the
    parallel run's once it has run). Nothing is made until the first call, so that importing
    firefly parses no kernel's source and builds no dispatcher. A closure rather than an
    object with ``__call__``: it runs once per op, and a Python-level ``__call__`` costs twice
    as much.
    """
    building = threading.Lock()

    def build():
        with building:
            if run.serial_build is None:
                serial_build, made = make_serial()
                run.builds = (*made, *run.builds)
                run.serial_build = serial_build
        return run.serial_build

    def launched(threads, args):
        if run.launch is None:
            with building:
                if run.launch is None:
                    # Its code calls the threading layer's functions, whose symbols launching
                    # the layer registers: before it is compiled or loaded (run_shares).
                    thread_count()
                    launch, run.rerun, made = make_parallel()
                    run.builds += made
                    run.launch = launch
        shares = threads * SHARES_PER_THREAD
        try:
            with _parallel_lock:
                return run.launch(shares, *args)
        except _ShareRaised:
            return run.rerun(shares, *args)  # each share again, here, to raise its error

    def serial(*args):
        return (run.serial_build or build())(*args)

    def parallel(*args):
        return launched(_thread_count(), args)

    def run(*args):
        limit = run.threshold  # read per call, so that a test can force either run
        # With one Numba thread a parallel region costs and gains nothing.
        if (args[0].size < limit and args[-1].size < limit) or (threads := _thread_count()) == 1:
            return (run.serial_build or build())(*args)
        return launched(threads, args)

    def dispatchers():
        build()
        return run.builds

    kernel: Any = run  # a function with attributes
    kernel.serial_build = kernel.launch = kernel.rerun = None
    kernel.builds = ()
    kernel.threshold, kernel.serial, kernel.parallel = threshold, serial, parallel
    kernel.dispatchers = dispatchers
    kernel.__name__, kernel.__qualname__ = fn.__name__, fn.__qualname__
    kernel.__doc__, kernel.__module__ = fn.__doc__, fn.__module__
    kernel.__wrapped__ = fn  # the kernel as written (inspect.signature follows it)
    _sized_kernels[id(run)] = run
    return run


def sized_kernel(fn, threshold):
    """A loop written with ``prange``, run on the calling thread, or in shares on all of
    Numba's threads, as its size chooses (``size_chosen``).

    The serial run is ``fn`` compiled as it is written. The parallel run is ``fn``'s loop
    rewritten to run one share of its range (``_shared_loop``), and a small launcher that runs
    the shares (``_launcher``), both compiled at the first parallel call: together a fraction
    of the parfor build they replace (the parfor pass, and the loop body optimized again in
    its gufunc), and nothing for a process whose arrays stay small. The serial run does not
    call the share loop with one share of all: with a share's bounds unknown to LLVM, the loop
    compiles slower (more runtime checks around the vectorized loop; docs/architecture.md has
    the numbers). A loop that cannot be cut into shares gets its parfor build
    (``_parfor_launcher``).
    """
    return size_chosen(fn, threshold, lambda: _serial_build(fn), lambda: _share_run(fn))


def is_sized_kernel(obj):
    """True for a kernel made by ``sized_kernel``."""
    return obj is not None and _sized_kernels.get(id(obj)) is obj


def memory_bound(fn):
    """A prange loop that moves memory (cheap arithmetic per element)."""
    return sized_kernel(fn, PARALLEL_MIN_MEMORY_BOUND)


def transcendental(fn):
    """A prange loop that calls exp, log, tanh or similar per element."""
    return sized_kernel(fn, PARALLEL_MIN_TRANSCENDENTAL)


COSTS = {"memory": memory_bound, "transcendental": transcendental}


def build_specialised(template: Callable, name: str, cost: str, **functions: Callable) -> Callable:
    """``template`` specialised with ``functions`` (``specialise``) and compiled as a
    size-chosen kernel (``sized_kernel``) with the threshold of ``COSTS[cost]``: "memory" for
    loops that move memory, "transcendental" for loops with exp, sqrt, division or similar per
    element. The kernel families (ops' and optimizers') all build through here."""
    try:
        sized = COSTS[cost]
    except KeyError:
        raise ValueError(
            f"kernel {name!r}: cost must be one of {sorted(COSTS)}, got {cost!r}"
        ) from None
    return sized(specialise(template, name, **functions))


# id -> every kernel that is a Python function around compiled ones: made by kernel_driver.
_python_kernels: dict[int, Callable[..., object]] = {}


def driven_kernel(fn):
    """Compile ``fn`` as a serial kernel that a ``kernel_driver`` calls: directly, or through
    ``run_shares`` on shares of a batch at once on Numba's threads. A kernel for run_shares is
    ``fn(t, threads, *args)``, the work of share t of ``threads``, and begins with ``if t < 0:
    return each_share(threads)``, which runs the kernel itself for each t. It compiles once,
    without the parfor pass: a prange kernel links the helper its body calls into the gufunc
    and into itself and optimizes it three times (conv's position-major backward compiled in a
    third of the time this way, docs/architecture.md). Registered as a helper: ops call a
    ``kernel_driver``, never this directly."""
    driven = _jit(fn, parallel=False)
    _helpers.add(id(driven))
    return driven


def kernel_driver(fn):
    """``fn``, a Python function that calls ``driven_kernel``s (through ``run_shares``, or one
    of several as the call needs, each compiled at its first call only), registered as an
    op's kernel (``is_compiled_kernel``)."""
    _python_kernels[id(fn)] = fn
    return fn


def run_shares(
    kernel: Callable[..., object], threads: int, *args: object, limit_blas: bool = True
) -> object:
    """``kernel(t, threads, *args)`` for t in range(threads), a ``driven_kernel``, at once on
    Numba's threads (the kernel called with t = -1, which runs ``each_share``), with BLAS
    limited to one thread meanwhile, so that every thread does its own products and the two
    thread pools never hold more than the cores between them; ``limit_blas=False`` leaves
    BLAS's count alone, for kernels whose products are all too small for OpenBLAS to thread
    (setting and restoring the count costs microseconds per call). ``threads``, the number of
    shares, is Numba's thread count, as a prange's would be, or a multiple of it
    (``sized_kernel``). One share is the kernel called for share 0, without a parallel
    region. If a share raised, the shares run again one after another on the calling thread,
    which raises its error (each share writes only its own part of the outputs, so the second
    run overwrites the first). Returns what the kernel returns."""
    # Before the kernel is compiled or loaded, on one thread too: its code calls the threading
    # layer's functions, whose symbols launching the layer registers (a process that had not
    # registered them crashed linking a max_pool2d kernel). thread_count() launches it at its
    # first call, and is a plain read after that.
    thread_count()
    if threads == 1:
        return kernel(0, 1, *args)
    try:
        with _parallel_lock, single_threaded_blas() if limit_blas else contextlib.nullcontext():
            return kernel(-1, threads, *args)
    except _ShareRaised:
        for t in range(threads):
            kernel(t, threads, *args)
    return None


def is_compiled_kernel(obj):
    """True for a Numba-compiled CPU function, a serial/parallel pair of them, or a kernel made
    by ``kernel_driver``."""
    if is_sized_kernel(obj) or (obj is not None and _python_kernels.get(id(obj)) is obj):
        return True
    return isinstance(obj, CPUDispatcher)


def is_helper(obj):
    """True for a function compiled by ``inline_helper`` or ``scalar``, or any Numba function
    compiled to be inlined: math that kernels call, never run by an op directly."""
    if not isinstance(obj, CPUDispatcher):
        return False
    return id(obj) in _helpers or obj.targetoptions.get("inline", "never") != "never"
