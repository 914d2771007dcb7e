"""Containers, as torch's: Sequential (runs its modules in order), ModuleList and ModuleDict
(hold modules), ParameterList and ParameterDict (hold parameters)."""

from __future__ import annotations

import collections.abc
import operator
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NoReturn

from firefly.nn.module import Module
from firefly.nn.parameter import Parameter
from firefly.tensor import Tensor


def _check_module(owner: str, item: object) -> Module:
    if not isinstance(item, Module):
        raise TypeError(f"{owner}: expected a Module, got {type(item).__name__} {item!r}")
    return item


def _as_parameter(owner: str, value: object) -> Parameter:
    """A Parameter for ``value``: Parameters as they are, other Tensors wrapped (as torch)."""
    if isinstance(value, Parameter):
        return value
    if isinstance(value, Tensor):
        return Parameter(value, requires_grad=value.requires_grad or value.is_floating_point())
    raise TypeError(
        f"{owner}: expected a Parameter or a Tensor, got {type(value).__name__} {value!r}"
    )


class _Indexed(Module):
    """Members registered in order (under "0", "1", ... unless named): positional access."""

    def _names(self) -> list[str]:
        return list(self._registered)

    def _name_at(self, index: Any) -> str:
        try:
            index = operator.index(index)
        except TypeError:
            raise TypeError(
                f"{type(self).__name__} indices must be ints or slices, got {type(index).__name__}"
            ) from None
        names = self._names()
        if not -len(names) <= index < len(names):
            raise IndexError(
                f"{type(self).__name__}: index {index} is out of range for {len(names)} members"
            )
        return names[index % len(names)]

    def _renumber(self, members: Iterable[Any]) -> None:
        """Re-register ``members`` under "0", "1", ... (after a deletion or insertion, as torch)."""
        for name in self._names():
            delattr(self, name)
        for i, member in enumerate(members):
            setattr(self, str(i), member)

    def __len__(self) -> int:
        return len(self._registered)

    def __iter__(self) -> Iterator[Any]:
        return iter([self.__dict__[name] for name in self._registered])

    def __delitem__(self, index: int | slice) -> None:
        members = list(self)
        if not isinstance(index, slice):
            self._name_at(index)  # the TypeError or IndexError that names the container
            index = operator.index(index)
        del members[index]
        self._renumber(members)


class Sequential(_Indexed):
    """``Sequential(*modules)`` or ``Sequential(OrderedDict([(name, module), ...]))``: calling it
    feeds the input through each module in turn. Members are named "0", "1", ... or by the
    dict's keys."""

    def __init__(self, *args: Any) -> None:  # Modules, or one OrderedDict of them
        super().__init__()
        if len(args) == 1 and isinstance(args[0], collections.OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, _check_module("Sequential", module))
        else:
            for module in args:
                self.append(module)

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), _check_module("Sequential.append", module))
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        _check_module("Sequential.insert", module)
        members = list(self)
        members.insert(operator.index(index), module)
        self._renumber(members)
        return self

    def pop(self, index: int) -> Any:
        module = self[index]
        del self[index]
        return module

    def __getitem__(self, index: int | slice) -> Any:  # a Module, or a Sequential of a slice
        if isinstance(index, slice):
            part = Sequential()
            for name in self._names()[index]:
                part.add_module(name, self.__dict__[name])
            return part
        return self.__dict__[self._name_at(index)]

    def __setitem__(self, index: int, module: Module) -> None:
        setattr(self, self._name_at(index), _check_module("Sequential", module))

    def __add__(self, other: Sequential) -> Sequential:
        if not isinstance(other, Sequential):
            raise TypeError(
                f"Sequential: add operator supports only Sequential, got {type(other).__name__}"
            )
        return Sequential(*self, *other)

    def forward(self, input: Any) -> Any:
        for name in self._registered:
            input = self.__dict__[name](input)
        return input


class ModuleList(_Indexed):
    """``ModuleList(modules=None)``: a list of Modules whose Parameters belong to the owner."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), _check_module("ModuleList.append", module))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        if not isinstance(modules, collections.abc.Iterable):
            raise TypeError(
                "ModuleList.extend: should be called with an iterable, got "
                f"{type(modules).__name__}"
            )
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        _check_module("ModuleList.insert", module)
        members = list(self)
        members.insert(operator.index(index), module)
        self._renumber(members)

    def pop(self, index: int) -> Any:
        module = self[index]
        del self[index]
        return module

    def __getitem__(self, index: int | slice) -> Any:  # a Module, or a ModuleList of a slice
        if isinstance(index, slice):
            return ModuleList(list(self)[index])
        return self.__dict__[self._name_at(index)]

    def __setitem__(self, index: int, module: Module) -> None:
        setattr(self, self._name_at(index), _check_module("ModuleList", module))

    def __iadd__(self, modules: Iterable[Module]) -> ModuleList:
        return self.extend(modules)

    def __add__(self, other: Iterable[Module]) -> ModuleList:
        return ModuleList([*self, *other])

    def forward(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(
            "ModuleList has no forward(): iterate over it and call its modules"
        )


class _Keyed(Module):
    """Members registered by string key, in insertion order: dict access."""

    _kind = "module"

    def _store(self, key: str, value: Any) -> None:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        if key not in self._registered:
            raise KeyError(f"{type(self).__name__}: no key {key!r}; keys are {list(self)}")
        return self.__dict__[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._store(key, value)

    def __delitem__(self, key: str) -> None:
        self[key]  # noqa: B018  (the KeyError naming the keys)
        delattr(self, key)

    def __len__(self) -> int:
        return len(self._registered)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._registered))

    def __contains__(self, key: object) -> bool:
        return key in self._registered

    def keys(self) -> list[str]:
        return list(self._registered)

    def items(self) -> list[tuple[str, Any]]:
        return [(key, self.__dict__[key]) for key in self._registered]

    def values(self) -> list[Any]:
        return [self.__dict__[key] for key in self._registered]

    def pop(self, key: str) -> Any:
        value = self[key]
        del self[key]
        return value

    def clear(self) -> None:
        for key in list(self._registered):
            delattr(self, key)

    def update(self, members: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Add or replace members from a mapping or an iterable of (key, value) pairs."""
        owner = f"{type(self).__name__}.update"
        pairs: Iterable[Any]  # (key, value) pairs
        if isinstance(members, (collections.abc.Mapping, _Keyed)):
            pairs = members.items()
        elif isinstance(members, collections.abc.Iterable):
            pairs = listed = []
            for i, pair in enumerate(members):
                if not isinstance(pair, collections.abc.Iterable) or isinstance(pair, str):
                    raise TypeError(
                        f"{owner}: element #{i} should be a (key, {self._kind}) pair, got "
                        f"{type(pair).__name__}"
                    )
                pair = tuple(pair)
                if len(pair) != 2:
                    raise ValueError(f"{owner}: element #{i} has length {len(pair)}; 2 is required")
                listed.append(pair)
        else:
            raise TypeError(
                f"{owner}: expected a mapping or an iterable of (key, {self._kind}) pairs, "
                f"got {type(members).__name__}"
            )
        for key, value in pairs:
            self[key] = value


class ModuleDict(_Keyed):
    """``ModuleDict(modules=None)``: Modules by string key, in insertion order; their
    Parameters belong to the owner, named ``<attribute>.<key>.<name>``."""

    def __init__(
        self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None
    ) -> None:
        super().__init__()
        if modules is not None:
            self.update(modules)

    def _store(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(
                f"ModuleDict: module name should be a string, got {type(key).__name__} {key!r}"
            )
        self._check_name("ModuleDict", "module", key)
        self.add_module(key, _check_module(f"ModuleDict[{key!r}]", value))

    def forward(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("ModuleDict has no forward(): call its modules by key")


class ParameterList(_Indexed):
    """``ParameterList(values=None)``: a list of Parameters (Tensors are wrapped) that belong
    to the owner."""

    def __init__(self, values: Iterable[Tensor] | None = None) -> None:
        super().__init__()
        if values is not None:
            self.extend(values)

    def append(self, value: Tensor) -> ParameterList:
        self.register_parameter(str(len(self)), _as_parameter("ParameterList.append", value))
        return self

    def extend(self, values: Iterable[Tensor]) -> ParameterList:
        if not isinstance(values, collections.abc.Iterable) or isinstance(values, Tensor):
            raise TypeError(
                "ParameterList.extend: should be called with an iterable of Parameters, got "
                f"{type(values).__name__}"
            )
        for value in values:
            self.append(value)
        return self

    def __getitem__(self, index: int | slice) -> Any:  # a Parameter, or a ParameterList
        if isinstance(index, slice):
            return ParameterList(list(self)[index])
        return self.__dict__[self._name_at(index)]

    def __setitem__(self, index: int, value: Tensor) -> None:
        setattr(self, self._name_at(index), _as_parameter("ParameterList", value))

    def __iadd__(self, values: Iterable[Tensor]) -> ParameterList:
        return self.extend(values)

    def extra_repr(self) -> str:
        return "\n".join(
            f"({i}): Parameter containing: [{p.dtype} of size {tuple(p.shape)}]"
            for i, p in enumerate(self)
        )

    def forward(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("ParameterList has no forward(): use its parameters")


class ParameterDict(_Keyed):
    """``ParameterDict(parameters=None)``: Parameters (Tensors are wrapped) by string key, in
    insertion order; they belong to the owner."""

    _kind = "parameter"

    def __init__(
        self, parameters: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | None = None
    ) -> None:
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def _store(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(
                f"ParameterDict: parameter name should be a string, got {type(key).__name__} "
                f"{key!r}"
            )
        self._check_name("ParameterDict", "parameter", key)
        self.register_parameter(key, _as_parameter(f"ParameterDict[{key!r}]", value))

    def extra_repr(self) -> str:
        return "\n".join(
            f"({k}): Parameter containing: [{p.dtype} of size {tuple(p.shape)}]"
            for k, p in self.items()
        )

    def forward(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError("ParameterDict has no forward(): use its parameters")
