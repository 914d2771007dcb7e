"""``RemovableHandle``: what every ``register_*hook`` in firefly returns, as
``torch.utils.hooks.RemovableHandle``. Tensor hooks, Module hooks and optimizer step hooks each
keep their own tables; the handle only knows how to take its hook out of one."""

from collections.abc import Callable


class RemovableHandle:
    """``remove()`` unregisters the hook; so does leaving a ``with`` block. Removing twice is
    harmless, as in torch."""

    def __init__(self, remove: Callable[[], None]) -> None:
        self._remove: Callable[[], None] | None = remove

    def remove(self) -> None:
        if self._remove is not None:
            remove, self._remove = self._remove, None
            remove()

    def __enter__(self) -> "RemovableHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
