"""Making Numba's tbb threading layer loadable where pip installed it.

The ``tbb`` pip package puts ``libtbb.so.12`` in ``<environment>/lib``, a folder the dynamic
loader does not search, and Numba's tbb extension asks the loader for the library by name: so
in a virtual environment tbb never loads unless ``LD_LIBRARY_PATH`` names that folder. Loading
the library once by its full path first makes the name resolve to the loaded copy.
"""

import ctypes
import os
import sys

import numba

TBB_LIBRARY = "libtbb.so.12"  # the name Numba's tbbpool extension is linked against
_tbb_preloaded: bool | None = None


def preload_tbb() -> bool:
    """Load pip's ``libtbb.so.12`` from the environment's ``lib`` folder, once, unless the user
    chose a threading layer other than tbb. True when the library is loaded by this call or an
    earlier one; False where there is none to load (Numba then picks the next layer)."""
    global _tbb_preloaded
    if _tbb_preloaded is not None:
        return _tbb_preloaded
    _tbb_preloaded = False
    chosen = str(getattr(numba.config, "THREADING_LAYER", "default")).lower()
    if not sys.platform.startswith("linux") or chosen in ("omp", "workqueue"):
        return False
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        path = os.path.join(prefix, "lib", TBB_LIBRARY)
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:  # a broken or foreign build: the layer stays unavailable
                return False
            _tbb_preloaded = True
            return True
    return False
