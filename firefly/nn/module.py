"""Module: the base class of layers and models. Attribute assignment registers Parameters,
sub-Modules and lists of them, in the order they are assigned."""

import functools
import os
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, cast

import numpy as np
from numpy.typing import DTypeLike

from firefly import devices
from firefly.hooks import RemovableHandle
from firefly.nn.parameter import Parameter
from firefly.tensor import FLOAT_DTYPES, Tensor

# What the methods that return ``self`` return, so that ``Linear(2, 3).eval()`` stays a Linear.
_ModuleT = TypeVar("_ModuleT", bound="Module")
# One registered hook: the callable and whether it takes the keyword arguments.
_HookEntry = tuple[Callable[..., Any], bool]


class IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns: the keys the state lacked and the keys it had extra."""

    __slots__ = ()

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()


def _registrable(value):
    """Whether ``value`` is a Parameter, a Module, or a list/tuple made only of them.

    Lists are read when the parameters are listed, not when assigned, so Modules appended to a
    registered list (an empty one included) take part too."""
    if isinstance(value, (Parameter, Module)):
        return True
    if isinstance(value, (list, tuple)):
        members = [isinstance(v, (Parameter, Module)) for v in value]
        if any(members) and not all(members):
            raise TypeError(
                "Module: a list that holds Parameters or Modules must hold nothing else (its "
                "other items would not be saved or trained); "
                "keep the other values in a separate attribute"
            )
        return all(members)
    return False


def _watch_inputs(args):
    """The arguments with each Tensor that requires grad replaced by a recorded copy, so that
    hooks on the copies see the gradients with respect to the module's inputs; and the
    positions of those copies."""
    args = list(args)
    positions = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
    for i in positions:
        args[i] = args[i].clone()
    return tuple(args), positions


def _attach_backward_hooks(module, backward_hooks, args, positions, output):
    """Run the full backward hooks once all input gradients are known; a hook on the output
    sees its gradient."""
    if not isinstance(output, Tensor) or not output.requires_grad:
        return
    tensor_positions = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
    state = {"grad_output": None, "grad_input": {}, "pending": len(positions)}

    def call_hooks():
        grad_input = tuple(state["grad_input"].get(i) for i in tensor_positions)
        for hook in backward_hooks:
            result = hook(module, grad_input, (state["grad_output"],))
            if result is not None:
                if len(positions) != 1:
                    raise RuntimeError(
                        f"register_full_backward_hook on {type(module).__name__}: a hook may "
                        "replace grad_input only for a module with one input that requires grad"
                    )
                result = result if isinstance(result, tuple) else (result,)
                grad_input = result
        return grad_input

    def on_output(grad):
        state["grad_output"] = grad
        if not positions:
            call_hooks()

    def on_input(i):
        def hook(grad):
            state["grad_input"][i] = grad
            state["pending"] -= 1
            if state["pending"] == 0:
                replaced = call_hooks()
                if len(positions) == 1:
                    return replaced[tensor_positions.index(i)]
            return None

        return hook

    output.register_hook(on_output)
    for i in positions:
        args[i].register_hook(on_input(i))


class Module:
    """Base class of every layer and model, as ``torch.nn.Module``.

    Subclasses call ``super().__init__()`` first, assign Parameters, Modules (or lists of
    them) as attributes, and define ``forward``. Calling the module runs ``forward``.
    Tensors that are state but not parameters (batch norm's running statistics) are
    registered with ``register_buffer``.
    """

    # Set through object.__setattr__ in __init__ (and _add_hook); declared for the type checker.
    training: bool
    _registered: dict[str, None]
    _buffers: dict[str, bool]
    _hooks: dict[str, list[_HookEntry]]

    def __init__(self) -> None:
        # Names of registered attributes, in assignment order; the values stay in __dict__,
        # so reading ``self.fc1`` in forward costs a plain attribute lookup.
        object.__setattr__(self, "_registered", {})
        object.__setattr__(self, "_buffers", {})  # buffer name -> persistent (in state_dict)
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value: Any) -> None:
        registered = self.__dict__.get("_registered")
        if registered is None:
            raise AttributeError(
                f"cannot assign '{name}' before Module.__init__() runs; call super().__init__() "
                f"first in {type(self).__name__}.__init__"
            )
        buffers = self.__dict__["_buffers"]
        if name in buffers:
            if value is None or isinstance(value, Tensor) and not isinstance(value, Parameter):
                object.__setattr__(self, name, value)  # a new value for the buffer
                return
            if not _registrable(value):
                raise TypeError(
                    f"cannot assign a {type(value).__name__} to buffer '{name}' "
                    f"of {type(self).__name__}: "
                    "a buffer holds a Tensor or None"
                )
            del buffers[name]
        if _registrable(value):
            registered[name] = None
        else:
            registered.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._registered.pop(name, None)
        self._buffers.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register ``tensor`` (a Tensor, or None) as state that is not a parameter, as torch.

        A buffer is read as ``self.<name>``, listed by ``buffers()``/``named_buffers()``,
        converted by ``to()``/``float()``/``double()``, and (when ``persistent``) saved in
        ``state_dict()`` and restored by ``load_state_dict()``. It never requires grad.
        """
        if "_buffers" not in self.__dict__:
            raise AttributeError(
                "cannot register a buffer before Module.__init__() runs; "
                "call super().__init__() first"
            )
        if not isinstance(name, str):
            raise TypeError(f"register_buffer: the name must be a str, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(
                f"register_buffer: the name must be non-empty and contain no '.', got {name!r}"
            )
        if name not in self._buffers and (name in self.__dict__ or hasattr(type(self), name)):
            raise KeyError(
                f"register_buffer: attribute '{name}' already exists on {type(self).__name__}"
            )
        if tensor is not None and (not isinstance(tensor, Tensor) or isinstance(tensor, Parameter)):
            raise TypeError(
                f"register_buffer: '{name}' must be a Tensor or None, got {type(tensor).__name__} "
                "(wrap arrays with firefly.Tensor; parameters are assigned as attributes)"
            )
        self._buffers[name] = bool(persistent)
        object.__setattr__(self, name, tensor)

    def add_module(self, name: str, module: "Module | None") -> None:
        """Register ``module`` (a Module or None) as the child ``name``, as torch's
        ``add_module``; the name must be a non-empty string without '.' that is not already
        another attribute."""
        self._check_name("add_module", "module", name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(
                f"add_module: {type(module).__name__} is not a Module subclass (name {name!r})"
            )
        setattr(self, name, module)  # None is kept as a plain attribute, as torch lists it nowhere

    register_module = add_module

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register ``param`` (a Parameter or None) as ``name``, as torch's."""
        self._check_name("register_parameter", "parameter", name)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"register_parameter: cannot assign a {type(param).__name__} as parameter "
                f"{name!r} (firefly.nn.Parameter or None required)"
            )
        setattr(self, name, param)

    def _check_name(self, method, what, name):
        if "_registered" not in self.__dict__:
            raise AttributeError(
                f"{method}: cannot register a {what} before Module.__init__() runs; call "
                "super().__init__() first"
            )
        if not isinstance(name, str):
            raise TypeError(
                f"{method}: {what} name should be a string, got {type(name).__name__} {name!r}"
            )
        if not name:
            raise KeyError(f'{method}: {what} name can\'t be empty string ""')
        if "." in name:
            raise KeyError(f'{method}: {what} name can\'t contain ".", got {name!r}')
        if name not in self._registered and (name in self.__dict__ or hasattr(type(self), name)):
            raise KeyError(f"{method}: attribute {name!r} already exists on {type(self).__name__}")

    def get_submodule(self, target: str) -> "Module":
        """The module at dotted path ``target`` ("" is this module), as torch's."""
        if not isinstance(target, str):
            raise TypeError(
                f"get_submodule: target must be a dotted name string, got {type(target).__name__}"
            )
        module = self
        walked: list[str] = []
        for part in target.split(".") if target else []:
            children = dict(module.named_children())
            if part not in children:
                where = ".".join(walked) or type(self).__name__
                raise AttributeError(
                    f"get_submodule: {where} has no submodule {part!r} (target {target!r}; "
                    f"its children are {sorted(children)})"
                )
            module = children[part]
            walked.append(part)
        return module

    def _get_member(self, method, target, kind):
        module_path, _, name = target.rpartition(".") if isinstance(target, str) else ("", "", "")
        if not isinstance(target, str) or not name:
            raise TypeError(f"{method}: target must be a dotted name string, got {target!r}")
        module = self.get_submodule(module_path)
        members = (
            dict(module.named_parameters(recurse=False))
            if kind == "parameter"
            else {n: module.__dict__[n] for n in module._buffers if module.__dict__[n] is not None}
        )
        if name not in members:
            raise AttributeError(
                f"{method}: {type(module).__name__} at {module_path or 'the top'!r} has no {kind} "
                f"{name!r} (target {target!r}; it has {sorted(members)})"
            )
        return members[name]

    def get_parameter(self, target: str) -> Parameter:
        """The Parameter at dotted path ``target`` (e.g. "encoder.0.weight"), as torch's."""
        return self._get_member("get_parameter", target, "parameter")

    def get_buffer(self, target: str) -> Tensor:
        """The buffer at dotted path ``target`` (e.g. "bn.running_mean"), as torch's."""
        return self._get_member("get_buffer", target, "buffer")

    # ------------------------------------------------------------------ forward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if "_hooks" not in self.__dict__:  # the common case costs one dict lookup
            return self.forward(*args, **kwargs)
        return self._call_with_hooks(args, kwargs)

    # ------------------------------------------------------------------ forward hooks
    def register_forward_pre_hook(
        self, hook: Callable[..., Any], *, prepend: bool = False, with_kwargs: bool = False
    ) -> RemovableHandle:
        """Call ``hook(module, args)`` (``hook(module, args, kwargs)`` with ``with_kwargs``)
        before each forward, as torch's; a returned value replaces the arguments (a
        non-tuple is wrapped; with ``with_kwargs``, an ``(args, kwargs)`` pair). Returns a
        handle whose ``remove()`` unregisters the hook."""
        return self._add_hook("pre", "register_forward_pre_hook", hook, prepend, with_kwargs)

    def register_forward_hook(
        self,
        hook: Callable[..., Any],
        *,
        prepend: bool = False,
        with_kwargs: bool = False,
        always_call: bool = False,
    ) -> RemovableHandle:
        """Call ``hook(module, args, output)`` (``hook(module, args, kwargs, output)`` with
        ``with_kwargs``) after each forward, as torch's; a returned value replaces the output.
        Returns a handle whose ``remove()`` unregisters the hook."""
        return self._add_hook("post", "register_forward_hook", hook, prepend, with_kwargs)

    def register_full_backward_hook(
        self, hook: Callable[..., Any], *, prepend: bool = False
    ) -> RemovableHandle:
        """``hook(module, grad_input, grad_output)`` runs when the gradients with respect to
        the module's Tensor inputs are computed (tuples, None for inputs that need none); for
        a module with one input that requires grad, a tuple it returns replaces grad_input.
        The module's forward must return one Tensor. Returns a handle with ``remove()``."""
        return self._add_hook("backward", "register_full_backward_hook", hook, prepend, False)

    def _add_hook(self, kind, method, hook, prepend, with_kwargs):
        if not callable(hook):
            raise TypeError(f"{method}: hook must be callable, got {type(hook).__name__} {hook!r}")
        hooks = self.__dict__.get("_hooks")
        if hooks is None:
            hooks = {"pre": [], "post": [], "backward": []}
            object.__setattr__(self, "_hooks", hooks)
        entry = (hook, bool(with_kwargs))
        if prepend:
            hooks[kind].insert(0, entry)
        else:
            hooks[kind].append(entry)
        return RemovableHandle(functools.partial(self._remove_hook, kind, entry))

    def _remove_hook(self, kind, entry):
        hooks = self.__dict__.get("_hooks")
        if hooks is None or entry not in hooks[kind]:
            return
        hooks[kind].remove(entry)
        if not any(hooks.values()):
            object.__delattr__(self, "_hooks")  # back to the plain call

    def _call_with_hooks(self, args, kwargs):
        hooks = self._hooks
        for hook, with_kwargs in list(hooks["pre"]):
            if with_kwargs:
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError(
                            "forward pre-hook with_kwargs must return None or a tuple of "
                            f"(new_args, new_kwargs), got {type(result).__name__}"
                        )
                    args, kwargs = result
            else:
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        backward_hooks = [hook for hook, _ in hooks["backward"]]
        if backward_hooks:
            args, watched = _watch_inputs(args)
        output = self.forward(*args, **kwargs)
        for hook, with_kwargs in list(hooks["post"]):
            result = hook(self, args, kwargs, output) if with_kwargs else hook(self, args, output)
            if result is not None:
                output = result
        if backward_hooks:
            _attach_backward_hooks(self, backward_hooks, args, watched, output)
        return output

    # ------------------------------------------------------------------ traversal
    def _members(self):
        """(name, Parameter or Module) directly owned by this module, lists flattened to name.i."""
        for name in self._registered:
            value = self.__dict__[name]
            if isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    yield f"{name}.{i}", item
            else:
                yield name, value

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, member in self._members():
            if isinstance(member, Module):
                yield name, member

    def children(self) -> Iterator["Module"]:
        for _, module in self.named_children():
            yield module

    def named_modules(
        self, memo: set["Module"] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, "Module"]]:
        """This module and every module under it, each once (unless not ``remove_duplicate``),
        with dotted names; ``memo`` is a set of modules to leave out, as in torch."""
        seen = {id(m) for m in memo} if memo is not None else set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen and remove_duplicate:
                continue
            seen.add(id(module))
            if memo is not None:
                memo.add(module)
            yield name, module
            children = [(f"{name}.{n}" if name else n, m) for n, m in module.named_children()]
            stack.extend(reversed(children))

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) in definition order: a sub-Module's parameters come where the
        sub-Module was assigned (PyTorch lists a module's own parameters before its children's).
        A shared Parameter or Module appears once (unless not ``remove_duplicate``). Without
        ``recurse``, only this module's own parameters."""
        if not recurse:
            for name, member in self._members():
                if isinstance(member, Parameter):
                    yield (f"{prefix}.{name}" if prefix else name), member
            return
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, member = stack.pop()
            if id(member) in seen and (remove_duplicate or isinstance(member, Module)):
                continue
            seen.add(id(member))
            if isinstance(member, Parameter):
                yield name, member
            elif isinstance(member, Module):
                inner = [(f"{name}.{n}" if name else n, m) for n, m in member._members()]
                stack.extend(reversed(inner))

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every Parameter (trainable or not), in definition order, as PyTorch's
        ``parameters()``."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, Tensor) of every buffer that is not None: this module's, then (with
        ``recurse``) each submodule's in ``named_modules()`` order. A shared buffer appears once."""
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_name, module in modules:
            for name in module._buffers:
                value = module.__dict__[name]
                if value is not None and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{module_name}.{name}" if module_name else name), value

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def _named_state(self):
        """(dotted name, Parameter or buffer Tensor) of what ``state_dict()`` holds: parameters
        in definition order, each module's persistent buffers after its own members."""
        seen = set()

        def walk(module, prefix):
            for name, member in module._members():
                if id(member) in seen:
                    continue
                seen.add(id(member))
                full = f"{prefix}.{name}" if prefix else name
                if isinstance(member, Parameter):
                    yield full, member
                else:
                    yield from walk(member, full)
            for name, persistent in module._buffers.items():
                value = module.__dict__[name]
                if persistent and value is not None:
                    yield (f"{prefix}.{name}" if prefix else name), value

        return walk(self, "")

    def get_parameters(self, discard_non_trainable: bool = True) -> list[Parameter]:
        """A list of the Parameters in definition order; only the trainable ones by default."""
        return [p for p in self.parameters() if p.trainable or not discard_non_trainable]

    # ------------------------------------------------------------------ modes and gradients
    def train(self: _ModuleT, mode: bool = True) -> _ModuleT:
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self: _ModuleT) -> _ModuleT:
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (``set_to_none``, torch's default) or zero it."""
        for param in self.parameters():
            if set_to_none or param.grad is None:
                param.tensor.zero_grad()
            else:
                param.grad.fill_(0)

    def requires_grad_(self: _ModuleT, requires_grad: bool = True) -> _ModuleT:
        """Make every parameter require grad (or not, to freeze the module); returns self."""
        for param in self.parameters():
            param.tensor.requires_grad = bool(requires_grad)
        return self

    def apply(self: _ModuleT, fn: Callable[["Module"], object]) -> _ModuleT:
        """Call ``fn(module)`` on every submodule, then on this module (torch's order); returns
        self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ dtype
    def to(
        self: _ModuleT,
        *args: Any,
        dtype: DTypeLike | None = None,
        device: object = None,
        non_blocking: bool = False,
    ) -> _ModuleT:
        """Convert the parameters and floating-point buffers to ``dtype`` in place (torch's
        ``to(dtype)``; ``to("cpu")`` and ``to(tensor)`` also work). Integer buffers such as
        ``num_batches_tracked`` keep their dtype. Returns self.

        The parameters get new storage: build the optimizer after converting the model, as
        torch recommends, so that its flat buffers view the converted parameters.
        """
        for arg in args:
            if devices.is_device(arg):
                device = arg
            elif isinstance(arg, Tensor):
                dtype = arg.dtype
            else:
                dtype = arg
        devices.as_device(f"{type(self).__name__}.to", device)
        if dtype is None:
            return self
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(
                f"{type(self).__name__}.to: {dtype!r} is not a dtype; use float32 or float64"
            ) from None
        if dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"{type(self).__name__}.to: modules convert to float32 or float64, got {dtype}"
            )
        for param in self.parameters():
            leaf = param.tensor
            if leaf.dtype != dtype:
                leaf._data = leaf._data.astype(dtype)
                if leaf.grad is not None:
                    leaf.grad = Tensor(leaf.grad._data.astype(dtype))
        for module in self.modules():
            for name in module._buffers:
                value = module.__dict__[name]
                if value is not None and value.dtype.kind == "f" and value.dtype != dtype:
                    object.__setattr__(module, name, Tensor(value._data.astype(dtype)))
        return self

    def cpu(self: _ModuleT) -> _ModuleT:
        """``self``: the module is on the CPU already."""
        return self

    def share_memory(self: _ModuleT) -> _ModuleT:
        """``self``: firefly has no worker processes to share the parameters with."""
        return self

    def cuda(self, device: object = None) -> None:
        """Raises a ValueError: firefly runs on the CPU only."""
        devices.refuse_cuda(f"{type(self).__name__}.cuda", device)

    def float(self: _ModuleT) -> _ModuleT:
        return self.to(np.float32)

    def double(self: _ModuleT) -> _ModuleT:
        return self.to(np.float64)

    # ------------------------------------------------------------------ state
    def state_dict(
        self,
        *,
        destination: dict[str, Any] | None = None,
        prefix: str = "",
        keep_vars: bool = False,
    ) -> dict[str, Any]:
        """{dotted name: ndarray} of every Parameter and persistent buffer. The arrays are
        copies, so a saved state does not change as training goes on. As torch's: ``prefix``
        starts every key, ``destination`` (a dict) is filled and returned, and ``keep_vars``
        puts the Parameters and buffers themselves in place of the copies."""
        state = {} if destination is None else destination
        if not hasattr(state, "__setitem__"):
            raise TypeError(
                f"state_dict: destination must be a dict, got {type(destination).__name__}"
            )
        for name, value in self._named_state():
            state[prefix + name] = value if keep_vars else value.numpy().copy()
        return state

    def _state_aliases(self):
        """{other dotted name: the name ``state_dict()`` uses} for each Parameter or buffer
        reachable under more than one name (weight tying: ``head.weight = wte.weight``). torch's
        state_dict lists every such name, so ``load_state_dict`` accepts them."""
        canonical = {id(value): name for name, value in self._named_state()}
        aliases = {}

        def walk(module, prefix, chain):
            for name, member in module._members():
                full = f"{prefix}.{name}" if prefix else name
                if isinstance(member, Module):
                    if id(member) not in chain:
                        walk(member, full, chain | {id(member)})
                elif canonical.get(id(member), full) != full:
                    aliases[full] = canonical[id(member)]
            for name, persistent in module._buffers.items():
                value = module.__dict__[name]
                full = f"{prefix}.{name}" if prefix else name
                if persistent and value is not None and canonical.get(id(value), full) != full:
                    aliases[full] = canonical[id(value)]

        walk(self, "", {id(self)})
        return aliases

    def _legacy_transposed_keys(self):
        """The state_dict names of parameters that checkpoints of format 1 stored transposed
        (Linear's weight was (in_features, out_features) there), from each module's
        ``_transposed_before_format_2``."""
        canonical = {id(value): name for name, value in self._named_state()}
        keys = set()
        for _, module in self.named_modules():
            for name in getattr(module, "_transposed_before_format_2", ()):
                value = module.__dict__.get(name)
                if id(value) in canonical:
                    keys.add(canonical[id(value)])
        return keys

    def load_state_dict(
        self,
        state_dict: Mapping[str, Any] | str | os.PathLike[str],
        strict: bool = True,
        assign: bool = False,
    ) -> IncompatibleKeys:
        """Copy values from ``state_dict`` into the Parameters and persistent buffers, in place.

        Every value is checked before any is written: a shape or dtype that differs from the
        model's raises an error naming the key. With ``strict`` (the default), missing or
        unexpected keys raise too; otherwise they are returned as
        ``(missing_keys, unexpected_keys)``.
        A tied parameter may appear under each of its names, as torch's state_dict lists it.
        ``state_dict`` may also be the path of a checkpoint (.npz or .safetensors, read by
        ``firefly.load``), for instance a torch model's ``safetensors.torch.save_file`` output.

        A state read by ``firefly.load`` from a checkpoint of format 1 (firefly before torch's
        Linear layout) has its Linear weights transposed to (out_features, in_features) on the
        way in, with one warning.
        ``assign`` is accepted for torch compatibility: values are always copied in place, so an
        optimizer built on the parameters keeps working.
        """
        from firefly import serialization  # serialization imports Tensor, as this module does

        if isinstance(state_dict, (str, os.PathLike)):
            state_dict = cast(Mapping[str, Any], serialization.load(state_dict))  # a dict of arrays
        if not hasattr(state_dict, "keys"):
            raise TypeError(
                f"load_state_dict: expected a dict of arrays, got {type(state_dict).__name__}"
            )
        params = dict(self._named_state())
        aliases = self._state_aliases()
        present = {aliases.get(k, k) for k in state_dict}
        missing = [k for k in params if k not in present]
        unexpected = [k for k in state_dict if aliases.get(k, k) not in params]
        if strict and (missing or unexpected):
            raise ValueError(
                f"load_state_dict: the state does not match {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected} "
                "(pass strict=False to load the keys that match)"
            )
        legacy = serialization.format_version(state_dict) < serialization.TORCH_LINEAR_VERSION
        transposed = self._legacy_transposed_keys()
        values = {}
        for key in state_dict:
            name = aliases.get(key, key)
            if name not in params:
                continue
            param = params[name]
            value = state_dict[key]
            value = value._data if isinstance(value, Tensor) else np.asarray(value)
            if legacy and name in transposed and value.ndim == 2:
                value = np.ascontiguousarray(value.T)  # firefly.load has warned
            if value.shape != param.shape:
                hint = ""
                if name in transposed and value.shape == param.shape[::-1]:
                    hint = (
                        " (the (in_features, out_features) layout of firefly checkpoints before "
                        "format 2: read the file with firefly.load, which converts it, or "
                        "transpose the array)"
                    )
                raise ValueError(
                    f"load_state_dict: '{key}' has shape {value.shape} in the state but "
                    f"{param.shape} in the model{hint}"
                )
            if value.dtype != param.dtype:
                raise TypeError(
                    f"load_state_dict: '{key}' has dtype {value.dtype} in the state but "
                    f"{param.dtype} in the model; convert the state (or the model) first"
                )
            values[name] = value
        for key, value in values.items():
            target = params[key]
            if legacy and key in transposed:
                serialization.mark_converted(target)
            if isinstance(target, Parameter):
                target.update(value)
            else:
                np.copyto(target.numpy(), value)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ repr
    def extra_repr(self) -> str:
        """One line of settings shown inside the parentheses (override in layers)."""
        return ""

    def __repr__(self) -> str:
        """torch's layout: one line when there is only a one-line ``extra_repr``; otherwise the
        ``extra_repr`` lines and then ``(name): child`` lines, indented by two spaces."""
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [
            f"({name}): " + repr(child).replace("\n", "\n  ")
            for name, child in self.named_children()
        ]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{type(self).__name__}({body})"
