"""Plugin ops from other packages, through the entry-point group ``firefly.ops``.

An entry point names an ``Op`` subclass (registered here) or a module whose import registers
ops with ``@firefly.ops.register``. Nothing is imported at ``import firefly``: plugins load on
the first registry lookup that misses, on ``firefly.ops.names()``, or on ``load_plugins()``.
``FIREFLY_DISABLE_PLUGIN_AUTOLOAD=1`` turns the automatic loading off.

A broken plugin costs one warning and leaves every other op working. A plugin cannot replace
a built-in op, and when two plugins claim one name the first loaded keeps it.
"""
import importlib.metadata
import inspect
import os
import warnings

from firefly.ops import registry
from firefly.ops.base import Op

GROUP = "firefly.ops"
_loaded = False
_failures = {}  # entry-point name -> "distribution: error", for explain_missing


def _entry_points():
    eps = importlib.metadata.entry_points()
    if hasattr(eps, "select"):  # Python >= 3.10 returns EntryPoints
        return list(eps.select(group=GROUP))
    return list(eps.get(GROUP, ()))  # pragma: no cover - Python < 3.10


def _dist_label(ep):
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def _register_from(ep, label):
    before = set(registry._ops)
    registry._origin_for_new.append(label)
    try:
        target = ep.load()
        if inspect.isclass(target):
            if not issubclass(target, Op):
                raise TypeError(f"{target!r} is not a subclass of firefly.ops.Op")
            if registry._ops.get(target.name) is not target:
                _claim(target, label)
    finally:
        registry._origin_for_new.pop()
    return set(registry._ops) - before


def _claim(cls, label):
    holder = registry._origins.get(cls.name)
    if holder == registry.BUILTIN:
        warnings.warn(
            f"firefly plugin {label} tried to replace the built-in op '{cls.name}'; "
            "the plugin's op was refused. Rename it to use it.",
            RuntimeWarning, stacklevel=4,
        )
        return
    if holder is not None:
        warnings.warn(
            f"firefly plugins {holder} and {label} both define an op '{cls.name}'; "
            f"keeping the one from {holder}.",
            RuntimeWarning, stacklevel=4,
        )
        return
    registry.register(cls)


def load_plugins():
    """Load every ``firefly.ops`` entry point now. Returns the names of the ops added."""
    global _loaded
    _loaded = True
    added = set()
    for ep in _entry_points():
        label = _dist_label(ep)
        try:
            added |= _register_from(ep, label)
        except Exception as exc:  # a broken plugin must not take the library down
            _failures[ep.name] = f"{label} (entry point '{ep.name} = {ep.value}'): {type(exc).__name__}: {exc}"
            warnings.warn(
                f"firefly could not load plugin {_failures[ep.name]}. Its ops are unavailable; "
                "every other op still works.",
                RuntimeWarning, stacklevel=2,
            )
    return sorted(added)


def autoload():
    """Load plugins once, unless disabled. True if this call loaded them."""
    if _loaded or os.environ.get("FIREFLY_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0"):
        return False
    load_plugins()
    return True


def explain_missing(name, available):
    """The message for a lookup of an op that is not registered."""
    failed = [why for ep_name, why in _failures.items() if ep_name == name or name in why]
    if failed:
        return f"op '{name}' is not available: its plugin failed to load: {failed[0]}"
    hint = ""
    if os.environ.get("FIREFLY_DISABLE_PLUGIN_AUTOLOAD", "") not in ("", "0") and not _loaded:
        hint = " Plugin autoloading is off (FIREFLY_DISABLE_PLUGIN_AUTOLOAD); call firefly.ops.load_plugins()."
    return f"no op named '{name}' is registered. Registered ops: {', '.join(available)}.{hint}"
