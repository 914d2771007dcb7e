"""``firefly.nn.optimizers.adam``: ``firefly.optim.Adam`` and ``AdamW``."""

from firefly.optim.adam import Adam, AdamW

__all__ = ["Adam", "AdamW"]
