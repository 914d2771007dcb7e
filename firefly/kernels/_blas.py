"""The thread count of the BLAS that Numba's ``np.dot`` calls (SciPy's), limited to one thread
around parallel kernels whose Numba threads each run their own products: OpenBLAS's threads and
Numba's then never ask for more than the cores between them.

The library is found through threadpoolctl (an optional dependency), on first use: importing
SciPy's BLAS and scanning the loaded libraries takes milliseconds, and then setting a thread
count is a C call. Without threadpoolctl the count cannot be set, and callers run such kernels
on one Numba thread, leaving BLAS its own threads.
"""

import contextlib
from collections.abc import Iterator
from typing import Any

_controllers: list[Any] | None = None  # threadpoolctl's controllers of the loaded BLAS libraries


def _blas_controllers() -> list[Any]:
    global _controllers
    if _controllers is None:
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS Numba's np.dot calls)
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
