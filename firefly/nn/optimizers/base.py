"""What optimizers share.

``BaseOptimizer`` is the seed's interface, and user subclasses written against the seed keep
working: it holds the list of Parameters, ``zero_grad()`` drops every gradient, and ``step()``
is the subclass's to write.

``FusedOptimizer`` is the base of firefly's own optimizers. At construction it packs every
parameter of one dtype into one flat contiguous buffer (each Parameter's array becomes a view
into it; values are kept), with a flat gradient buffer of the same layout and flat state
buffers. ``zero_grad()`` zeroes the gradient buffer in one pass and installs each parameter's
``.grad`` as a view into it, so backward accumulates straight into the flat buffer and
``step()`` updates a whole dtype group with one kernel call.
"""
import itertools
import numbers

import numpy as np

from firefly.tensor import FLOAT_DTYPES, Tensor



def _parameter_list(parameters):
    """(names, Parameters) from an iterable of Parameters or of (name, Parameter) pairs, as
    ``Module.get_parameters()`` and ``Module.named_parameters()`` give them. Unnamed ones get
    None."""
    if isinstance(parameters, Tensor) or hasattr(parameters, "tensor"):
        raise TypeError(
            f"optimizer: parameters must be an iterable of Parameters, got a single "
            f"{type(parameters).__name__}; pass a list such as model.get_parameters()"
        )
    try:
        items = list(parameters)
    except TypeError:
        raise TypeError(
            f"optimizer: parameters must be an iterable of Parameters, got {type(parameters).__name__}; "
            "pass a list such as model.get_parameters()"
        ) from None
    names, params = [], []
    for index, item in enumerate(items):
        name = None
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            name, item = item
        if not isinstance(getattr(item, "tensor", None), Tensor):
            raise TypeError(
                f"optimizer: parameter {index} is a {type(item).__name__}, not a Parameter; pass "
                "firefly.nn.Parameter objects (model.get_parameters()) or (name, Parameter) pairs "
                "(model.named_parameters())"
            )
        names.append(name)
        params.append(item)
    return names, params


class BaseOptimizer:
    """An optimizer over a list of Parameters: ``zero_grad()`` and ``step()``.

    Subclass it and write ``step``, as the seed does::

        class SGD(BaseOptimizer):
            def __init__(self, parameters, lr=0.01):
                super().__init__(parameters)
                self.lr = Tensor(lr)

            def step(self):
                for param in self.parameters:
                    param.update(param.tensor - self.lr * param.tensor.grad)

    ``parameters`` may also hold (name, Parameter) pairs (``model.named_parameters()``); the
    names then appear in error messages.
    """

    def __init__(self, parameters):
        self._parameter_names, self.parameters = _parameter_list(parameters)

    def zero_grad(self):
        for param in self.parameters:
            param.tensor.zero_grad()

    def step(self):
        raise NotImplementedError("Step method not implemented.")

    def _describe(self, index):
        """'parameter 3 'fc1.bias' (shape (32,), float32)', for error messages."""
        name = self._parameter_names[index]
        tensor = self.parameters[index].tensor
        label = f"parameter {index}" + (f" '{name}'" if name else "")
        return f"{label} (shape {tensor.shape}, {tensor.dtype})"


# ----------------------------------------------------------------------------- hyperparameters
def _is_scalar(value):
    return isinstance(value, numbers.Real) or (isinstance(value, np.ndarray) and value.ndim == 0)


def check_float(owner, name, value, minimum=None):
    """``value`` as a Python float; a ValueError that names ``name`` unless it is a finite number
    (at least ``minimum`` when given)."""
    if not _is_scalar(value) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{owner}: invalid {name} value {value}; {name} must be a finite number{bound}")
    return value


def check_flag(owner, name, value):
    """``value`` as a bool; a TypeError unless it is a bool (a string like "False" is refused)."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, np.ndarray) and value.shape == () and value.dtype == bool):
        return bool(value)
    raise TypeError(f"{owner}: {name} must be True or False, got {type(value).__name__} {value!r}")


# ----------------------------------------------------------------------------- flat buffers
class _DtypeGroup:
    """The parameters of one dtype, packed: flat value, gradient and state buffers, with one
    slot per parameter in the order the parameters were given."""

    def __init__(self, dtype, members, tensors):
        self.dtype = dtype
        self.members = members  # indices into the optimizer's parameter list
        self.shapes = [t.shape for t in tensors]
        self.offsets = [0, *itertools.accumulate(t._data.size for t in tensors)]
        self.values = np.empty(self.offsets[-1], dtype)
        self.grads = np.zeros(self.offsets[-1], dtype)
        self.value_views = []
        self.grad_tensors = []
        for k, tensor in enumerate(tensors):
            view = self.view(self.values, k)
            view[...] = tensor._data
            tensor._data = view
            self.value_views.append(view)
            self.grad_tensors.append(Tensor._wrap(self.view(self.grads, k)))
        self.state = {}  # state buffer name -> flat array, allocated on first use
        self.steps = np.zeros(len(members), np.int64)  # updates applied to each parameter

    def view(self, flat, k):
        """Member ``k``'s slot of a flat buffer, in the parameter's shape."""
        return flat[self.offsets[k]:self.offsets[k + 1]].reshape(self.shapes[k])

    def buffer(self, name):
        """(flat state buffer ``name``, whether it was just allocated as zeros)."""
        flat = self.state.get(name)
        if flat is not None:
            return flat, False
        flat = self.state[name] = np.zeros_like(self.values)
        return flat, True

    def runs(self, active):
        """(element slice, member slice, step count) for each maximal run of consecutive active
        members that share a step count: one kernel call each (usually one for the group)."""
        runs = []
        k, count = 0, len(active)
        while k < count:
            if not active[k]:
                k += 1
                continue
            first, step = k, self.steps[k]
            while k < count and active[k] and self.steps[k] == step:
                k += 1
            runs.append((slice(self.offsets[first], self.offsets[k]), slice(first, k), int(step)))
        return runs


class _HookHandle:
    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


class FusedOptimizer(BaseOptimizer):
    """Base of firefly's optimizers: flat per-dtype buffers and one kernel call per group.

    Subclasses pass their hyperparameters to ``__init__``, validate them in
    ``_check_hyperparameters`` and apply the update in ``_update``. Parameters whose tensor does
    not require grad (``trainable=False``) are left alone. A parameter that requires grad but
    has none at ``step()`` is skipped (PyTorch's behaviour) unless ``_skips_missing_gradients``
    is False, in which case ``step()`` raises before updating anything.

    Gradients set another way than through the installed views (``param.tensor.grad``
    replaced, or set to None and recomputed by backward) and parameter arrays replaced behind
    the optimizer's back are noticed at ``step()`` by an identity check and copied into the
    flat buffers, so the result is the same, one copy slower.
    """

    _state_names = ()  # the flat state buffers the subclass may keep, as named in state_dict
    _skips_missing_gradients = True

    def __init__(self, parameters, hyperparameters):
        super().__init__(parameters)
        owner = type(self).__name__
        if not self.parameters:
            raise ValueError(f"{owner}: got an empty parameter list; pass the model's parameters, e.g. model.get_parameters()")
        self._set_hyperparameters(hyperparameters)
        first_index = {}
        by_dtype = {}
        for index, param in enumerate(self.parameters):
            tensor = param.tensor
            if id(tensor) in first_index:
                raise ValueError(
                    f"{owner}: {self._describe(index)} is the same parameter as "
                    f"{self._describe(first_index[id(tensor)])}; pass each parameter once"
                )
            first_index[id(tensor)] = index
            if tensor.dtype not in FLOAT_DTYPES:
                raise TypeError(f"{owner}: {self._describe(index)} must be float32 or float64")
            by_dtype.setdefault(tensor.dtype, []).append(index)
        self._groups = [
            _DtypeGroup(dtype, members, [self.parameters[i].tensor for i in members])
            for dtype, members in by_dtype.items()
        ]
        for group in self._groups:
            for k, index in enumerate(group.members):
                tensor = self.parameters[index].tensor
                if tensor.grad is not None:
                    self._adopt_grad(group, k, tensor)

    # ------------------------------------------------------------------ hyperparameters
    def _check_hyperparameters(self, values):
        """Validated, normalized hyperparameters (a dict in the constructor's order)."""
        raise NotImplementedError

    def _set_hyperparameters(self, values):
        checked = self._check_hyperparameters(values)
        self._hyperparameter_names = tuple(checked)
        for name, value in checked.items():
            setattr(self, name, value)

    def _hyperparameters(self):
        """{name: value} with plain Python values (tuples as lists), as stored in state_dict."""
        values = {name: getattr(self, name) for name in self._hyperparameter_names}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}

    def __repr__(self):
        args = ", ".join(f"{name}={value!r}" for name, value in self._hyperparameters().items())
        return f"{type(self).__name__}({len(self.parameters)} parameters, {args})"

    # ------------------------------------------------------------------ gradients
    def zero_grad(self, set_to_none=False):
        """Zero every gradient in one pass over the flat gradient buffers, and install each
        trainable parameter's ``.grad`` as a view into them.

        Unlike PyTorch's default, gradients become zeros, not None (PyTorch's
        ``set_to_none=False``): a trainable parameter that then gets no gradient from
        backward is still updated, with a zero gradient. ``set_to_none=True`` drops them
        instead; backward then allocates new gradients, which ``step()`` copies in.
        """
        for group in self._groups:
            if not set_to_none:
                group.grads.fill(0)
            for k, index in enumerate(group.members):
                tensor = self.parameters[index].tensor
                if set_to_none:
                    tensor.grad = None
                elif tensor.requires_grad:
                    tensor.grad = group.grad_tensors[k]

    def _adopt_grad(self, group, k, tensor):
        """Copy a gradient that is not the installed view into its flat slot; install the view."""
        grad = tensor.grad
        index = group.members[k]
        array = grad._data if isinstance(grad, Tensor) else grad
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
            raise TypeError(
                f"{type(self).__name__}: the gradient of {self._describe(index)} is a "
                f"{type(grad).__name__}; it must be a float Tensor"
            )
        if array.shape != group.shapes[k]:
            raise ValueError(
                f"{type(self).__name__}: the gradient of {self._describe(index)} has shape "
                f"{array.shape}; it must have the parameter's shape"
            )
        np.copyto(group.grad_tensors[k]._data, array, casting="same_kind")
        tensor.grad = group.grad_tensors[k]

    def _rebind_value(self, group, k, tensor):
        """Copy a parameter array replaced behind the optimizer's back into its flat slot, and
        make the tensor a view of the slot again."""
        array = tensor._data
        if array.shape != group.shapes[k] or array.dtype != group.dtype:
            raise ValueError(
                f"{type(self).__name__}: parameter {group.members[k]} now has shape {array.shape} "
                f"and dtype {array.dtype}, but had shape {group.shapes[k]} and dtype {group.dtype} "
                "when the optimizer was created; create a new optimizer after changing parameters"
            )
        group.value_views[k][...] = array
        tensor._data = group.value_views[k]

    def _active_members(self, group):
        """Per member of ``group``, whether this step updates it; and the indices of trainable
        parameters without a gradient. Brings changes made behind the optimizer's back into
        the flat buffers first."""
        active, missing = [], []
        for k, index in enumerate(group.members):
            tensor = self.parameters[index].tensor
            if tensor._data is not group.value_views[k]:
                self._rebind_value(group, k, tensor)
            if tensor.grad is None or not tensor.requires_grad:
                active.append(False)
                if tensor.requires_grad:
                    missing.append(index)
                continue
            if tensor.grad is not group.grad_tensors[k]:
                self._adopt_grad(group, k, tensor)
            active.append(True)
        return active, missing

    # ------------------------------------------------------------------ hooks
    def register_step_pre_hook(self, hook):
        """``hook(optimizer, args, kwargs)`` runs at the start of every ``step()``; if it returns
        ``(args, kwargs)``, step uses those (PyTorch's rule). Returns a handle with ``remove()``."""
        hooks = self.__dict__.setdefault("_step_pre_hooks", {})
        key = object()
        hooks[key] = hook
        return _HookHandle(hooks, key)

    def flat_grads(self):
        """The flat gradient buffers, one per dtype, with every trainable parameter's gradient
        in them (copied in when backward made it elsewhere; zeros when it has none, and the
        parameter's ``.grad`` is then the zero slot). Writing into them changes what the next
        ``step()`` uses."""
        for group in self._groups:
            for k, index in enumerate(group.members):
                tensor = self.parameters[index].tensor
                if not tensor.requires_grad:
                    continue
                if tensor.grad is None:
                    group.grad_tensors[k]._data[...] = 0
                    tensor.grad = group.grad_tensors[k]
                elif tensor.grad is not group.grad_tensors[k]:
                    self._adopt_grad(group, k, tensor)
        return [group.grads for group in self._groups]

    # ------------------------------------------------------------------ step
    def step(self, *args, **kwargs):
        """Update every parameter that has a gradient. ``closure``, if given, recomputes and
        returns the loss (called first, as in PyTorch); its result is returned."""
        for hook in list(self.__dict__.get("_step_pre_hooks", {}).values()):
            result = hook(self, args, kwargs)
            if result is not None:
                args, kwargs = result
        return self._step(*args, **kwargs)

    def _step(self, closure=None):
        loss = closure() if closure is not None else None
        plan = [(group, *self._active_members(group)) for group in self._groups]
        if not self._skips_missing_gradients:
            missing = [index for _, _, group_missing in plan for index in group_missing]
            if missing:
                described = "; ".join(self._describe(index) for index in sorted(missing))
                raise ValueError(
                    f"Parameter has no gradient. {type(self).__name__}.step(): {described} has "
                    "grad None. Call backward() on a loss that depends on it before step(), or "
                    "leave it out of the optimizer (or set trainable=False)"
                )
        for group, active, _ in plan:
            runs = group.runs(active)
            self._update(group, [(elements, step) for elements, _, step in runs])
            for _, members, _ in runs:
                group.steps[members] += 1
        return loss

    def _update(self, group, runs):
        """Apply one update to ``group``: for each (element slice, step) in ``runs``, to that
        slice of the flat buffers, whose parameters have had ``step`` updates so far."""
        raise NotImplementedError

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """The optimizer's state, in PyTorch's layout, with plain values (NumPy arrays, Python
        numbers and lists) so that ``firefly.save`` stores it without pickling:

        ``{"state": {index: {"step": int, <buffer name>: ndarray}}, "param_groups": [{<hyperparameter>: value, "params": [indices]}]}``

        ``state`` has an entry for each parameter updated at least once. Arrays are copies.
        """
        state = {}
        for group in self._groups:
            for k, index in enumerate(group.members):
                if group.steps[k] == 0:
                    continue
                entry = {"step": int(group.steps[k])}
                for name in self._state_names:
                    if name in group.state:
                        entry[name] = group.view(group.state[name], k).copy()
                state[index] = entry
        return {
            "state": dict(sorted(state.items())),
            "param_groups": [{**self._hyperparameters(), "params": list(range(len(self.parameters)))}],
        }

    def load_state_dict(self, state_dict):
        """Restore hyperparameters, step counts and state buffers from ``state_dict()`` output
        (also after a round trip through ``firefly.save``/``firefly.load``, which may turn keys
        into strings and numbers into 0-d arrays). Everything is checked before anything
        changes; values are copied into the optimizer's own buffers."""
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{owner}: expected a dict with keys 'state' and 'param_groups' (from state_dict()), got {keys}")
        groups = list(state_dict["param_groups"])
        if len(groups) != 1:
            raise ValueError(f"{owner}: expected one parameter group, got {len(groups)}")
        saved = dict(groups[0])
        saved_params = saved.pop("params", None)
        count = len(self.parameters)
        if saved_params is None or len(saved_params) != count:
            got = "none" if saved_params is None else len(saved_params)
            raise ValueError(f"{owner}: the state was saved for {got} parameters, this optimizer has {count}")
        if set(saved) != set(self._hyperparameter_names):
            raise ValueError(
                f"{owner}: hyperparameters {sorted(saved)} do not match {type(self).__name__}'s "
                f"{sorted(self._hyperparameter_names)}; was the state saved from another optimizer?"
            )
        self._check_hyperparameters(saved)

        entries = {}
        for key, entry in dict(state_dict["state"]).items():
            try:
                index = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"{owner}: state key {key!r} is not a parameter index") from None
            if not 0 <= index < count:
                raise ValueError(f"{owner}: state key {key!r} is out of range for {count} parameters")
            entry = dict(entry)
            step = entry.pop("step", None)
            if step is None or not _is_scalar(step) or float(step) != int(step) or int(step) < 1:
                raise ValueError(f"{owner}: state of {self._describe(index)} needs a 'step' count >= 1, got {step!r}")
            shape = self.parameters[index].tensor.shape
            for name, value in entry.items():
                if name not in self._state_names:
                    raise ValueError(
                        f"{owner}: unknown state '{name}' for {self._describe(index)}; "
                        f"{type(self).__name__} keeps {list(self._state_names)}"
                    )
                if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype.kind != "f":
                    raise ValueError(
                        f"{owner}: state '{name}' of {self._describe(index)} must be a float array "
                        f"of the parameter's shape, got {getattr(value, 'shape', type(value).__name__)}"
                    )
            entries[index] = (int(step), entry)

        self._set_hyperparameters(saved)
        for group in self._groups:
            group.steps[:] = 0
            kept = {name for index in group.members if index in entries for name in entries[index][1]}
            group.state = {name: np.zeros_like(group.values) for name in self._state_names if name in kept}
            for k, index in enumerate(group.members):
                if index not in entries:
                    continue
                step, buffers = entries[index]
                group.steps[k] = step
                for name, value in buffers.items():
                    group.view(group.state[name], k)[...] = value
