"""Module: the base class of layers and models. Attribute assignment registers Parameters,
sub-Modules and lists of them, in the order they are assigned."""
from collections import namedtuple

import numpy as np

from firefly.nn.parameter import Parameter
from firefly.tensor import Tensor

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


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
                "other items would not be saved or trained); keep the other values in a separate attribute"
            )
        return all(members)
    return False


class Module:
    """Base class of every layer and model, as ``torch.nn.Module``.

    Subclasses call ``super().__init__()`` first, assign Parameters, Modules (or lists of
    them) as attributes, and define ``forward``. Calling the module runs ``forward``.
    """

    def __init__(self):
        # Names of registered attributes, in assignment order; the values stay in __dict__,
        # so reading ``self.fc1`` in forward costs a plain attribute lookup.
        object.__setattr__(self, "_registered", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        registered = self.__dict__.get("_registered")
        if registered is None:
            raise AttributeError(
                f"cannot assign '{name}' before Module.__init__() runs; call super().__init__() "
                f"first in {type(self).__name__}.__init__"
            )
        if _registrable(value):
            registered[name] = None
        else:
            registered.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._registered.pop(name, None)
        object.__delattr__(self, name)

    # ------------------------------------------------------------------ forward
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

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

    def named_children(self):
        for name, member in self._members():
            if isinstance(member, Module):
                yield name, member

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix=""):
        """This module and every module under it, each once, with dotted names."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, m) for n, m in module.named_children()]
            stack.extend(reversed(children))

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) in definition order: a sub-Module's parameters come where the
        sub-Module was assigned (PyTorch lists a module's own parameters before its children's).
        A shared Parameter or Module appears once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, member = stack.pop()
            if id(member) in seen:
                continue
            seen.add(id(member))
            if isinstance(member, Parameter):
                yield name, member
            elif isinstance(member, Module):
                inner = [(f"{name}.{n}" if name else n, m) for n, m in member._members()]
                stack.extend(reversed(inner))

    def parameters(self):
        """Every Parameter (trainable or not), in definition order, as PyTorch's ``parameters()``."""
        for _, param in self.named_parameters():
            yield param

    def get_parameters(self, discard_non_trainable=True):
        """A list of the Parameters in definition order; only the trainable ones by default."""
        return [p for p in self.parameters() if p.trainable or not discard_non_trainable]

    # ------------------------------------------------------------------ modes and gradients
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for param in self.parameters():
            param.tensor.zero_grad()

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """{dotted name: ndarray} of every Parameter. The arrays are copies, so a saved state
        does not change as training goes on."""
        return {name: param.data.copy() for name, param in self.named_parameters()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy values from ``state_dict`` into the Parameters, in place.

        Every value is checked before any is written: a shape or dtype that differs from the
        parameter's raises an error naming the key. With ``strict`` (the default), missing or
        unexpected keys raise too; otherwise they are returned as ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"load_state_dict: expected a dict of arrays, got {type(state_dict).__name__}")
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        if strict and (missing or unexpected):
            raise ValueError(
                f"load_state_dict: the state does not match {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected} "
                "(pass strict=False to load the keys that match)"
            )
        values = {}
        for key, param in params.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            value = value.data if isinstance(value, Parameter) else value
            value = value._data if isinstance(value, Tensor) else np.asarray(value)
            if value.shape != param.shape:
                raise ValueError(
                    f"load_state_dict: '{key}' has shape {value.shape} in the state but "
                    f"{param.shape} in the model"
                )
            if value.dtype != param.dtype:
                raise TypeError(
                    f"load_state_dict: '{key}' has dtype {value.dtype} in the state but "
                    f"{param.dtype} in the model; convert the state (or the model) first"
                )
            values[key] = value
        for key, value in values.items():
            params[key].update(value)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ repr
    def extra_repr(self):
        """One line of settings shown inside the parentheses (override in layers)."""
        return ""

    def __repr__(self):
        children = list(self.named_children())
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        lines = [head]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"
