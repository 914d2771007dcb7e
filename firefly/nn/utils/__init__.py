"""``firefly.nn.utils``: gradient clipping, and ``rnn`` (padding and packing sequences), as
``torch.nn.utils``."""

from firefly.nn.utils import rnn
from firefly.nn.utils.clip_grad import clip_grad_norm_, clip_grad_value_

__all__ = ["clip_grad_norm_", "clip_grad_value_", "rnn"]
