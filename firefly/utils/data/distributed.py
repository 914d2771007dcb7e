"""``firefly.utils.data.distributed``, as torch.utils.data.distributed."""

from firefly.data import DistributedSampler

__all__ = ["DistributedSampler"]
