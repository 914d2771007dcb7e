"""The op registry: one table from name to Op class, shared by built-in and plugin ops.

Built-in ops register when ``firefly.ops`` is imported. Plugin ops (entry-point group
``firefly.ops``) load lazily, the first time a lookup misses or ``names()`` is called; see
``firefly.ops.plugins``.
"""
import inspect
import keyword

from firefly.kernels._jit import is_compiled_kernel
from firefly.ops.base import Op

BUILTIN = "built-in"

_ops = {}      # name -> Op subclass
_origins = {}  # name -> "built-in" or "<distribution> <version>"
_origin_for_new = [BUILTIN]  # the origin that register() records; plugins.py swaps it


def register(cls):
    """Class decorator: validate an Op subclass and add it to the registry."""
    if not (inspect.isclass(cls) and issubclass(cls, Op) and cls is not Op):
        raise TypeError(f"firefly.ops.register expects a subclass of firefly.ops.Op, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(
            f"{cls.__qualname__}.name must be a Python identifier such as 'softplus', got {name!r}"
        )
    for attr in ("forward_kernel", "backward_kernel"):
        k = getattr(cls, attr)
        if not is_compiled_kernel(k):
            raise TypeError(
                f"op '{name}': {attr} must be a Numba-compiled function (decorate it with "
                f"numba.njit or firefly.kernels.kernel), got {k!r}"
            )
    for method in ("forward", "backward"):
        if getattr(cls, method) is getattr(Op, method):
            raise TypeError(f"op '{name}' must define {method}(ctx, ...)")
    if not isinstance(cls.arity, int) or cls.arity < 1:
        raise ValueError(f"op '{name}': arity must be a positive int, got {cls.arity!r}")
    if name in _ops:
        raise ValueError(
            f"an op named '{name}' is already registered (from {_origins[name]}); "
            "choose another name"
        )
    _ops[name] = cls
    _origins[name] = _origin_for_new[-1]
    return cls


def get(name):
    """The Op class registered under ``name``; loads plugins once if it is not found."""
    try:
        return _ops[name]
    except KeyError:
        pass
    from firefly.ops import plugins

    if plugins.autoload():
        if name in _ops:
            return _ops[name]
    raise KeyError(plugins.explain_missing(name, sorted(_ops)))


def names():
    """Sorted names of every registered op, plugin ops included."""
    from firefly.ops import plugins

    plugins.autoload()
    return sorted(_ops)


def origin(name):
    """'built-in', or the distribution name and version of the plugin that registered ``name``."""
    get(name)
    return _origins[name]


def unregister(name):
    """Remove an op (for tests and plugin reloads). Built-in ops cannot be removed."""
    if _origins.get(name) == BUILTIN:
        raise ValueError(f"'{name}' is a built-in op and cannot be unregistered")
    _ops.pop(name, None)
    _origins.pop(name, None)
