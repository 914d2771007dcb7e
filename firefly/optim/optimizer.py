"""What optimizers share: ``Optimizer`` (PyTorch's base class, also named ``BaseOptimizer``)
and ``FusedOptimizer``, the base of firefly's own optimizers.

``Optimizer(params, defaults)`` holds ``param_groups`` as PyTorch does: a list of dicts, each
with its ``params`` and its hyperparameters, filled from ``defaults``. ``params`` is an
iterable of parameters (``Parameter`` objects, leaf Tensors that require grad, or
``(name, parameter)`` pairs as ``named_parameters()`` gives them) or of such group dicts.
Step hooks (``register_step_pre_hook``/``register_step_post_hook``) run around every
``step()``, a subclass's own ``step`` included.

``BaseOptimizer(parameters)`` is the same class under firefly's older name, for optimizers
written by hand: ``self.parameters`` lists every parameter, ``zero_grad()`` drops every gradient
and ``step()`` is the subclass's to write.

``FusedOptimizer`` packs every parameter of one dtype into one flat buffer (see
``firefly.optim.flat``) and updates each buffer with one kernel call, whatever the number of
param groups.
"""

import collections
import functools
import inspect
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from firefly import autograd, serialization
from firefly.dtypes import is_float_dtype
from firefly.hooks import RemovableHandle
from firefly.kernels.optim import update_kernel
from firefly.optim.flat import FlatBuffer
from firefly.optim.hyperparameters import Flag, Hyperparameter, Number, Pair, State
from firefly.tensor import Tensor
from firefly.validation import check_flag, check_float, is_real

__all__ = [
    "Optimizer",
    "BaseOptimizer",
    "FusedOptimizer",
    "Number",
    "Flag",
    "Pair",
    "State",
    "check_flag",
    "check_float",
    "fused_optimizers",
]

# Keys that learning-rate schedulers add to param groups; a group passed in with them (a
# resumed run's) is not refused for having unknown keys.
SCHEDULER_KEYS = frozenset(
    {"initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum", "swa_lr"}
)


# ----------------------------------------------------------------------------- hooks
# hook(optimizer, args, kwargs) -> None or (new_args, new_kwargs)
StepHook = Callable[["Optimizer", tuple[Any, ...], dict[str, Any]], Any]
# What an optimizer takes: parameters (Parameters, leaf Tensors or (name, parameter) pairs),
# or param group dicts.
Params = Iterable[Any]

_global_step_pre_hooks: dict[int, StepHook] = {}
_hook_keys = itertools.count()


def _add_step_hook(hooks: dict[int, StepHook], hook: StepHook) -> RemovableHandle:
    key = next(_hook_keys)
    hooks[key] = hook

    def remove() -> None:
        hooks.pop(key, None)

    return RemovableHandle(remove)


def register_optimizer_step_pre_hook(hook: StepHook) -> RemovableHandle:
    """``hook(optimizer, args, kwargs)`` runs at the start of every optimizer's ``step()``,
    before that optimizer's own pre-hooks, as ``torch.optim.optimizer``'s function of this name.
    Returns a handle whose ``remove()`` unregisters it."""
    return _add_step_hook(_global_step_pre_hooks, hook)


def _with_step_hooks(step):
    """``step`` wrapped so that the step hooks run around it, once per call even when a
    subclass's step calls its parent's."""

    @functools.wraps(step)
    def hooked_step(self, *args, **kwargs):
        if self.__dict__.get("_in_step"):
            return step(self, *args, **kwargs)
        # The optimizer's own hooks are read after the global ones ran: a global hook may
        # register one for this very step (DistributedDataParallel attaching itself).
        for hooks in (_global_step_pre_hooks, self._step_pre_hooks):
            if not hooks:
                continue
            for hook in list(hooks.values()):
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError(
                            "a step pre-hook must return None or a tuple (new_args, new_kwargs), "
                            f"got {result!r}"
                        )
                    args, kwargs = result
        self._in_step = True
        try:
            out = step(self, *args, **kwargs)
        finally:
            self._in_step = False
        if self._step_post_hooks:
            for hook in list(self._step_post_hooks.values()):
                hook(self, args, kwargs)
        return out

    hooked_step._firefly_hooked = True
    return hooked_step


def _leaf_of(param):
    """The leaf Tensor of a Parameter (its ``.tensor``) or of a Tensor (itself), or None."""
    tensor = getattr(param, "tensor", param)
    return tensor if isinstance(tensor, Tensor) else None


def _label(index, name, leaf):
    return (
        f"parameter {index}"
        + (f" '{name}'" if name else "")
        + f" (shape {leaf.shape}, {leaf.dtype})"
    )


def _is_single_parameter(value):
    return _leaf_of(value) is not None


# ----------------------------------------------------------------------------- Optimizer
class Optimizer:
    """``Optimizer(params, defaults=None)``: PyTorch's base class, also named ``BaseOptimizer``.

    Subclass it and write ``step``; a whole optimizer can be this short::

        class SGD(BaseOptimizer):
            def __init__(self, parameters, lr=0.01):
                super().__init__(parameters)
                self.lr = Tensor(lr)

            def step(self):
                for param in self.parameters:
                    param.update(param.tensor - self.lr * param.tensor.grad)
    """

    def __init__(self, params: Params, defaults: dict[str, Any] | None = None) -> None:
        self.defaults = dict(defaults or {})
        self.param_groups: list[dict[str, Any]] = []
        # Every parameter, group by group, for a hand-written step().
        self.parameters: list[Any] = []
        self._parameter_names: list[str | None] = []
        self._step_pre_hooks: dict[int, StepHook] = {}
        self._step_post_hooks: dict[int, StepHook] = {}
        self._in_step = False
        for group in self._group_list(params):
            self.add_param_group(group)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_firefly_hooked", False):
            cls.step = _with_step_hooks(step)  # type: ignore[method-assign]

    @property
    def _owner(self) -> str:
        return type(self).__name__

    def _group_list(self, params):
        owner = self._owner
        if isinstance(params, dict):
            raise TypeError(
                f"{owner}: params must be an iterable of parameters or of param group dicts; "
                "wrap a single group dict in a list"
            )
        if _is_single_parameter(params):
            raise TypeError(
                f"{owner}: params must be an iterable of Parameters, got a single "
                f"{type(params).__name__}; pass a list such as model.get_parameters()"
            )
        if isinstance(params, (set, frozenset)):
            raise TypeError(
                f"{owner}: params must be an ordered collection (a list), not a set: "
                "a set's order changes between runs, and with it the state_dict indices"
            )
        try:
            items = list(params)
        except TypeError:
            raise TypeError(
                f"{owner}: params must be an iterable of Parameters, got {type(params).__name__}; "
                "pass a list such as model.get_parameters()"
            ) from None
        if not items:
            raise ValueError(
                f"{owner}: got an empty parameter list; pass the model's parameters, "
                "e.g. model.get_parameters()"
            )
        if any(isinstance(item, dict) for item in items):
            if not all(isinstance(item, dict) for item in items):
                raise TypeError(
                    f"{owner}: params mixes param group dicts with parameters; "
                    "put every parameter in a group dict, or pass no dicts"
                )
            return [dict(item) for item in items]
        return [{"params": items}]

    def _allowed_group_keys(self):
        """The keys a param group may have besides ``params``, or None for any (the base class
        does not know its subclass's hyperparameters)."""
        return None

    def _check_group(self, group):
        """Validated, normalized hyperparameters of ``group`` (a dict); the base has none."""
        return {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (a dict with ``params`` and any hyperparameters; the others come from
        the constructor's defaults), as ``torch.optim.Optimizer.add_param_group``."""
        owner = self._owner
        where = f"param_groups[{len(self.param_groups)}]"
        if not isinstance(param_group, dict):
            raise TypeError(
                f"{owner}: a param group must be a dict, got {type(param_group).__name__}"
            )
        group = dict(param_group)
        if "params" not in group:
            raise ValueError(
                f"{owner}: {where} has no 'params' key; give it {{'params': [...], ...}}"
            )
        params = group["params"]
        if _is_single_parameter(params):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                f"{owner}: {where}['params'] must be an ordered collection (a list), not a set"
            )
        else:
            try:
                params = list(params)
            except TypeError:
                raise TypeError(
                    f"{owner}: {where}['params'] must be an iterable of parameters, "
                    f"got {type(params).__name__}"
                ) from None
        if not params:
            raise ValueError(
                f"{owner}: {where} has no parameters; give it some or leave the group out"
            )
        allowed = self._allowed_group_keys()
        if allowed is not None:
            unknown = sorted(set(group) - {"params", "param_names"} - allowed - SCHEDULER_KEYS)
            if unknown:
                raise ValueError(
                    f"{owner}: {where} has unknown key(s) {unknown}; {owner}'s param groups take "
                    f"'params' and {sorted(allowed)}"
                )
        start = len(self.parameters)
        names, leaves = [], []
        for position, item in enumerate(params):
            name = None
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                name, item = item
            leaf = _leaf_of(item)
            if leaf is None:
                raise TypeError(
                    f"{owner}: parameter {start + position} is a {type(item).__name__}, "
                    "not a Parameter; pass firefly.nn.Parameter objects or leaf Tensors "
                    "(model.get_parameters()), or (name, parameter) pairs "
                    "(model.named_parameters())"
                )
            if leaf._node is not None:
                raise ValueError(
                    f"{owner}: parameter {start + position} is not a leaf Tensor (an op "
                    "computed it); only leaves can be optimized"
                )
            names.append(name)
            leaves.append(item)
        if any(n is not None for n in names) and not all(n is not None for n in names):
            raise ValueError(
                f"{owner}: {where} mixes named and unnamed parameters; name all or none"
            )
        if "param_names" in group:
            names = list(group["param_names"])
            if len(names) != len(leaves):
                raise ValueError(
                    f"{owner}: {where}['param_names'] has {len(names)} names "
                    f"for {len(leaves)} parameters"
                )
        seen = {id(_leaf_of(p)): self._describe(i) for i, p in enumerate(self.parameters)}
        for position, (name, item) in enumerate(zip(names, leaves)):
            leaf = _leaf_of(item)
            label = _label(start + position, name, leaf)
            if id(leaf) in seen:
                raise ValueError(
                    f"{owner}: {label} is the same parameter as {seen[id(leaf)]}; "
                    "a parameter can be in one param group only, once"
                )
            seen[id(leaf)] = label
            self._check_parameter(label, leaf)
        # torch's key order: params, then the hyperparameters in the constructor's order.
        group = {
            "params": leaves,
            **{name: group.get(name, default) for name, default in self.defaults.items()},
            **{key: value for key, value in group.items() if key != "params"},
        }
        if any(n is not None for n in names):
            group["param_names"] = names
        group.update(self._check_group(group))
        self.param_groups.append(group)
        self.parameters.extend(leaves)
        self._parameter_names.extend(names)

    def _check_parameter(self, label, leaf):
        """Refuse a parameter this optimizer cannot update (the base takes any leaf)."""

    def _describe(self, index):
        """'parameter 3 'fc1.bias' (shape (32,), float32)', for error messages."""
        return _label(index, self._parameter_names[index], _leaf_of(self.parameters[index]))

    # ------------------------------------------------------------------ hooks
    def register_step_pre_hook(self, hook: StepHook) -> RemovableHandle:
        """``hook(optimizer, args, kwargs)`` runs at the start of every ``step()``; it may
        return ``(new_args, new_kwargs)``. Returns a handle whose ``remove()`` unregisters it."""
        return _add_step_hook(self._step_pre_hooks, hook)

    def register_step_post_hook(self, hook: StepHook) -> RemovableHandle:
        """``hook(optimizer, args, kwargs)`` runs at the end of every ``step()``."""
        return _add_step_hook(self._step_post_hooks, hook)

    # ------------------------------------------------------------------ what a subclass uses
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (PyTorch's default); ``set_to_none=False`` zeros them in place."""
        for param in self.parameters:
            tensor = _leaf_of(param)
            if set_to_none or tensor.grad is None:
                tensor.grad = None
            else:
                tensor.grad._data.fill(0)

    @_with_step_hooks
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        raise NotImplementedError("Step method not implemented.")

    # ------------------------------------------------------------------ state
    def _group_state(self):
        """The param groups as ``state_dict`` stores them: parameters as global indices."""
        groups, start = [], 0
        for group in self.param_groups:
            saved = {key: value for key, value in group.items() if key != "params"}
            saved["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(saved)
        return groups

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {}, "param_groups": [...]}``: the base class keeps no per-parameter state."""
        return {"state": {}, "param_groups": self._group_state()}

    def _checked_groups(self, state_dict):
        """The saved param groups, checked against this optimizer's, as dicts without params."""
        owner = f"{self._owner}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(
                f"{owner}: expected a dict with keys 'state' and 'param_groups' "
                f"(from state_dict()), got {keys}"
            )
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{owner}: the state has {len(saved_groups)} param groups, this optimizer has "
                f"{len(self.param_groups)}"
            )
        checked = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            saved = dict(saved)
            saved_params = saved.pop("params", None)
            count = len(group["params"])
            if saved_params is None or len(saved_params) != count:
                got = "none" if saved_params is None else len(saved_params)
                raise ValueError(
                    f"{owner}: param_groups[{i}] was saved with {got} parameters, "
                    f"this optimizer's has {count}"
                )
            saved.pop("param_names", None)
            checked.append(saved)
        return checked

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the param groups' hyperparameters saved by ``state_dict()``."""
        for group, saved in zip(self.param_groups, self._checked_groups(state_dict)):
            group.update(saved)


BaseOptimizer = Optimizer


# ----------------------------------------------------------------------------- FusedOptimizer
# "module.QualName" -> every FusedOptimizer subclass that declares itself
_registry: dict[str, type["FusedOptimizer"]] = {}


def fused_optimizers() -> dict[str, type["FusedOptimizer"]]:
    """{"module.QualName": class} of every fused optimizer defined so far (firefly's own and any
    subclass that declares hyperparameters or an update), in definition order: what
    ``warmup`` compiles (firefly's own). Keyed by the qualified name, so that a user's class
    named like a built-in one does not hide it."""
    return dict(_registry)


def _generated_init(cls):
    """An ``__init__(self, params, <hyperparameters>)`` with the declared defaults, in the
    declared order (keyword-only where declared), passing them on as the optimizer's defaults."""
    kinds = inspect.Parameter
    signature = inspect.Signature(
        [
            kinds("self", kinds.POSITIONAL_OR_KEYWORD),
            kinds("params", kinds.POSITIONAL_OR_KEYWORD),
            *(
                kinds(
                    name,
                    kinds.KEYWORD_ONLY if h.keyword_only else kinds.POSITIONAL_OR_KEYWORD,
                    default=h.default,
                )
                for name, h in cls.hyperparameters.items()
            ),
        ]
    )
    names = tuple(cls.hyperparameters)

    def __init__(self, params, *args, **kwargs):
        try:
            bound = signature.bind(self, params, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{type(self).__name__}(): {exc}") from None
        bound.apply_defaults()
        FusedOptimizer.__init__(self, params, {name: bound.arguments[name] for name in names})

    __init__.__signature__ = signature
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__doc__ = cls.__doc__
    return __init__


class FusedOptimizer(Optimizer):
    """Base of firefly's optimizers: flat per-dtype buffers, one kernel call per dtype with
    per-run hyperparameters. An optimizer declares (docs/writing-an-optimizer.md):

    - ``hyperparameters``: {name: ``Number``/``Flag``/``Pair``} in the constructor's order, with
      defaults and bounds. The constructor ``Cls(params, <hyperparameters>)``, the check of
      every param group (the same message whether the bad value came from the constructor, a
      group dict or ``param_groups[i][key] = value`` before a ``step()``) and the unknown-key
      check are generated from it; ``_check_relations`` adds checks between hyperparameters.
    - ``state_buffers``: its flat state buffers (``State``), in the order the kernel receives them.
    - ``coefficients`` and ``flags``: the names of the fields its kernel reads per run, in the
      buffers' dtype and bool, in that order; ``fields(group, step, split)`` computes them for
      one run (as ``self.Fields(name=value, ...)``) from the run's checked group and step count.
    - ``update(fields, grad, states, start, stop, param)``: the per-run update, specialised into
      the fused update kernel (``firefly.kernels.optim.update_kernel``) with ``cost``.
    - optionally ``_kernel_for(runs)``: another update kernel for a step whose runs all need
      less of ``update`` (SGD without momentum), which a process then compiles alone, and
      ``warmup_hyperparameters``: the settings ``python -m firefly warmup`` steps with, so that
      every kernel the optimizer may pick is compiled ahead.

    Parameters that do not require grad (frozen) are packed but left alone. A parameter that
    requires grad but has none at ``step()`` is skipped (PyTorch's behaviour) unless
    ``_skips_missing_gradients`` is False, in which case ``step()`` raises before updating
    anything.

    Gradients set another way than through the installed views (``.grad`` replaced, or set to
    None and recomputed by backward) and parameter arrays replaced behind the optimizer's back
    are noticed at ``step()`` by an identity check and copied into the flat buffers, so the
    result is the same, one copy slower.
    """

    hyperparameters: dict[str, Hyperparameter] = {}
    state_buffers: tuple[State, ...] = ()
    coefficients: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    cost = "transcendental"  # or "memory": firefly.kernels._jit.COSTS
    _skips_missing_gradients = True
    # Per-parameter scalars that torch keeps as state and the optimizer derives from the step
    # count and its group (NAdam's mu_product): ``state_dict`` adds them, from
    # ``derived_state(group, step)``, and ``load_state_dict`` takes and ignores them.
    derived_state_names: tuple[str, ...] = ()
    warmup_hyperparameters: tuple[dict[str, Any], ...] = ({},)
    # Set for each subclass by __init_subclass__, from the declarations above.
    _state_names: tuple[str, ...]
    _min_saved_step: int
    _kernel: Callable[..., None]
    Fields: type[Any]  # a namedtuple of coefficients and flags
    _field_dtypes: dict[np.dtype[Any], np.dtype[Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "hyperparameters" in cls.__dict__ and "__init__" not in cls.__dict__:
            cls.__init__ = _generated_init(cls)  # type: ignore[method-assign]
        cls._state_names = tuple(state.name for state in cls.state_buffers)
        # State that exists from construction is saved with step 0 (Adagrad's sums).
        cls._min_saved_step = 0 if any(state.initial for state in cls.state_buffers) else 1
        if "update" in cls.__dict__:
            update = cls.__dict__["update"]
            cls._kernel = staticmethod(
                update_kernel(
                    f"{cls.__name__.lower()}_step", getattr(update, "__func__", update), cls.cost
                )
            )
            cls.Fields = collections.namedtuple(  # type: ignore[misc]
                f"{cls.__name__}Fields", (*cls.coefficients, *cls.flags)
            )
            cls._field_dtypes = {}
        if "hyperparameters" in cls.__dict__ or "update" in cls.__dict__:
            _registry[f"{cls.__module__}.{cls.__qualname__}"] = cls

    def __init__(self, params: Params, defaults: dict[str, Any]) -> None:
        self._buffers: list[FlatBuffer] = []
        self._constructed = False
        self._validated: list[dict[str, Any]] = []
        super().__init__(params, defaults)
        self._pack({})
        self._constructed = True

    def _allowed_group_keys(self):
        return set(self.defaults)

    def _check_parameter(self, label, leaf):
        if not is_float_dtype(leaf.dtype):
            raise TypeError(f"{self._owner}: {label} must be float32 or float64")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if self._constructed:  # after construction: repack, keeping every state
            self._pack(self._member_state())

    # ------------------------------------------------------------------ packing
    def _pack(self, carried):
        """(Re)build the flat buffers from the param groups; ``carried`` maps a parameter index
        to (step, {state name: array}) to restore."""
        by_dtype = {}
        index = 0
        for group_index, group in enumerate(self.param_groups):
            for param in group["params"]:
                tensor = _leaf_of(param)
                entry = by_dtype.setdefault(tensor.dtype, ([], [], []))
                members, tensors, segments = entry
                if not segments or segments[-1][0] != group_index:
                    segments.append([group_index, len(members), len(members)])
                members.append(index)
                tensors.append(tensor)
                segments[-1][2] = len(members)
                index += 1
        self._buffers = [
            FlatBuffer(dtype, members, tensors, [tuple(s) for s in segments])
            for dtype, (members, tensors, segments) in by_dtype.items()
        ]
        for buf in self._buffers:
            for k in range(len(buf.members)):
                self._install(buf, k)
        self._restore(carried)

    def _restore(self, carried):
        """Fresh state (``_init_state``), then the step counts and state arrays in ``carried``:
        {parameter index: (step, {state name: array})}."""
        self._init_state()
        for buf in self._buffers:
            for k, index in enumerate(buf.members):
                if index not in carried:
                    continue
                step, arrays = carried[index]
                buf.steps[k] = step
                for name, value in arrays.items():
                    buf.view(buf.buffer(name), k)[...] = value
                    buf.live[name][k] = True

    def _init_state(self):
        """Allocate the state that exists from construction (``State(initial=...)``), filled
        with each group's value of the hyperparameter it names."""
        for state in self.state_buffers:
            if state.initial is None:
                continue
            for buf in self._buffers:
                flat = buf.buffer(state.name)
                for group_index, first, end in buf.segments:
                    flat[buf.elements(first, end)] = self.param_groups[group_index][state.initial]
                buf.live[state.name][:] = True

    def _install(self, buf, k):
        try:
            return buf.install_grad(k)
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"{self._owner}: the gradient of {self._describe(buf.members[k])} {exc}"
            ) from None

    def _member_state(self):
        """{parameter index: (step, {state name: copy of its slot})} for parameters with state."""
        carried = {}
        for buf in self._buffers:
            for k, index in enumerate(buf.members):
                arrays = {
                    name: buf.view(buf.state[name], k).copy()
                    for name in self._state_names
                    if name in buf.state and buf.live[name][k]
                }
                if buf.steps[k] >= self._min_saved_step and (buf.steps[k] or arrays):
                    carried[index] = (int(buf.steps[k]), arrays)
        return carried

    # ------------------------------------------------------------------ hyperparameters
    def _check_group(self, group):
        owner = self._owner
        checked = {
            name: declared.check(owner, name, group[name])
            for name, declared in self.hyperparameters.items()
        }
        self._check_relations(checked)
        return checked

    def _check_relations(self, checked):
        """Raise ValueError when checked hyperparameters do not go together; none by default."""

    def _validated_groups(self):
        """Each group's checked hyperparameters; a group changed since its last check (by
        ``param_groups[i][key] = value`` or a scheduler) is checked again, with the
        constructor's messages."""
        names = self.defaults.keys()
        checked_groups = []
        for i, group in enumerate(self.param_groups):
            snapshot = [group[name] for name in names]
            if i < len(self._validated):
                previous, checked = self._validated[i]
                try:
                    unchanged = previous == snapshot
                except (TypeError, ValueError):  # e.g. an array compared elementwise
                    unchanged = False
                if unchanged is True:
                    checked_groups.append(checked)
                    continue
            checked = self._check_group(group)
            if i < len(self._validated):
                self._validated[i] = (snapshot, checked)
            else:
                self._validated.append((snapshot, checked))
            checked_groups.append(checked)
        del self._validated[len(self.param_groups) :]
        return checked_groups

    def __repr__(self) -> str:
        lines = [f"{self._owner} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i} ({len(group['params'])} parameters)")
            lines.extend(
                f"    {key}: {value!r}"
                for key, value in group.items()
                if key not in ("params", "param_names")
            )
        lines.append(")")
        return "\n".join(lines)

    # ------------------------------------------------------------------ gradients
    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero every gradient in one pass over the flat gradient buffers, and install each
        trainable parameter's ``.grad`` as a view into them.

        Unlike PyTorch's default, gradients become zeros, not None (PyTorch's
        ``set_to_none=False``): a trainable parameter that then gets no gradient from
        backward is still updated, with a zero gradient. ``set_to_none=True`` drops them
        instead; backward then allocates new gradients, which ``step()`` copies in.
        """
        for buf in self._buffers:
            if not set_to_none:
                buf.grads.fill(0)
            for k, tensor in enumerate(buf.tensors):
                if set_to_none:
                    tensor.grad = None
                elif tensor.requires_grad:
                    tensor.grad = buf.grad_tensors[k]

    def flat_grads(self) -> list[np.ndarray]:
        """The flat gradient buffers, one per dtype, in the same order on every process that
        built the optimizer from the same parameters.

        Every parameter's gradient is made to live in them first: a gradient that backward put
        elsewhere is copied in, a trainable parameter without one gets a zero gradient (so it
        is updated with whatever is written into its slot), a frozen one's slot is zeroed.
        Writing into the returned arrays in place changes the gradients the next ``step()``
        uses (an all-reduce, a clip)."""
        for buf in self._buffers:
            for k, tensor in enumerate(buf.tensors):
                if self._install(buf, k):
                    continue
                buf.view(buf.grads, k).fill(0)
                if tensor.requires_grad:
                    tensor.grad = buf.grad_tensors[k]
        return [buf.grads for buf in self._buffers]

    def _active_members(self, buf):
        """Per member of ``buf``, whether this step updates it; and the indices of trainable
        parameters without a gradient. Brings changes made behind the optimizer's back into
        the flat buffers first."""
        active, missing = [], []
        for k, tensor in enumerate(buf.tensors):
            if tensor._data is not buf.value_views[k]:
                try:
                    buf.rebind_value(k)
                except ValueError as exc:
                    raise ValueError(f"{self._owner}: parameter {buf.members[k]} {exc}") from None
            if not tensor.requires_grad:
                active.append(False)
                continue
            if not self._install(buf, k):
                active.append(False)
                missing.append(buf.members[k])
                continue
            active.append(True)
        return active, missing

    # ------------------------------------------------------------------ step
    @_with_step_hooks
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient: one kernel call per dtype.
        ``closure``, if given, recomputes and returns the loss (called first, as in PyTorch);
        its result is returned."""
        loss = closure() if closure is not None else None
        hyperparameters = self._validated_groups()
        plan = [(buf, *self._active_members(buf)) for buf in self._buffers]
        if not self._skips_missing_gradients:
            missing = [index for _, _, buf_missing in plan for index in buf_missing]
            if missing:
                described = "; ".join(self._describe(index) for index in sorted(missing))
                raise ValueError(
                    f"Parameter has no gradient. {self._owner}.step(): {described} has "
                    "grad None. Call backward() on a loss that depends on it before step(), or "
                    "leave it out of the optimizer (or set trainable=False)"
                )
        for buf, active, _ in plan:
            runs: list[tuple[Any, ...]] = []
            for group_index, first, end in buf.segments:
                group = hyperparameters[group_index]
                runs.extend(
                    (*run, group)
                    for run in buf.runs(active, first, end, self._split_flags(buf, group))
                )
            if runs:
                self._update(buf, runs)
                # The parameters changed in place: a graph recorded before this step that saved
                # them must not backpropagate with the new values (firefly.autograd).
                autograd.mark_modified(buf.values)
                if all(active):
                    buf.steps += 1
                else:
                    buf.steps[np.asarray(active, bool)] += 1
        return loss

    def _split_flags(self, buf, group):
        """A per-member flag that must be constant within a run, or None."""
        return None

    def fields(self, group: dict[str, Any], step: int, split: Any) -> tuple[Any, ...]:
        """The kernel's fields for one run (``self.Fields(...)``): ``group`` is the run's checked
        hyperparameters, ``step`` the number of updates its parameters have had, ``split`` its
        ``_split_flags`` value (False when there are none)."""
        raise NotImplementedError(f"{self._owner} declares no fields() for its kernel")

    def _kernel_for(self, runs: list[tuple[Any, ...]]) -> Callable[..., None]:
        """The update kernel for one call over ``runs`` (as ``_update`` takes them)."""
        return self._kernel

    def _update(self, buf, runs):
        """Apply one update to ``buf`` with one kernel call: ``runs`` holds (element slice,
        member slice, step, split flag, checked group) for each run of members to update."""
        fields = [self.fields(group, step, split) for _, _, step, split, group in runs]
        states, users = [], []
        for state in self.state_buffers:
            if state.used is None:  # every run uses it
                states.append(buf.buffer(state.name))
                users.append(None)
                continue
            used = [bool(state.used(run[4])) for run in runs]
            # A buffer no run uses stays unallocated; the kernel gets an empty array.
            states.append(buf.buffer(state.name) if any(used) else buf.values[:0])
            users.append(used)
        kernel = self._kernel_for(runs)
        kernel(buf.grads, *self._run_arrays(buf, runs, fields), tuple(states), buf.values)
        # The runs' slots now hold state. Once every member's do, there is nothing to mark:
        # a NumPy slice assignment per run and state is a good part of a small model's step.
        for state, used in zip(self.state_buffers, users):
            if state.name in buf.live_complete or (used is not None and not any(used)):
                continue
            live = buf.live[state.name]
            for k, run in enumerate(runs):
                if used is None or used[k]:
                    live[run[1]] = True
            if live.all():
                buf.live_complete.add(state.name)

    def _field_dtype(self, dtype):
        """The kernel's structured ``fields`` dtype for buffers of ``dtype``: the coefficients
        in that dtype, then the flags as bools, in their declared order."""
        field_dtype = self._field_dtypes.get(dtype)
        if field_dtype is None:
            field_dtype = self._field_dtypes[dtype] = np.dtype(
                [(name, dtype) for name in self.coefficients]
                + [(name, bool) for name in self.flags]
            )
        return field_dtype

    def _run_arrays(self, buf, runs, fields):
        """The kernel's (runs, fields) arrays: run bounds as int64, and one row of fields per
        run (coefficients given as Python floats, rounded once to the buffer's dtype).

        The last step's arrays are reused when their values are the same, as they are from one
        step to the next unless a hyperparameter, the set of trainable parameters or (Adam's
        bias corrections) the step count changed: building them costs more than the update of
        a small model. The kernels only read them."""
        key = (tuple([(elements.start, elements.stop) for elements, *_ in runs]), tuple(fields))
        if buf.last_run_arrays is not None and buf.last_run_arrays[0] == key:
            return buf.last_run_arrays[1]
        arrays = (np.array(key[0], np.int64), np.array(fields, self._field_dtype(buf.dtype)))
        buf.last_run_arrays = key, arrays
        return arrays

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state in PyTorch's layout, with plain values (NumPy arrays, Python
        numbers, tuples and lists) so that ``firefly.save`` stores it without pickling:

        ``{"state": {index: {"step": int, <state name>: ndarray}},
        "param_groups": [{<hyperparameter>: value, ..., "params": [indices]}]}``

        Parameters are numbered across the groups in order. ``state`` has an entry for each
        parameter with state (updated at least once). Arrays are copies.
        """
        state = {
            index: {"step": step, **arrays}
            for index, (step, arrays) in sorted(self._member_state().items())
        }
        if self.derived_state_names:
            groups = self._validated_groups()
            group_of = [g for g, group in enumerate(self.param_groups) for _ in group["params"]]
            for index, entry in state.items():
                entry.update(self.derived_state(groups[group_of[index]], entry["step"]))
        return {"state": state, "param_groups": self._group_state()}

    def derived_state(self, group: dict[str, Any], step: int) -> dict[str, float]:
        """{name: float} of ``derived_state_names`` for a parameter of ``group`` (checked
        hyperparameters) after ``step`` updates."""
        raise NotImplementedError(f"{self._owner} declares no derived_state()")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore param groups, step counts and state buffers from ``state_dict()`` output
        (also after a round trip through ``firefly.save``/``firefly.load``, which may turn keys
        into strings and numbers into 0-d arrays). Everything is checked before anything
        changes; values are copied into the optimizer's own buffers."""
        owner = f"{self._owner}.load_state_dict"
        saved_groups = self._checked_groups(state_dict)
        names = set(self.defaults)
        for i, saved in enumerate(saved_groups):
            missing = names - set(saved)
            unknown = set(saved) - names - SCHEDULER_KEYS
            if missing or unknown:
                raise ValueError(
                    f"{owner}: param_groups[{i}] has hyperparameters {sorted(saved)}, "
                    f"which do not match {self._owner}'s {sorted(names)}; "
                    "was the state saved from another optimizer?"
                )
            saved.update(self._check_group(saved))
        shapes = [_leaf_of(p).shape for p in self.parameters]
        count = len(shapes)
        # A format-1 checkpoint holds a Linear weight's state as (in, out), like the weight;
        # the weights that the model's load_state_dict converted are transposed here too.
        legacy = serialization.format_version(state_dict) < serialization.TORCH_LINEAR_VERSION
        carried = {}
        for key, entry in dict(state_dict["state"]).items():
            try:
                index = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"{owner}: state key {key!r} is not a parameter index") from None
            if not 0 <= index < count:
                raise ValueError(
                    f"{owner}: state key {key!r} is out of range for {count} parameters"
                )
            entry = dict(entry)
            step = entry.pop("step", None)
            for name in self.derived_state_names:
                value = entry.pop(name, None)
                if value is not None and not is_real(value):
                    raise ValueError(
                        f"{owner}: state '{name}' of {self._describe(index)} must be a number, "
                        f"got {type(value).__name__}"
                    )
            if (
                step is None
                or not is_real(step)
                or float(step) != int(step)
                or int(step) < self._min_saved_step
            ):
                raise ValueError(
                    f"{owner}: state of {self._describe(index)} needs a 'step' count "
                    f">= {self._min_saved_step}, got {step!r}"
                )
            if legacy and serialization.was_converted(_leaf_of(self.parameters[index])):
                entry = {
                    name: np.ascontiguousarray(value.T)
                    if isinstance(value, np.ndarray) and value.ndim == 2
                    else value
                    for name, value in entry.items()
                }
            for name, value in entry.items():
                if name not in self._state_names:
                    raise ValueError(
                        f"{owner}: unknown state '{name}' for {self._describe(index)}; "
                        f"{self._owner} keeps {list(self._state_names)}"
                    )
                if (
                    not isinstance(value, np.ndarray)
                    or value.shape != shapes[index]
                    or value.dtype.kind != "f"
                ):
                    raise ValueError(
                        f"{owner}: state '{name}' of {self._describe(index)} must be a float array "
                        "of the parameter's shape, got "
                        f"{getattr(value, 'shape', type(value).__name__)}"
                    )
            carried[index] = (int(step), entry)

        for group, saved in zip(self.param_groups, saved_groups):
            params, param_names = group["params"], group.get("param_names")
            group.clear()
            group.update(saved)
            group["params"] = params
            if param_names is not None:
                group["param_names"] = param_names
        self._validated = []
        for buf in self._buffers:
            buf.steps[:] = 0
            buf.state.clear()
            buf.live.clear()
            buf.live_complete.clear()
        self._restore(carried)
