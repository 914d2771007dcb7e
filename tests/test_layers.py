"""Layer modules: torch-matching outputs and initialization, train()/eval() semantics of
BatchNorm and Dropout, Embedding's padding_idx, shape layers, and state that round-trips
through firefly.save/load."""

import math

import numpy as np
import pytest

import firefly
from firefly import Tensor, nn

torch = pytest.importorskip("torch", reason="needs torch as the oracle: pip install torch==2.13.0")


def copy_into_torch(ours, theirs):
    """Copy our parameters and buffers into the torch twin: same names, same layouts."""
    theirs.load_state_dict({key: torch.tensor(value) for key, value in ours.state_dict().items()})


def build(nn_module):
    return nn_module.Sequential(
        nn_module.Conv2d(2, 4, 3, padding=1),
        nn_module.BatchNorm2d(4),
        nn_module.ReLU(),
        nn_module.MaxPool2d(2),
        nn_module.Conv2d(4, 6, 2, stride=2, groups=2, bias=False),
        nn_module.GroupNorm(3, 6),
        nn_module.AdaptiveAvgPool2d(1),
        nn_module.Flatten(),
        nn_module.LayerNorm(6),
        nn_module.Dropout(0.3),
        nn_module.Linear(6, 3),
        nn_module.LogSoftmax(dim=1),
    )


def test_a_model_of_every_layer_matches_torch_in_train_and_eval():
    firefly.manual_seed(0)
    ours = build(nn).double()
    theirs = build(torch.nn).double()
    copy_into_torch(ours, theirs)
    x = np.random.default_rng(0).normal(size=(5, 2, 8, 8))
    ours.eval(), theirs.eval()  # dropout off: the two must agree exactly
    leaf, t_leaf = Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, t_out = ours(leaf), theirs(t_leaf)
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    out.sum().backward(), t_out.sum().backward()
    np.testing.assert_allclose(leaf.grad.numpy(), t_leaf.grad.numpy(), rtol=1e-9, atol=1e-12)
    ours.train(), theirs.train()
    ours[9].p = theirs[9].p = 0.0  # training-mode batch statistics, without random masks
    out, t_out = ours(Tensor(x)), theirs(torch.tensor(x))
    np.testing.assert_allclose(out.numpy(), t_out.detach().numpy(), rtol=1e-9, atol=1e-12)
    for key, value in theirs.state_dict().items():  # running statistics moved alike
        if "running" in key:
            np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-12)


def test_batch_norm_train_updates_running_stats_and_eval_uses_them():
    bn = nn.BatchNorm1d(3, momentum=None).double()  # cumulative average
    rng = np.random.default_rng(1)
    batches = [rng.normal(loc=2.0, size=(16, 3)) for _ in range(3)]
    for b in batches:
        bn(Tensor(b))
    assert int(bn.num_batches_tracked.item()) == 3
    np.testing.assert_allclose(
        bn.running_mean.numpy(), np.mean([b.mean(axis=0) for b in batches], axis=0)
    )
    np.testing.assert_allclose(
        bn.running_var.numpy(), np.mean([b.var(axis=0, ddof=1) for b in batches], axis=0)
    )
    bn.eval()
    x = rng.normal(size=(4, 3))
    expected = (x - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + 1e-5)
    np.testing.assert_allclose(bn(Tensor(x)).numpy(), expected, rtol=1e-12)
    before = bn.running_mean.numpy().copy()
    bn(Tensor(x))
    assert (
        np.array_equal(bn.running_mean.numpy(), before) and int(bn.num_batches_tracked.item()) == 3
    )


def test_batch_norm_without_tracking_uses_batch_statistics_in_eval():
    bn = nn.BatchNorm2d(2, track_running_stats=False, affine=False).eval()
    assert bn.running_mean is None and bn.state_dict() == {}
    x = np.random.default_rng(2).normal(size=(3, 2, 4, 4)).astype(np.float32)
    out = bn(Tensor(x)).numpy()
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)


def test_batch_norm_rejects_the_wrong_rank():
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected 4-D input, got shape \(2, 3\)"):
        nn.BatchNorm2d(3)(Tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected 2-D or 3-D input"):
        nn.BatchNorm1d(3)(Tensor(np.zeros((2, 3, 4, 5))))


def test_dropout_scales_in_train_and_is_the_identity_in_eval():
    drop = nn.Dropout(0.25)
    x = Tensor(np.ones((200, 100), dtype=np.float32), requires_grad=True)
    out = drop(x)
    kept = out.numpy() != 0
    assert 0.72 < kept.mean() < 0.78
    np.testing.assert_allclose(out.numpy()[kept], 1 / 0.75)
    out.backward(np.ones(out.shape, dtype=np.float32))
    np.testing.assert_allclose(x.grad.numpy(), np.where(kept, 1 / 0.75, 0.0))
    drop.eval()
    assert drop(x) is x
    assert nn.Dropout(1.0)(x).numpy().max() == 0.0


def test_dropout_masks_follow_manual_seed():
    firefly.manual_seed(7)
    first = nn.Dropout()(Tensor(np.ones(50))).numpy()
    firefly.manual_seed(7)
    assert np.array_equal(first, nn.Dropout()(Tensor(np.ones(50))).numpy())
    assert not np.array_equal(first, nn.Dropout()(Tensor(np.ones(50))).numpy())


def test_embedding_gathers_scatter_adds_and_skips_padding():
    firefly.manual_seed(0)
    emb = nn.Embedding(5, 3, padding_idx=1).double()
    assert np.array_equal(emb.weight.numpy()[1], np.zeros(3))
    indices = np.array([[0, 1, 3], [3, 3, 1]])
    out = emb(indices)
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out.numpy(), emb.weight.numpy()[indices])
    out.backward(np.ones(out.shape))
    np.testing.assert_array_equal(emb.weight.grad.numpy()[:, 0], [1, 0, 0, 3, 0])
    ref = torch.nn.Embedding(5, 3, padding_idx=1).double()
    ref.weight.data = torch.tensor(emb.weight.numpy())
    t_out = ref(torch.tensor(indices))
    t_out.backward(torch.ones_like(t_out))
    np.testing.assert_array_equal(emb.weight.grad.numpy(), ref.weight.grad.numpy())
    with pytest.raises(IndexError, match=r"embedding: index 5 is out of range for 5 embeddings"):
        emb(np.array([5]))
    with pytest.raises(TypeError, match=r"indices must be integers"):
        emb(np.array([0.5]))


def test_initialization_matches_torch_defaults():
    firefly.manual_seed(0)
    conv = nn.Conv2d(4, 8, (3, 2), groups=2)
    bound = 1 / math.sqrt(2 * 3 * 2)
    for p in (conv.weight.numpy(), conv.bias.numpy()):
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.8 * bound
    assert conv.weight.shape == (8, 2, 3, 2)
    for layer in (nn.BatchNorm2d(3), nn.LayerNorm((2, 3)), nn.GroupNorm(1, 3)):
        assert np.all(layer.weight.numpy() == 1) and np.all(layer.bias.numpy() == 0)
    emb = nn.Embedding(1000, 20)
    assert abs(emb.weight.numpy().std() - 1) < 0.05


def test_shape_layers():
    x = Tensor(np.arange(24.0).reshape(2, 3, 4))
    assert nn.Flatten()(x).shape == (2, 12)
    assert nn.Flatten(0, 1)(x).shape == (6, 4)
    assert nn.Unflatten(2, (2, 2))(x).shape == (2, 3, 2, 2)
    assert nn.Unflatten(-1, (-1, 2))(x).shape == (2, 3, 2, 2)
    assert nn.Identity(54, unused=True)(x) is x
    with pytest.raises(ValueError, match="Unflatten: sizes"):
        nn.Unflatten(1, (2, 2))(x)
    np.testing.assert_allclose(nn.Softmax(dim=1)(x).numpy().sum(axis=1), 1.0)


def test_layer_constructors_reject_bad_arguments():
    with pytest.raises(
        ValueError, match=r"Conv2d: in_channels \(3\) and out_channels \(4\) must both be divisible"
    ):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match=r"Conv2d: kernel_size must be positive"):
        nn.Conv2d(3, 4, 0)
    with pytest.raises(ValueError, match=r"Dropout: p must be a probability"):
        nn.Dropout(1.5)
    with pytest.raises(
        ValueError, match=r"GroupNorm: num_channels \(5\) must be divisible by num_groups \(2\)"
    ):
        nn.GroupNorm(2, 5)
    with pytest.raises(ValueError, match=r"Embedding: padding_idx must be below"):
        nn.Embedding(3, 2, padding_idx=3)


def test_state_dict_with_buffers_round_trips_through_save_and_load(tmp_path):
    firefly.manual_seed(0)
    model = build(nn)
    x = Tensor(np.random.default_rng(3).normal(size=(4, 2, 8, 8)).astype(np.float32))
    for _ in range(3):
        model(x)  # moves the running statistics away from their initial values
    model.eval()
    expected = model(x).numpy()
    firefly.save(model.state_dict(), tmp_path / "model.npz")
    firefly.manual_seed(1)
    fresh = build(nn)
    fresh.load_state_dict(firefly.load(tmp_path / "model.npz"))
    fresh.eval()
    np.testing.assert_array_equal(fresh(x).numpy(), expected)
    assert int(fresh[1].num_batches_tracked.item()) == 3
