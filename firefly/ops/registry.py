"""The op registry: one table from name to Op class, shared by built-in and plugin ops.

Built-in ops register when ``firefly.ops`` is imported. Plugin ops (entry-point group
``firefly.ops``) load lazily, the first time a lookup misses or ``names()`` is called:
``firefly.ops.plugins`` installs itself as the registry's plugin loader
(``set_plugin_loader``) and wraps each plugin's registrations in ``loading(...)``. The
registry itself imports nothing from the plugin machinery.

Every op's origin is recorded: ``"built-in"`` for firefly's own ops, ``"<distribution>
<version>"`` for a plugin's, and ``"user code (<module>)"`` for a class registered at run time.
"""

from __future__ import annotations

import contextlib
import inspect
import keyword
from collections.abc import Iterator
from typing import Any, TypeVar

from firefly.kernels._jit import is_compiled_kernel
from firefly.ops.base import Op, declared_kernels

BUILTIN = "built-in"
OpClass = TypeVar("OpClass", bound=type[Op])  # what @register returns: the class it was given

_ops: dict[str, type[Op]] = {}  # name -> Op subclass
# name -> "built-in", "<distribution> <version>" or "user code (<module>)":
_origins: dict[str, str] = {}
# The plugin whose entry point is being loaded, innermost last (see loading()). While one is
# loading, a name conflict is that plugin's to handle (refuse and warn) rather than an error:
# a module plugin that registers several ops must not lose them all to one clash.
_loading_plugins: list[Any] = []
_plugin_loader: Any = None  # set by set_plugin_loader: loads plugins on a miss, explains a miss


@contextlib.contextmanager
def loading(load: Any) -> Iterator[Any]:
    """Attribute every op registered inside the block to the plugin load ``load``.

    ``load`` has ``label`` (the origin recorded for its ops), ``attempted`` (a set: every op
    name it tries to register is added), ``added`` (a list: the classes registered) and
    ``refuse(cls, holder)``, called instead of raising when a name is taken.
    """
    _loading_plugins.append(load)
    try:
        yield load
    finally:
        _loading_plugins.pop()


def set_plugin_loader(loader: Any) -> None:
    """Install the object whose ``autoload()`` loads plugins (returning True if it did) and
    whose ``explain_missing(name, available)`` words the error for a name not registered."""
    global _plugin_loader
    _plugin_loader = loader


def registered(name: str) -> type[Op] | None:
    """The Op class registered under ``name``, or None; never loads plugins."""
    return _ops.get(name)


class UnknownOpError(KeyError):
    """No op is registered under the name asked for. The message says why and what to do."""

    def __str__(self) -> str:
        # KeyError's own __str__ shows repr(message), quotes and escaped newlines included.
        return str(self.args[0]) if self.args else ""


def _origin_of_new(cls: type[Op]) -> str:
    if _loading_plugins:
        return _loading_plugins[-1].label
    if cls.__module__ == "firefly" or cls.__module__.startswith("firefly."):
        return BUILTIN
    return f"user code ({cls.__module__})"


def _validate(cls: object) -> str:
    """Raise unless ``cls`` is an Op subclass fit to register; its name."""
    if not (inspect.isclass(cls) and issubclass(cls, Op) and cls is not Op):
        raise TypeError(f"firefly.ops.register expects a subclass of firefly.ops.Op, got {cls!r}")
    name = cls.name
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(
            f"{cls.__qualname__}.name must be a Python identifier such as 'softplus', got {name!r}"
        )
    for attr in ("forward_kernel", "backward_kernel"):
        value = getattr(cls, attr)
        kernels = declared_kernels(value)
        bad = [k for k in kernels if not is_compiled_kernel(k)]
        if bad or not kernels:
            raise TypeError(
                f"op '{name}': {attr} must be a Numba-compiled function (decorate it with "
                "numba.njit or firefly.kernels.kernel), or a non-empty tuple of them, "
                f"got {value!r}"
            )
    for method in ("forward", "backward"):
        if getattr(cls, method) is getattr(Op, method):
            raise TypeError(f"op '{name}' must define {method}(ctx, ...)")
    if not isinstance(cls.arity, int) or isinstance(cls.arity, bool) or cls.arity < 1:
        raise ValueError(f"op '{name}': arity must be a positive int, got {cls.arity!r}")
    return name


def register(cls: OpClass) -> OpClass:
    """Class decorator: validate an Op subclass and add it to the registry.

    Registering the class already registered under its name again does nothing. Another class
    under a taken name is a ValueError, except while a plugin loads: then the plugin's op is
    refused with a warning and the op already registered stays.
    """
    if _loading_plugins:  # so a lookup of this op can say that its plugin failed, and why
        _loading_plugins[-1].attempted.add(getattr(cls, "name", None))
    name = _validate(cls)
    holder = _ops.get(name)
    if holder is cls:
        return cls
    if holder is not None:
        if _loading_plugins:
            _loading_plugins[-1].refuse(cls, _origins[name])
            return cls
        raise ValueError(
            f"an op named '{name}' is already registered (from {_origins[name]}); "
            "choose another name, or unregister the existing op first"
        )
    _ops[name] = cls
    _origins[name] = _origin_of_new(cls)
    if _loading_plugins:
        _loading_plugins[-1].added.append(cls)
    return cls


def get(name: str) -> type[Op]:
    """The Op class registered under ``name``; loads plugins once if it is not found.

    Raises ``UnknownOpError`` (a KeyError) saying why the op is missing: a plugin that failed
    to load, autoloading turned off, or no such op.
    """
    try:
        return _ops[name]
    except KeyError:
        pass
    if _plugin_loader is None:
        raise UnknownOpError(
            f"no op named '{name}' is registered. Registered ops: {', '.join(sorted(_ops))}."
        )
    if _plugin_loader.autoload() and name in _ops:
        return _ops[name]
    raise UnknownOpError(_plugin_loader.explain_missing(name, sorted(_ops)))


def names() -> list[str]:
    """Sorted names of every registered op, plugin ops included."""
    if _plugin_loader is not None:
        _plugin_loader.autoload()
    return sorted(_ops)


def origin(name: str) -> str:
    """'built-in', the plugin's '<distribution> <version>', or 'user code (<module>)'."""
    get(name)
    return _origins[name]


def unregister(name: str) -> None:
    """Remove an op (for tests and plugin reloads). Built-in ops cannot be removed."""
    if name not in _ops:
        raise UnknownOpError(f"cannot unregister '{name}': no op of that name is registered")
    if _origins[name] == BUILTIN:
        raise ValueError(f"'{name}' is a built-in op and cannot be unregistered")
    del _ops[name]
    del _origins[name]
