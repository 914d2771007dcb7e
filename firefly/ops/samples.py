"""Random test inputs for ``Op.sample_inputs``, shared by op modules (and plugin ops).

``firefly.testing.check_op`` runs each op on what its ``sample_inputs`` returns; these helpers
make the shapes and attributes that exercise broadcasting and axis handling.
"""


def uniform(rng, shape, dtype, low=-2.0, high=2.0):
    """An array of ``shape`` drawn from U(low, high), in ``dtype``."""
    return rng.uniform(low, high, size=shape).astype(dtype)


def broadcast_partner(rng, shape):
    """A random shape that broadcasts against ``shape``: leading dims dropped, some set to 1.

    From four dimensions on, every other dimension is 1, so that the pair alternates in more
    runs than the binary kernels' 3-D form holds and the operands take the strided path.
    """
    if len(shape) >= 4:
        return tuple(1 if i % 2 else d for i, d in enumerate(shape))
    keep = int(rng.integers(0, len(shape) + 1))
    partner = list(shape[len(shape) - keep :])
    for i in range(len(partner)):
        if rng.random() < 0.4:
            partner[i] = 1
    return tuple(partner)


def random_axes(rng, shape):
    """A reduction's ``axis`` attribute for ``shape``: None, an int or a tuple, some negative.

    From four dimensions on, it is two axes that are not adjacent.
    """
    if len(shape) >= 4:
        return (0, -2)
    axis = None
    if shape and rng.random() < 0.7:
        k = int(rng.integers(1, len(shape) + 1))
        picked = sorted(rng.choice(len(shape), size=k, replace=False).tolist())
        axis = tuple(a - len(shape) if rng.random() < 0.3 else a for a in picked)
        axis = axis[0] if len(axis) == 1 and rng.random() < 0.5 else axis
    return axis
