"""Adagrad, with PyTorch's learning-rate decay, initial accumulator and weight decay."""

from firefly.kernels.optim import adagrad_step
from firefly.optim.optimizer import FusedOptimizer, check_flag, check_float


class Adagrad(FusedOptimizer):
    """``Adagrad(params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10, *, maximize=False)``

    Every argument means what it means in ``torch.optim.Adagrad``, and each may differ per
    param group. Per step t, with gradient g (negated when ``maximize``, plus
    weight_decay * param): sum += g^2, param -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps).
    As in PyTorch, each parameter's ``sum`` exists from construction, filled with its group's
    ``initial_accumulator_value``, and a parameter without a gradient is skipped.
    """

    _state_names = ("sum",)
    _min_saved_step = 0

    def __init__(
        self,
        params,
        lr=1e-2,
        lr_decay=0.0,
        weight_decay=0.0,
        initial_accumulator_value=0.0,
        eps=1e-10,
        *,
        maximize=False,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                lr_decay=lr_decay,
                weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value,
                eps=eps,
                maximize=maximize,
            ),
        )

    def _check_group(self, group):
        owner = self._owner
        return dict(
            lr=check_float(owner, "lr", group["lr"], minimum=0.0),
            lr_decay=check_float(owner, "lr_decay", group["lr_decay"], minimum=0.0),
            weight_decay=check_float(owner, "weight_decay", group["weight_decay"], minimum=0.0),
            initial_accumulator_value=check_float(
                owner, "initial_accumulator_value", group["initial_accumulator_value"], minimum=0.0
            ),
            eps=check_float(owner, "eps", group["eps"], minimum=0.0),
            maximize=check_flag(owner, "maximize", group["maximize"]),
        )

    def _init_state(self):
        for buf in self._buffers:
            state_sum = buf.buffer("sum")
            for group_index, first, end in buf.segments:
                state_sum[buf.elements(first, end)] = self.param_groups[group_index][
                    "initial_accumulator_value"
                ]
            buf.live["sum"][:] = True

    def _update(self, buf, runs):
        coefficients = [
            (g["lr"] / (1.0 + step * g["lr_decay"]), g["weight_decay"], g["eps"])
            for _, _, step, _, g in runs
        ]
        flags = [(g["maximize"],) for *_, g in runs]
        adagrad_step(
            buf.grads,
            *self._run_arrays(buf, runs, coefficients, flags),
            buf.buffer("sum"),
            buf.values,
        )
