"""How firefly compiles kernels: one decorator, and serial/parallel twins chosen by size.

Every kernel is ``njit(cache=True, error_model="numpy")``. The numpy error model matters for
speed: under the default ("python") model Numba inserts a zero-division check into every
divide, which stops LLVM from vectorizing the loop (an Adam-like kernel ran 2.5x slower).

Nothing here compiles at import time: ``njit`` without signatures compiles on first call.
"""
import threading
import types
import warnings

from numba import njit
from numba.core.registry import CPUDispatcher

# Element counts from which the prange build of a kernel runs instead of the serial one.
# In isolation, on the quiet 2-core machine (benchmarks/measure_thresholds.py, table in its
# docstring), the parallel add first wins between 1e5 and 3e5 elements and the vectorized exp
# at 1e4. Training interleaves kernels with multithreaded BLAS calls, though, and a woken
# OpenMP pool then competes with OpenBLAS's spinning threads for the two cores: one step of the
# 784-256-128-10 MLP (batch 256, SGD momentum over 235k parameters) took a median 3.6 ms with
# the memory-bound threshold at 262k, 2.7 ms at 1M, and 2.3 ms with no parallel kernel at all
# (torch: 3.3 ms). So the thresholds sit well above the isolated crossovers: parallel builds
# are for arrays large enough that a few hundred microseconds are at stake.
PARALLEL_MIN_MEMORY_BOUND = 1_048_576
PARALLEL_MIN_TRANSCENDENTAL = 262_144

_cache_warning_issued = False
cache_enabled = True  # False once a kernel could not get a writable cache folder
_dispatchers = []  # every Numba dispatcher made here, for kernel_load_counts()


def kernel_load_counts():
    """``(loaded, compiled)``: how many kernel specializations this process has so far taken
    from the on-disk cache, and how many it compiled."""
    loaded = compiled = 0
    for dispatcher in _dispatchers:
        hits = len(dispatcher.stats.cache_hits)
        loaded += hits
        compiled += len(dispatcher.signatures) - hits
    return loaded, compiled


def _jit(fn, parallel, **extra_options):
    dispatcher = _compile_lazily(fn, parallel, **extra_options)
    _dispatchers.append(dispatcher)
    return dispatcher


def _compile_lazily(fn, parallel, **extra_options):
    global _cache_warning_issued, cache_enabled
    options = dict(error_model="numpy", parallel=parallel, **extra_options)
    try:
        return njit(cache=True, **options)(fn)
    except RuntimeError as exc:
        # Numba raises at decoration time when neither NUMBA_CACHE_DIR, the package's
        # __pycache__ nor the user cache folder is writable. Compiling without a cache
        # is slower to start but otherwise identical.
        cache_enabled = False
        if not _cache_warning_issued:
            _cache_warning_issued = True
            warnings.warn(
                f"firefly: Numba kernels will not be cached on disk ({exc}). Set NUMBA_CACHE_DIR "
                "to a writable folder to keep compiled kernels between runs.",
                RuntimeWarning,
                stacklevel=3,
            )
        return njit(cache=False, **options)(fn)


def kernel(fn):
    """Compile ``fn`` as a serial firefly kernel."""
    return _jit(fn, parallel=False)


def inline_helper(fn):
    """Compile ``fn`` as a helper that kernels call; Numba inlines it into each caller."""
    return _jit(fn, parallel=False, inline="always")


# The default workqueue threading layer aborts the process when two Python threads enter
# parallel kernels at the same time. Parallel kernels already use every core, so running
# them one at a time costs nothing and makes concurrent use from threads safe with any layer.
_parallel_lock = threading.Lock()


def _renamed(fn, suffix):
    # Numba names cache files after the function's qualname and line, and leaves compile flags
    # out of the key: a serial and a parallel build of one function would overwrite each
    # other's cache entries. A renamed copy gets files of its own.
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + suffix,
                              fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + suffix
    twin.__module__ = fn.__module__
    return twin


class SizedKernel:
    """A loop written with ``prange``, compiled twice: serially, and in parallel.

    Calling it runs the parallel build when the first argument has at least ``threshold``
    elements, and the serial build otherwise.
    """

    def __init__(self, fn, threshold):
        self.serial = _jit(fn, parallel=False)
        self.parallel = _jit(_renamed(fn, "__parallel"), parallel=True)
        self.threshold = threshold
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def __call__(self, *args):
        # The first argument is the main input and the last the output; the larger decides.
        if args[0].size < self.threshold and args[-1].size < self.threshold:
            return self.serial(*args)
        with _parallel_lock:
            return self.parallel(*args)

    def __repr__(self):
        return f"<firefly kernel {self.__name__} (parallel from {self.threshold} elements)>"


def memory_bound(fn):
    """A prange loop that moves memory (cheap arithmetic per element)."""
    return SizedKernel(fn, PARALLEL_MIN_MEMORY_BOUND)


def transcendental(fn):
    """A prange loop that calls exp, log, tanh or similar per element."""
    return SizedKernel(fn, PARALLEL_MIN_TRANSCENDENTAL)


def is_compiled_kernel(obj):
    """True for a Numba-compiled CPU function, or a serial/parallel pair of them."""
    if isinstance(obj, SizedKernel):
        return True
    return isinstance(obj, CPUDispatcher)
