"""``firefly.utils.data.dataloader``, as torch.utils.data.dataloader (the objects of
``firefly.data``)."""

from firefly.data import DataLoader, default_collate, default_convert, get_worker_info

__all__ = ["DataLoader", "default_collate", "default_convert", "get_worker_info"]
