"""firefly.nn.init: torch's initializers, drawing from firefly's generator, in place."""

import math

import numpy as np
import pytest

import firefly
from firefly import Tensor, nn
from firefly.nn import init


def test_initializers_fill_in_place_with_the_right_statistics():
    firefly.manual_seed(0)
    p = nn.Parameter(shape=(200, 300))
    storage = p.numpy()
    assert init.uniform_(p, -2.0, 3.0) is p and p.numpy() is storage
    assert -2.0 <= storage.min() and storage.max() <= 3.0 and abs(storage.mean() - 0.5) < 0.05
    init.normal_(p, 1.0, 2.0)
    assert abs(storage.mean() - 1.0) < 0.05 and abs(storage.std() - 2.0) < 0.05
    init.constant_(p, 0.5)
    assert np.all(storage == 0.5)
    init.zeros_(p), init.ones_(p.tensor)
    assert np.all(storage == 1.0)
    fan_in, fan_out = 300, 200
    init.xavier_uniform_(p)
    assert abs(storage.std() - math.sqrt(2 / (fan_in + fan_out))) < 0.002
    init.xavier_normal_(p, gain=2.0)
    assert abs(storage.std() - 2 * math.sqrt(2 / (fan_in + fan_out))) < 0.003
    init.kaiming_uniform_(p, nonlinearity="relu")
    assert abs(storage.std() - math.sqrt(2 / fan_in)) < 0.002
    init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu")
    assert abs(storage.std() - math.sqrt(2 / fan_out)) < 0.002
    init.trunc_normal_(p, std=1.0, a=-1.0, b=0.5)
    assert storage.min() >= -1.0 and storage.max() <= 0.5 and storage.min() < -0.99


def test_conv_fans_include_the_receptive_field():
    w = Tensor(np.zeros((8, 4, 3, 3)))
    init.kaiming_uniform_(
        w, a=math.sqrt(5)
    )  # torch's Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    bound = 1 / math.sqrt(4 * 9)
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.9 * bound


def test_initializers_follow_manual_seed():
    a, b = Tensor(np.zeros((3, 4))), Tensor(np.zeros((3, 4)))
    firefly.manual_seed(5)
    init.normal_(a)
    firefly.manual_seed(5)
    init.normal_(b)
    assert np.array_equal(a.numpy(), b.numpy())


def test_gain_and_errors():
    assert init.calculate_gain("relu") == math.sqrt(2.0)
    assert init.calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    assert init.calculate_gain("tanh") == 5 / 3
    with pytest.raises(ValueError, match="unsupported nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(Tensor(np.zeros(3)))
    with pytest.raises(ValueError, match="mode must be"):
        init.kaiming_normal_(Tensor(np.zeros((2, 2))), mode="fan")
    with pytest.raises(TypeError, match="Parameter or a Tensor"):
        init.zeros_(np.zeros(3))
