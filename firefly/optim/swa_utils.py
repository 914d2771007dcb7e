"""Stochastic weight averaging, torch's ``torch.optim.swa_utils``: ``AveragedModel`` (a running
average, or any average given as ``avg_fn``/``multi_avg_fn``, of a model's parameters),
``SWALR`` (anneal each group's lr to ``swa_lr``) and ``update_bn`` (recompute the batch-norm
statistics for the averaged weights). Not imported by ``firefly.optim`` itself (that would make
an import cycle through ``firefly.nn``): ``import firefly`` loads it, or import it by name."""

import copy
import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from firefly.autograd import no_grad
from firefly.devices import device as Device
from firefly.nn.layers.norm import _BatchNorm
from firefly.nn.module import Module
from firefly.optim.lr_scheduler import LRScheduler
from firefly.optim.optimizer import Optimizer
from firefly.tensor import Tensor
from firefly.validation import check_number

__all__ = [
    "AveragedModel",
    "SWALR",
    "update_bn",
    "get_ema_avg_fn",
    "get_ema_multi_avg_fn",
    "get_swa_avg_fn",
    "get_swa_multi_avg_fn",
]


def _check_decay(decay: float) -> float:
    return float(check_number("get_ema_avg_fn", "decay", decay, minimum=0.0, maximum=1.0))


def _lerp_(start: Tensor, end: Tensor, weight: float) -> None:
    """start <- start + weight * (end - start) in place, torch's two-sided formula (the end
    less the remaining fraction once weight reaches 1/2, which keeps weight 1 exact)."""
    a, b = start._data, end._data
    if weight < 0.5:
        a += weight * (b - a)
    else:
        a[...] = b - (b - a) * (1 - weight)


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable[[list, list, Any], None]:
    """An exponential moving average over lists of parameters, updated in place:
    ema = decay * ema + (1 - decay) * current."""
    decay = _check_decay(decay)

    def ema_update(ema_params: list, current_params: list, _: Any) -> None:
        for ema, current in zip(ema_params, current_params):
            _lerp_(ema, current, 1 - decay)

    return ema_update


def get_swa_multi_avg_fn() -> Callable[[list, list, Any], None]:
    """The running mean over lists of parameters, updated in place."""

    def swa_update(averaged_params: list, current_params: list, num_averaged: Any) -> None:
        weight = 1 / (int(np.asarray(getattr(num_averaged, "_data", num_averaged))) + 1)
        for averaged, current in zip(averaged_params, current_params):
            _lerp_(averaged, current, weight)

    return swa_update


def get_ema_avg_fn(decay: float = 0.999) -> Callable[[Tensor, Tensor, Any], Tensor]:
    """ema, current, n -> decay * ema + (1 - decay) * current."""
    decay = _check_decay(decay)

    def ema_update(ema_param: Tensor, current_param: Tensor, num_averaged: Any) -> Tensor:
        return decay * ema_param + (1 - decay) * current_param

    return ema_update


def get_swa_avg_fn() -> Callable[[Tensor, Tensor, Any], Tensor]:
    """averaged, current, n -> averaged + (current - averaged) / (n + 1), the running mean."""

    def swa_update(averaged_param: Tensor, current_param: Tensor, num_averaged: Any) -> Tensor:
        return averaged_param + (current_param - averaged_param) / (num_averaged + 1)

    return swa_update


class AveragedModel(Module):
    """``AveragedModel(model, device=None, avg_fn=None, multi_avg_fn=None,
    use_buffers=False)``: a deep copy of ``model`` (``.module``) whose parameters
    ``update_parameters(model)`` averages with the model's: the running mean by default, or
    ``avg_fn(averaged, current, n_averaged)`` per parameter, or ``multi_avg_fn`` over the
    lists in place (``get_ema_multi_avg_fn(decay)`` for an EMA). The first update copies.
    With ``use_buffers`` the float buffers are averaged too; otherwise, and for integer buffers
    (a batch norm's ``num_batches_tracked``, which torch averages and truncates), they are
    copied from the model. ``n_averaged`` is an int64 buffer, so the state_dict is torch's."""

    n_averaged: Tensor  # a registered buffer

    def __init__(
        self,
        model: Module,
        device: str | Device | None = None,
        avg_fn: Callable[[Tensor, Tensor, Any], Tensor] | None = None,
        multi_avg_fn: Callable[[list, list, Any], None] | None = None,
        use_buffers: bool = False,
    ) -> None:
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise ValueError("AveragedModel: give avg_fn or multi_avg_fn, not both")
        if not isinstance(model, Module):
            raise TypeError(f"AveragedModel: model must be a Module, got {type(model).__name__}")
        self.module = copy.deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        self.register_buffer("n_averaged", Tensor(np.array(0, dtype=np.int64), dtype=np.int64))
        self.avg_fn, self.multi_avg_fn = avg_fn, multi_avg_fn
        self.use_buffers = bool(use_buffers)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def _tensors(self, model: Module) -> list[Tensor]:
        if self.use_buffers:
            return [
                t for t in itertools.chain(model.parameters(), model.buffers()) if t is not None
            ]
        return list(model.parameters())

    def update_parameters(self, model: Module) -> None:
        """Fold ``model``'s current parameters into the average."""
        averaged, current = self._tensors(self.module), self._tensors(model)
        if len(averaged) != len(current):
            raise ValueError(
                f"AveragedModel.update_parameters: the model has {len(current)} tensors to "
                f"average, the averaged copy {len(averaged)}; pass the model it was made from"
            )
        count = int(self.n_averaged.numpy())
        with no_grad():
            if count == 0:
                for a, c in zip(averaged, current):
                    a._data[...] = c._data
            elif self.multi_avg_fn is not None:
                floats = [(a, c) for a, c in zip(averaged, current) if a._data.dtype.kind == "f"]
                self.multi_avg_fn(
                    [a for a, _ in floats], [c.detach() for _, c in floats], self.n_averaged
                )
            else:
                average = self.avg_fn or get_swa_avg_fn()
                for a, c in zip(averaged, current):
                    if a._data.dtype.kind == "f":
                        a._data[...] = average(a.detach(), c.detach(), count)._data
            for a, c in zip(self.module.buffers(), model.buffers()):
                if a is not None and c is not None:
                    if not self.use_buffers or a._data.dtype.kind != "f":
                        a._data[...] = c._data
        self.n_averaged.numpy()[...] = count + 1


def _cosine_anneal(t: float) -> float:
    return (1 - math.cos(math.pi * t)) / 2


def _linear_anneal(t: float) -> float:
    return t


class SWALR(LRScheduler):
    """``SWALR(optimizer, swa_lr, anneal_epochs=10, anneal_strategy="cos", last_epoch=-1)``:
    moves each group's lr from its value to ``swa_lr`` (one number, or one per group, kept as
    the group's ``swa_lr``) over ``anneal_epochs`` steps, by a cosine or linear ramp, then holds
    it, as torch's."""

    def __init__(
        self,
        optimizer: Optimizer,
        swa_lr: float | list[float],
        anneal_epochs: int = 10,
        anneal_strategy: str = "cos",
        last_epoch: int = -1,
    ) -> None:
        groups = getattr(optimizer, "param_groups", [])
        swa_lrs = list(swa_lr) if isinstance(swa_lr, (list, tuple)) else [swa_lr] * len(groups)
        if len(swa_lrs) != len(groups):
            raise ValueError(
                f"SWALR: swa_lr has {len(swa_lrs)} values for {len(groups)} param groups"
            )
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"SWALR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}"
            )
        if (
            isinstance(anneal_epochs, bool)
            or not isinstance(anneal_epochs, int)
            or anneal_epochs < 0
        ):
            raise ValueError(f"SWALR: anneal_epochs must be an int >= 0, got {anneal_epochs!r}")
        for value, group in zip(swa_lrs, groups):
            group["swa_lr"] = float(check_number("SWALR", "swa_lr", value, minimum=0.0))
        self.anneal_strategy, self.anneal_epochs = anneal_strategy, anneal_epochs
        super().__init__(optimizer, last_epoch)

    def _anneal(self, t: float) -> float:
        return _cosine_anneal(t) if self.anneal_strategy == "cos" else _linear_anneal(t)

    @staticmethod
    def _get_initial_lr(lr: float, swa_lr: float, alpha: float) -> float:
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self) -> list[float]:
        # The lr before annealing is recovered from the current one (another scheduler may have
        # moved it), then moved one step further.
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        prev_t = max(0, min(1, (step - 1) / max(1, self.anneal_epochs)))
        prev_alpha = self._anneal(prev_t)
        groups = self.optimizer.param_groups
        prev_lrs = [self._get_initial_lr(g["lr"], g["swa_lr"], prev_alpha) for g in groups]
        t = max(0, min(1, step / max(1, self.anneal_epochs)))
        alpha = self._anneal(t)
        return [g["swa_lr"] * alpha + lr * (1 - alpha) for g, lr in zip(groups, prev_lrs)]


def update_bn(loader: Iterable[Any], model: Module, device: str | Device | None = None) -> None:
    """Recompute every batch-norm layer's running statistics as the plain average over one
    pass of ``loader`` (its batches, or their first elements) through ``model`` in train mode,
    as torch's; the layers' momenta and the model's mode are restored."""
    momenta: dict[_BatchNorm, float | None] = {}
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            module.reset_running_stats()
            momenta[module] = module.momentum
    if not momenta:
        return
    was_training = model.training
    model.train()
    for module in momenta:
        module.momentum = None
    with no_grad():
        for batch in loader:
            if isinstance(batch, (list, tuple)):
                batch = batch[0]
            if device is not None:
                batch = batch.to(device)
            model(batch)
    for module, momentum in momenta.items():
        module.momentum = momentum
    model.train(was_training)
