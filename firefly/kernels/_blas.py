"""The thread count of the BLAS that Numba's ``np.dot`` calls (SciPy's), limited to one thread
around parallel kernels whose Numba threads each run their own products: OpenBLAS's threads and
Numba's then never ask for more than the cores between them.

The library is found through threadpoolctl (an optional dependency), on first use: importing
SciPy's BLAS and scanning the loaded libraries takes milliseconds, and then setting a thread
count is a C call. Without threadpoolctl the count cannot be set, and callers run such kernels
on one Numba thread, leaving BLAS its own threads.
"""

import contextlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

_controllers: list[Any] | None = None  # threadpoolctl's controllers of the loaded BLAS libraries


def _blas_controllers() -> list[Any]:
    global _controllers
    if _controllers is None:
        # SciPy's BLAS, which Numba's np.dot calls, is loaded first so that threadpoolctl
        # finds it beside NumPy's; by its extension alone, not through scipy.linalg's import.
        preload_scipy_blas()
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controllers = []
        else:
            _controllers = ThreadpoolController().select(user_api="blas").lib_controllers
    return _controllers


def can_limit_blas_threads() -> bool:
    """True when firefly can set the BLAS thread count (threadpoolctl installed, BLAS found)."""
    return bool(_blas_controllers())


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS limited to one thread inside the block; its earlier counts restored after."""
    controllers = _blas_controllers()
    before = [c.get_num_threads() for c in controllers]
    for controller, count in zip(controllers, before):
        if count != 1:
            controller.set_num_threads(1)
    try:
        yield
    finally:
        for controller, count in zip(controllers, before):
            if count != 1:
                controller.set_num_threads(count)


# SciPy's Cython BLAS and LAPACK, whose function pointers Numba's compiled np.dot and np.linalg
# fetch, by importing these modules, at their first run.
_SCIPY_KERNEL_LIBRARIES = ("scipy.linalg.cython_blas", "scipy.linalg.cython_lapack")


def preload_scipy_blas() -> None:
    """Load SciPy's ``cython_blas`` and ``cython_lapack`` extensions without the
    ``scipy.linalg`` package around them.

    Importing them the usual way imports ``scipy.linalg`` first, and with it SciPy's array-API
    layer: 0.15-0.2 s of CPU against 3 ms for the two extensions alone (measured on the loaded
    2-core machine), in every process whose kernels multiply matrices, from the cache or not.
    Numba finds them in ``sys.modules``. Should ``scipy.linalg`` be imported later, it gets
    them as attributes, as a normal import would have set (``_SetsPreloadedSubmodules``).
    Does nothing when SciPy is absent, when they are loaded already, or when their files are
    not where SciPy's wheels put them (Numba then imports them as before).
    """
    if all(name in sys.modules for name in _SCIPY_KERNEL_LIBRARIES):
        return
    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        return
    folder = os.path.join(spec.submodule_search_locations[0], "linalg")
    for name in _SCIPY_KERNEL_LIBRARIES:
        if name in sys.modules:
            continue
        short = name.rpartition(".")[2]
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, short + suffix)
            if os.path.exists(path):
                break
        else:
            return
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            return
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        sys.modules[name] = module
    if "scipy.linalg" in sys.modules:
        _set_submodules(sys.modules["scipy.linalg"])
    elif not any(isinstance(f, _SetsPreloadedSubmodules) for f in sys.meta_path):
        sys.meta_path.insert(0, _SetsPreloadedSubmodules())


def _set_submodules(package: ModuleType) -> None:
    for name in _SCIPY_KERNEL_LIBRARIES:
        if name in sys.modules:
            setattr(package, name.rpartition(".")[2], sys.modules[name])


class _SetsPreloadedSubmodules:
    """An import hook for ``scipy.linalg`` alone, removed at its first use: the package,
    once executed, gets the preloaded extensions as attributes."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "scipy.linalg":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is not None:
            execute = loader.exec_module

            def exec_module(module: ModuleType) -> None:
                execute(module)
                _set_submodules(module)

            loader.exec_module = exec_module
        return spec
