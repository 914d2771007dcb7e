"""Where compiled kernels live on disk, and how a damaged cache is survived.

The cache is one user-level folder, shared by every clone, virtual environment and test run
of one firefly version on one CPU::

    $NUMBA_CACHE_DIR/firefly/<version>-<cpu>/     when NUMBA_CACHE_DIR is set
    $XDG_CACHE_HOME/firefly/<version>-<cpu>/      else, when XDG_CACHE_HOME is set
    ~/.cache/firefly/<version>-<cpu>/             else

Inside it, a kernel's files sit in the folder of its source file relative to the firefly
package (``kernels/``, ``ops/``), so that two clones share them. Each kernel is stamped with a
digest of what its compiled code is made of (``kernel_dependencies_digest``): its own source
file, the files of the helpers it inlines or calls (vmath's exp, an op's scalar math, the
helpers' helpers), found by following the kernel's global names rather than from a list kept
by hand, and the constants Numba freezes into it. An edit of conv.py then recompiles conv's
kernels and leaves the others loadable; an edit of vmath.py recompiles every kernel that
inlines from it, never loading a stale one. The index file names carry that stamp too, so that
clones whose sources differ keep files of their own (an edit leaves the old entries behind
until ``python -m firefly cache clear``). Numba keys each entry on the function's bytecode and
the CPU. firefly adds its version to the stamp, so that a cache filled by another version is
recompiled, never loaded.

When that folder is not writable, Numba's own locations follow (the package's ``__pycache__``,
then Numba's user-wide folder); when none is, kernels compile without a cache.

Numba's cache reader trusts its files: a truncated or corrupt file raises an unpickling error
out of the kernel's first call. ``KernelCache`` turns any failure to read an entry into a
warning and a recompile, and names data files after their key rather than a counter, so that
processes filling one cache at once never write two signatures to one file name.
"""

import contextlib
import functools
import hashlib
import os
import pickle
import shutil
import sys
import time
import types
import warnings

import numpy as np
from llvmlite.binding import ffi
from numba.core import caching, config, environment, sigutils
from numba.core.runtime import rtsys

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# kinds of cache problem already reported in this process: one warning each
_warned: set[str] = set()


cache_enabled = True  # False once no writable cache folder was found
_cache_warning_issued = False


def report_cache_disabled(reason):
    """Compile without an on-disk cache from now on, saying so once."""
    global _cache_warning_issued, cache_enabled
    cache_enabled = False
    if not _cache_warning_issued:
        _cache_warning_issued = True
        warnings.warn(
            f"firefly: Numba kernels will not be cached on disk ({reason}). Set NUMBA_CACHE_DIR "
            "to a writable folder to keep compiled kernels between runs.",
            RuntimeWarning,
            stacklevel=5,
        )


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _firefly_version() -> str:
    import firefly  # the package is fully imported by the time a kernel compiles or loads

    return firefly.__version__


def cache_root() -> str:
    """The folder that holds firefly's kernel caches, of every version and CPU."""
    numba_cache_dir = config.CACHE_DIR  # type: ignore[attr-defined]  # set from NUMBA_CACHE_DIR
    if numba_cache_dir:
        return os.path.join(numba_cache_dir, "firefly")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "firefly")


_cpu_key = None


def _cpu() -> str:
    """The host CPU's name and a digest of its features: code compiled for one is not run on
    another (Numba's index keys say so too; the folder name keeps the caches apart)."""
    global _cpu_key
    if _cpu_key is None:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features().flatten()
        digest = hashlib.sha1(features.encode()).hexdigest()[:8]
        _cpu_key = f"{llvm.get_host_cpu_name()}-{digest}"
    return _cpu_key


def cache_folder() -> str:
    """The folder this process reads and writes firefly's kernels in (made on first use)."""
    return os.path.join(cache_root(), f"{_firefly_version()}-{_cpu()}")


# folder -> whether it could be made and written, checked once per process
_writable: dict[str, bool] = {}


def _is_writable(folder: str) -> bool:
    if folder not in _writable:
        try:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f".probe-{os.getpid()}"), "wb"):
                pass
            os.remove(os.path.join(folder, f".probe-{os.getpid()}"))
            _writable[folder] = True
        except OSError:
            _writable[folder] = False
    return _writable[folder]


def root_is_writable() -> bool:
    """Whether firefly's own cache folder can be used (checked at the first kernel)."""
    return _is_writable(cache_root())


@functools.cache
def _file_digest(path: str) -> bytes:
    """The SHA-1 of a source file's content, read once per process."""
    with open(path, "rb") as source:
        return hashlib.sha1(source.read()).digest()


@functools.cache
def _absolute(path: str) -> str:
    return os.path.abspath(path)


def _code_names(code: types.CodeType) -> set[str]:
    """Every global and attribute name that ``code`` and the code nested in it read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _compiled_function(value: object) -> types.FunctionType | None:
    """The Python function that Numba compiles when a kernel calls ``value``: a dispatcher's
    ``py_func``, an intrinsic's definition, or a plain function (``register_jitable``)."""
    if isinstance(value, types.FunctionType):
        return value
    function = getattr(value, "py_func", None)
    if function is None and type(value).__module__.startswith("numba."):
        function = getattr(value, "_defn", None)  # numba.extending.intrinsic
    return function if isinstance(function, types.FunctionType) else None


def _is_constant(value: object) -> bool:
    """A value that Numba freezes into the compiled code when a kernel reads it as a global."""
    if isinstance(value, tuple):
        return all(_is_constant(item) for item in value)
    return value is None or isinstance(value, (int, float, complex, str, bytes, np.generic))


def _home(py_func: types.FunctionType) -> tuple[str, ...]:
    """The folders of the top-level package that defines ``py_func`` (each ending in a
    separator), or the file of the module that does when it is no package."""
    top = sys.modules.get((py_func.__module__ or "").partition(".")[0])
    folders = getattr(top, "__path__", None)
    if folders:
        return tuple(_absolute(folder) + os.sep for folder in folders)
    return (_absolute(getattr(top, "__file__", None) or py_func.__code__.co_filename),)


class _Dependencies:
    """What a kernel's compiled code is made of, found by following its global names: the
    source files of every function that Numba compiles into it (its own, the helpers it
    inlines or calls, those helpers' helpers) and of every module it reads through, and the
    values of the constants that Numba freezes into it. Only files in the firefly package and
    in the kernel's own top-level package or module (a plugin's) are followed, not NumPy's or
    Numba's."""

    def __init__(self, py_func: types.FunctionType) -> None:
        self.home = _home(py_func)
        self.files: set[str] = set()
        self.constants: set[bytes] = set()
        self._seen: set[int] = set()
        self._function(py_func)

    def _followed(self, path: str | None) -> bool:
        if not path or not path.endswith(".py"):
            return False
        path = _absolute(path)
        return path.startswith(_PACKAGE_ROOT + os.sep) or path.startswith(self.home)

    def _function(self, function: types.FunctionType) -> None:
        if id(function) in self._seen:
            return
        self._seen.add(id(function))
        if not self._followed(function.__code__.co_filename):
            return
        self.files.add(_absolute(function.__code__.co_filename))
        names = _code_names(function.__code__)
        namespace = function.__globals__
        for name in sorted(names & namespace.keys()):
            self._value(name, namespace[name], names)
        for name, cell in zip(function.__code__.co_freevars, function.__closure__ or ()):
            try:
                self._value(name, cell.cell_contents, names)
            except ValueError:  # an empty cell
                pass

    def _value(self, name: str, value: object, names: set[str]) -> None:
        if isinstance(value, types.ModuleType):
            # ``vmath.exp``: the module's file, and the functions read from it by name.
            if self._followed(getattr(value, "__file__", None)):
                self.files.add(_absolute(value.__file__))
                attributes = vars(value)
                for attribute in sorted(names & attributes.keys()):
                    function = _compiled_function(attributes[attribute])
                    if function is not None:
                        self._function(function)
            return
        function = _compiled_function(value)
        if function is not None:
            self._function(function)
        elif isinstance(value, np.ndarray):
            digest = hashlib.sha1(f"{name}:{value.dtype}:{value.shape}:".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
            self.constants.add(digest.digest())
        elif _is_constant(value):
            self.constants.add(f"{name}={value!r}".encode())
        else:  # a class or other object: the file that defines it
            module = sys.modules.get(getattr(value, "__module__", None) or "")
            if module is not None and self._followed(getattr(module, "__file__", None)):
                self.files.add(_absolute(module.__file__))

    def digest(self) -> str:
        digest = hashlib.sha1()
        for path in sorted(self.files):
            # firefly's own files by their place in the package, not on disk: two clones of
            # one source then stamp a kernel alike and share its cache entries
            inside = path.startswith(_PACKAGE_ROOT + os.sep)
            digest.update((os.path.relpath(path, _PACKAGE_ROOT) if inside else path).encode())
            digest.update(_file_digest(path))
        for constant in sorted(self.constants):
            digest.update(constant)
        return digest.hexdigest()[:16]


def kernel_dependencies_digest(py_func: types.FunctionType) -> str:
    """A digest of what ``py_func``'s compiled code depends on (``_Dependencies``): an edit of
    one of those files, or a changed constant, gives its cache entries a new stamp, while an
    edit elsewhere leaves them loadable."""
    return _Dependencies(py_func).digest()


class _FireflyFolderLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Places a kernel's files in ``cache_folder()``, under its source file's folder relative
    to the firefly package (or, for a kernel outside it, Numba's digest of that folder)."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._py_func = py_func
        self._lineno = py_func.__code__.co_firstlineno
        source_dir = os.path.dirname(os.path.abspath(py_file))
        if os.path.commonpath([source_dir, _PACKAGE_ROOT]) == _PACKAGE_ROOT:
            subpath = os.path.relpath(source_dir, _PACKAGE_ROOT)
        else:
            subpath = self.get_suitable_cache_subpath(py_file)
        self._cache_path = os.path.normpath(os.path.join(cache_folder(), subpath))

    def get_cache_path(self):
        return self._cache_path

    @functools.cached_property
    def _dependencies_digest(self):
        return kernel_dependencies_digest(self._py_func)

    def get_source_stamp(self):
        return (super().get_source_stamp(), self._dependencies_digest)

    def get_disambiguator(self):
        # The line, and a digest of the source file's content: two clones or branches whose
        # file differs keep index files of their own instead of overwriting each other's.
        # (Numba 0.68 stamps with a content hash; older versions with a time and size.)
        stamp = hashlib.sha1(repr(self.get_source_stamp()).encode()).hexdigest()[:10]
        return f"{self._lineno}-{stamp}"

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.exists(py_file) or not root_is_writable():
            return None
        locator = cls(py_func, py_file)
        return locator if _is_writable(locator.get_cache_path()) else None


class _KernelCacheImpl(caching.CompileResultCacheImpl):
    # firefly's folder first (it is under NUMBA_CACHE_DIR when that is set), then Numba's own
    # places for when it is not writable.
    _locator_classes = [
        _FireflyFolderLocator,
        *(
            cls
            for cls in caching.CompileResultCacheImpl._locator_classes
            if cls.__name__ != "UserProvidedCacheLocator"
        ),
    ]


def _rebuild_environment(modname, consts, env_name):
    """Numba's ``_rebuild_env``, without importing a Numba module that is not imported yet.

    A cached kernel carries the environment of every function compiled into it, each naming
    the module whose globals it holds: the array helpers behind ``np.empty`` name
    ``numba.np.arrayobj``, those behind ``np.dot`` ``numba.np.linalg``, and Numba's rebuild
    imports them, and with them most of Numba's NumPy, unicode and hashing support: several
    times the cost of loading one kernel (``docs/architecture.md``). Only object-mode code reads
    an environment's globals; Numba's own modules compile in nopython mode, whose code reads
    only the constants. So such an environment gets a dict holding only the module's name
    (which is all that saving it again reads). A compile later in the process imports the
    modules as it always did."""
    if not modname.startswith("numba.") or modname in sys.modules:
        return environment._rebuild_env(modname, consts, env_name)
    env = environment.lookup_environment(env_name)
    if env is None:
        env = environment.Environment({"__name__": modname})
        env.consts[:] = consts
        env.env_name = env_name
        environment.Environment._memo[env_name] = env
    return env


class _KernelUnpickler(pickle.Unpickler):
    """Reads a cache data file with ``_rebuild_environment`` in place of Numba's rebuild."""

    def find_class(self, module, name):
        if module == "numba.core.environment" and name == "_rebuild_env":
            return _rebuild_environment
        return super().find_class(module, name)


class _CheckedIndexDataCacheFile(caching.IndexDataCacheFile):
    """Numba's index and data files, with a stamp that names firefly's version, data files
    named after their key, and a corrupt index reported rather than raised."""

    def __init__(self, cache_path, filename_base, source_stamp, version):
        super().__init__(cache_path, filename_base, (version, source_stamp))
        self._firefly_version = version
        self._filename_base = filename_base

    def save(self, key, data):
        # Numba numbers data files 1, 2, ... from the index it read: two processes adding
        # different signatures at once would both write number 1, and the index that wins
        # could point at the other's code. A name derived from the key cannot collide.
        overloads = self._load_index()
        data_name = f"{self._filename_base}.{hashlib.sha1(repr(key).encode()).hexdigest()[:16]}.nbc"
        self._save_data(data_name, data)  # the data first: an index never names a missing file
        if overloads.get(key) != data_name:
            overloads[key] = data_name
            self._save_index(overloads)

    def _load_data(self, name):
        with open(self._data_path(name), "rb") as f:
            return _KernelUnpickler(f).load()

    def _load_index(self):
        try:
            with open(self._index_path, "rb") as f:
                numba_version = pickle.load(f)
                data = f.read()
        except FileNotFoundError:
            return {}
        except Exception as exc:
            self._report(exc)
            return {}
        if numba_version != self._version:
            return {}  # another Numba: its pickles may not even load
        try:
            stamp, overloads = pickle.loads(data)
            owner = stamp[0]
        except Exception as exc:
            self._report(exc)
            return {}
        if owner != self._firefly_version:
            _warn_once(
                "version",
                f"firefly: the kernel cache in {self._cache_path} was filled by firefly {owner}, "
                f"not {self._firefly_version}; its kernels are recompiled.",
            )
            return {}
        # A source stamp that differs is an edited source file: its kernels recompile.
        return overloads if stamp == self._source_stamp else {}

    def _report(self, exc):
        _warn_once(
            "corrupt",
            f"firefly: a kernel cache file in {self._cache_path} is unreadable "
            f"({type(exc).__name__}: {exc}); the kernel is recompiled and the file rewritten.",
        )


@contextlib.contextmanager
def _llvm_lock_events_paused():
    """Numba times each call into LLVM with two events (``numba:llvm_lock``), for a compile's
    metadata. Loading a kernel makes some 150 such calls and drops the times (a loaded
    kernel has no metadata), while the events cost about a tenth of the load's CPU. So they
    are paused while a kernel loads, which happens under Numba's compiler lock: no compile
    runs meanwhile to lose its times. (llvmlite keeps the callbacks in its lock's ``_cblist``;
    where it no longer does, nothing is paused.)"""
    callbacks = getattr(getattr(ffi.lib, "_lock", None), "_cblist", None)
    if not isinstance(callbacks, list) or not callbacks:
        yield
        return
    paused = callbacks[:]
    callbacks.clear()
    try:
        yield
    finally:
        callbacks[:0] = paused


class KernelCache(caching.FunctionCache):
    """Numba's function cache in firefly's folder, recompiling instead of failing on any
    cache entry that cannot be read, and warning once when it cannot write."""

    _impl_class = _KernelCacheImpl

    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file = _CheckedIndexDataCacheFile(
            self._cache_path,
            self._impl.filename_base,
            self._impl.locator.get_source_stamp(),
            _firefly_version(),
        )

    def load_overload(self, sig, target_context):
        # Numba refreshes its whole target before each load: the first refresh of a process
        # imports every typing and lowering registry (NumPy's, SciPy's BLAS check, ...), about
        # half a second of CPU, which a process that only loads kernels never needs. Code read
        # from the cache needs only the runtime (NRT) symbols linked; a compile, and a load
        # that fails this way, refresh in full.
        with _llvm_lock_events_paused():
            rtsys.initialize(target_context)
            try:
                cres = self._load_overload(sig, target_context)
            except Exception:
                try:
                    cres = super().load_overload(sig, target_context)  # refreshed in full
                except Exception as exc:  # a truncated or corrupt data file
                    self._cache_file._report(exc)
                    return None
        if cres is not None and tuple(cres.signature.args) != tuple(
            sigutils.normalize_signature(sig)[0]
        ):
            self._cache_file._report(ValueError(f"an entry for {cres.signature} under {sig}"))
            return None
        return cres

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except OSError as exc:
            _warn_once(
                "write",
                f"firefly: could not write a compiled kernel to {self._cache_path} ({exc}); "
                "it will be compiled again by the next process.",
            )


class LazyKernelCache(caching._Cache):
    """Stands in for a dispatcher's cache until the kernel is first called.

    Building Numba's cache object finds and checks a folder, reads the source file and hashes
    it: about half a millisecond per kernel, which at import time, for some 340 kernels, was
    a third of ``import firefly``. Built on first use, it costs only the kernels a process runs.
    """

    load_seconds = 0.0  # time spent reading kernels from the cache, all kernels of the process

    def __init__(self, py_func):
        self._py_func = py_func
        self._cache = None

    def _real(self):
        if self._cache is None:
            try:
                self._cache = KernelCache(self._py_func)
            except RuntimeError as exc:  # no writable folder at all: compile every run
                report_cache_disabled(exc)
                self._cache = caching.NullCache()
        return self._cache

    @property
    def cache_path(self):
        return self._real().cache_path

    def load_overload(self, sig, target_context):
        start = time.perf_counter()
        try:
            return self._real().load_overload(sig, target_context)
        finally:
            LazyKernelCache.load_seconds += time.perf_counter() - start

    def save_overload(self, sig, data):
        self._real().save_overload(sig, data)

    def enable(self):
        self._real().enable()

    def disable(self):
        self._real().disable()

    def flush(self):
        self._real().flush()


def folder_size(folder: str) -> int:
    """Bytes of all files under ``folder`` (0 when it does not exist)."""
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(parent, name))
            except OSError:  # removed meanwhile by another process
                pass
    return total


def clear() -> str:
    """Remove every cached kernel of every firefly version and CPU; returns the folder."""
    root = cache_root()
    shutil.rmtree(root, ignore_errors=True)
    _writable.clear()
    return root
