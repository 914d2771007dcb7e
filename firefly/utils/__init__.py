"""``firefly.utils``, as ``torch.utils``: ``firefly.utils.data`` holds the data loading API."""

from firefly.utils import data

__all__ = ["data"]
