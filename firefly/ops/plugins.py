"""Plugin ops from other packages, through the entry-point group ``firefly.ops``.

A distribution declares, in its pyproject.toml::

    [project.entry-points."firefly.ops"]
    softplus = "firefly_extra_ops.ops:Softplus"   # an Op subclass: registered here
    extras = "my_package.ops"                     # a module: importing it registers its ops

Nothing is imported at ``import firefly``: entry points are read and loaded on the first
registry lookup that misses, on ``firefly.ops.names()``, or on ``load_plugins()``.
``FIREFLY_DISABLE_PLUGIN_AUTOLOAD=1`` turns the automatic loading off; ``load_plugins()`` and
``firefly.ops.register`` keep working.

Faults stay contained:

- an entry point that fails to import or register costs one ``PluginWarning`` naming the
  distribution, the entry point and the error; the ops it had registered are removed (all or
  nothing), every other op keeps working, and looking up its op later raises an error that
  says which plugin failed and why;
- a plugin op is refused, with a warning, when its name belongs to a built-in op, or to an op
  already loaded from another plugin (entry points load in order of distribution name, then
  entry-point name, so "first" is the same on every machine).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import os
import sys
import threading
import warnings
from importlib.metadata import EntryPoint
from typing import Any, cast

from firefly.ops import registry
from firefly.ops.base import Op

GROUP = "firefly.ops"
DISABLE_VARIABLE = "FIREFLY_DISABLE_PLUGIN_AUTOLOAD"
_TRUE_VALUES = ("1", "true", "yes", "on")
_FALSE_VALUES = ("", "0", "false", "no", "off")


class PluginWarning(RuntimeWarning):
    """A plugin failed to load, or one of its ops was refused."""


class _PluginLoad:
    """One entry point's load: where it comes from, what it registered, imported or failed on."""

    def __init__(self, entry_point: EntryPoint) -> None:
        self.entry_point = entry_point
        self.label = " ".join(_distribution(entry_point))
        self.added: list[type[Op]] = []  # Op classes it registered
        self.refused: list[type[Op]] = []  # Op classes refused for a name conflict
        # op names it tried to register (set by registry.register):
        self.attempted: set[str | None] = set()
        self.modules: list[str] = []  # modules of its own package that its load imported first
        self.error: Exception | None = None

    def describe(self) -> str:
        ep = self.entry_point
        return f"'{self.label}' (entry point '{ep.name} = {ep.value}')"

    def refuse(self, cls: type[Op], holder: str) -> None:
        """Called by ``registry.register`` when ``cls.name`` is taken: keep the op there."""
        self.refused.append(cls)
        if holder == registry.BUILTIN:
            why = (
                "the name belongs to a built-in op; plugins cannot replace built-in ops, "
                "so rename the plugin's op"
            )
        elif holder == self.label:
            why = "the plugin registers two ops of that name; keeping the first"
        else:
            why = f"plugin '{holder}' already registered an op of that name; keeping that one"
        warnings.warn(
            f"firefly: refused op '{cls.name}' ({cls.__module__}.{cls.__qualname__}) from plugin "
            f"{self.describe()}: {why}.",
            PluginWarning,
            stacklevel=2,
        )


_lock = threading.RLock()  # one loader at a time; re-entrant for a plugin that looks an op up
_scanned = False  # entry points have been read since the last reset()
# (distribution, entry-point name) -> _PluginLoad, loaded or failed:
_loads: dict[tuple[str, str], _PluginLoad] = {}


def autoload_disabled() -> bool:
    """True when ``FIREFLY_DISABLE_PLUGIN_AUTOLOAD`` is set to 1 (or true/yes/on)."""
    raw = os.environ.get(DISABLE_VARIABLE, "")
    value = raw.strip().lower()
    if value in _TRUE_VALUES:
        return True
    if value in _FALSE_VALUES:
        return False
    raise ValueError(
        f"{DISABLE_VARIABLE}={raw!r} is not understood: set it to 1 to turn plugin autoloading "
        "off, or to 0 (or unset it) to keep it on"
    )


def _distribution(entry_point: EntryPoint) -> tuple[str, str]:
    """(name, version) of the distribution declaring ``entry_point``."""
    # .get, not dist.name / dist.version: metadata missing a field must not break loading
    # (those properties return None, with a DeprecationWarning from Python 3.12).
    metadata: Any = entry_point.dist.metadata  # type: ignore[union-attr]  # installed: has one
    return metadata.get("Name") or "unnamed-distribution", metadata.get("Version") or "(no version)"


def _entry_points() -> list[EntryPoint]:
    # entry_points(group=...) exists on every supported Python (3.10+). Sorting makes the
    # first-come rule for two plugins with one op name independent of directory order.
    eps = importlib.metadata.entry_points(group=GROUP)
    return sorted(eps, key=lambda ep: (_distribution(ep)[0].lower(), ep.name))


def _package_modules(package: str, names: set[str]) -> list[str]:
    return sorted(m for m in names if m == package or m.startswith(package + "."))


def _load(entry_point: EntryPoint) -> _PluginLoad:
    load = _PluginLoad(entry_point)
    package = entry_point.module.split(".")[0]
    before = set(sys.modules)
    try:
        with registry.loading(load):
            target: Any = entry_point.load()
            if inspect.isclass(target):
                if target not in load.refused:  # refused while its own module registered it
                    registry.register(cast(type[Op], target))  # register() checks it
            elif not inspect.ismodule(target):
                raise TypeError(
                    f"the entry point must name an Op subclass or a module that registers ops, "
                    f"got {type(target).__name__} {target!r}"
                )
    except Exception as exc:  # a broken plugin must not take the library down
        load.error = exc
        for cls in load.added:  # all or nothing: a half-registered plugin would mislead
            registry.unregister(cls.name)
        load.added.clear()
        warnings.warn(
            f"firefly: plugin {load.describe()} failed to load and was skipped: "
            f"{type(exc).__name__}: {exc}. Its ops are unavailable; every other op still works.",
            PluginWarning,
            stacklevel=3,
        )
    finally:
        load.modules = _package_modules(package, set(sys.modules) - before)
    return load


def load_plugins() -> list[str]:
    """Load every ``firefly.ops`` entry point not loaded yet. Returns the names of ops added.

    Works whether or not autoloading is turned off. A later call picks up distributions
    installed since; an entry point that failed is not retried until ``reset()``.
    """
    global _scanned
    with _lock:
        # Forget cached directory listings so a distribution pip installed into this running
        # process is found (importlib.metadata caches them by folder).
        importlib.invalidate_caches()
        _scanned = True
        added: list[str] = []
        for ep in _entry_points():
            key = (_distribution(ep)[0].lower(), ep.name)
            if key not in _loads:
                _loads[key] = load = _load(ep)
                added.extend(cls.name for cls in load.added)
        return sorted(added)


def autoload() -> bool:
    """Load plugins once, unless ``FIREFLY_DISABLE_PLUGIN_AUTOLOAD`` is set. True if this call
    did."""
    if _scanned or autoload_disabled():
        return False
    with _lock:
        if _scanned:  # another thread loaded them while this one waited
            return False
        load_plugins()
        return True


def reset() -> None:
    """Forget every plugin, for tests: unregister plugin ops, drop the plugin modules imported,
    forget failures, and let the next lookup load plugins afresh."""
    global _scanned
    with _lock:
        for load in _loads.values():
            for cls in load.added:
                if registry.registered(cls.name) is cls:
                    registry.unregister(cls.name)
            for module in load.modules:
                sys.modules.pop(module, None)
        _loads.clear()
        _scanned = False


def explain_missing(name: str, available: list[str]) -> str:
    """The message for a lookup of an op that is not registered."""
    failed = [load for load in _loads.values() if load.error is not None]
    for load in failed:
        if name == load.entry_point.name or name in load.attempted:
            return (
                f"op '{name}' is not available: plugin {load.describe()} failed to load: "
                f"{type(load.error).__name__}: {load.error}"
            )
    message = f"no op named '{name}' is registered."
    close = difflib.get_close_matches(name, available, n=3)
    if close:
        message += f" Did you mean {' or '.join(repr(c) for c in close)}?"
    if failed:
        message += (
            " These plugins failed to load and may define it: "
            + "; ".join(
                f"{load.describe()}: {type(load.error).__name__}: {load.error}" for load in failed
            )
            + "."
        )
    if not _scanned and autoload_disabled():
        message += (
            f" Plugin autoloading is off ({DISABLE_VARIABLE}); call "
            "firefly.ops.load_plugins() to load plugin ops."
        )
    return message + f" Registered ops: {', '.join(available)}."


registry.set_plugin_loader(sys.modules[__name__])
