"""Stochastic gradient descent, with PyTorch's momentum, dampening, Nesterov and weight decay."""
from firefly.kernels.optim import sgd_momentum_step, sgd_step
from firefly.nn.optimizers.base import FusedOptimizer, check_flag, check_float


class SGD(FusedOptimizer):
    """``SGD(parameters, lr=0.01, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False)``

    Every argument means what it means in ``torch.optim.SGD``. Per step, with gradient g:
    g += weight_decay * param; with momentum, buf = momentum * buf + (1 - dampening) * g
    (buf = g on the first step) and g = g + momentum * buf (Nesterov) or g = buf;
    then param -= lr * g. ``maximize`` negates the gradient first.

    Unlike ``torch.optim.SGD``, and as in the seed, ``step()`` raises ValueError("Parameter has
    no gradient. ...") naming the parameter when a trainable parameter has no gradient.
    ``step()`` is one fused kernel call per dtype (see ``FusedOptimizer``).
    """

    _state_names = ("momentum_buffer",)
    _skips_missing_gradients = False

    def __init__(self, parameters, lr=0.01, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False):
        super().__init__(parameters, dict(lr=lr, momentum=momentum, dampening=dampening,
                                          weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _check_hyperparameters(self, values):
        owner = type(self).__name__
        checked = dict(
            lr=check_float(owner, "lr", values["lr"], minimum=0.0),
            momentum=check_float(owner, "momentum", values["momentum"], minimum=0.0),
            dampening=check_float(owner, "dampening", values["dampening"]),
            weight_decay=check_float(owner, "weight_decay", values["weight_decay"], minimum=0.0),
            nesterov=check_flag(owner, "nesterov", values["nesterov"]),
            maximize=check_flag(owner, "maximize", values["maximize"]),
        )
        if checked["nesterov"] and (checked["momentum"] <= 0.0 or checked["dampening"] != 0.0):
            raise ValueError(
                f"{owner}: nesterov=True requires momentum > 0 and dampening == 0, got "
                f"momentum={checked['momentum']} and dampening={checked['dampening']}"
            )
        return checked

    def _update(self, group, runs):
        # Coefficients in the group's dtype (see firefly.kernels.optim), 1 - dampening first.
        scalar = group.dtype.type
        lr, weight_decay = scalar(self.lr), scalar(self.weight_decay)
        if self.momentum == 0.0:
            for elements, _ in runs:
                sgd_step(group.grads[elements], lr, weight_decay, self.maximize, group.values[elements])
            return
        momentum, one_minus_dampening = scalar(self.momentum), scalar(1.0 - self.dampening)
        momentum_buffer, fresh = group.buffer("momentum_buffer")
        for elements, step in runs:
            # PyTorch starts the buffer as a copy of the gradient, also when momentum is
            # switched on after some steps without it.
            first_step = fresh or step == 0
            sgd_momentum_step(group.grads[elements], lr, weight_decay, momentum, one_minus_dampening,
                              self.nesterov, self.maximize, first_step, momentum_buffer[elements],
                              group.values[elements])
