"""Containers: Sequential (runs its modules in order) and ModuleList (holds them)."""

import operator

from firefly.nn.module import Module


def _check_module(owner, item):
    if not isinstance(item, Module):
        raise TypeError(f"{owner}: expected a Module, got {type(item).__name__}")
    return item


class _IndexedModules(Module):
    """Modules registered under the names "0", "1", ... in order."""

    def __init__(self, modules):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module):
        setattr(self, str(len(self)), _check_module(type(self).__name__, module))
        return self

    def _index(self, index):
        try:
            index = operator.index(index)
        except TypeError:
            raise TypeError(
                f"{type(self).__name__} indices must be ints or slices, got {type(index).__name__}"
            ) from None
        if not -len(self) <= index < len(self):
            raise IndexError(
                f"{type(self).__name__} index {index} is out of range for {len(self)} modules"
            )
        return str(index % len(self))

    def __getitem__(self, index):
        if isinstance(index, slice):
            # Bypass the subclass constructor: Sequential takes *modules, ModuleList a list.
            part = type(self).__new__(type(self))
            _IndexedModules.__init__(part, list(self)[index])
            return part
        return getattr(self, self._index(index))

    def __setitem__(self, index, module):
        setattr(self, self._index(index), _check_module(type(self).__name__, module))

    def __len__(self):
        return len(self._registered)

    def __iter__(self):
        return iter([self.__dict__[name] for name in self._registered])


class Sequential(_IndexedModules):
    """``Sequential(*modules)``: calling it feeds the input through each module in turn."""

    def __init__(self, *modules):
        super().__init__(modules)

    def forward(self, x):
        for name in self._registered:
            x = self.__dict__[name](x)
        return x


class ModuleList(_IndexedModules):
    """``ModuleList(modules=())``: a list of Modules whose Parameters belong to the owner."""

    def __init__(self, modules=()):
        super().__init__(modules)

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self
