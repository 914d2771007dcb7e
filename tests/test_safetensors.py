"""firefly.save/load of .safetensors files through the safetensors package's NumPy API: model
states keep their keys, nested states round-trip through the documented "/" key scheme, and a
torch model saved with safetensors.torch.save_file loads into the same firefly model."""

import numpy as np
import pytest

import firefly
from firefly import nn
from firefly.digits import build_model
from firefly.tensor import Tensor

safetensors_numpy = pytest.importorskip(
    "safetensors.numpy", reason='pip install "firefly-dl[safetensors]" (or pip install safetensors)'
)


def mlp(module=nn):
    return module.Sequential(module.Linear(6, 5), module.ReLU(), module.Linear(5, 3))


def test_a_state_dict_keeps_its_keys_and_values(tmp_path):
    model = mlp()
    path = tmp_path / "m.safetensors"
    firefly.save(model.state_dict(), path)
    raw = safetensors_numpy.load_file(str(path))  # what any safetensors reader sees
    assert sorted(raw) == sorted(model.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(raw[key], value)
    loaded = firefly.load(path)
    assert list(loaded) == list(model.state_dict())
    other = mlp()
    other.load_state_dict(path)  # a path is read with firefly.load
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_array_equal(other(x).numpy(), model(x).numpy())


def test_nested_optimizer_state_round_trips_with_slash_keys(tmp_path):
    model = mlp()
    optimizer = firefly.optim.Adam(model.parameters(), lr=0.01)
    model(np.ones((2, 6), np.float32)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 4}
    path = tmp_path / "ckpt.safetensors"
    firefly.save(state, path)
    assert "optimizer/state/0/exp_avg" in safetensors_numpy.load_file(str(path))
    loaded = firefly.load(path)
    assert loaded["epoch"] == 4
    restored = firefly.optim.Adam(mlp().parameters(), lr=0.5)
    restored.load_state_dict(loaded["optimizer"])
    assert restored.param_groups[0]["lr"] == 0.01
    for index, entry in optimizer.state_dict()["state"].items():
        np.testing.assert_array_equal(
            restored.state_dict()["state"][index]["exp_avg"], entry["exp_avg"]
        )


@pytest.mark.parametrize("build", [mlp, build_model], ids=["mlp", "digits-cnn"])
def test_a_torch_model_saved_by_safetensors_torch_loads_with_identical_outputs(tmp_path, build):
    torch = pytest.importorskip("torch", reason="pip install torch==2.13.0")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    theirs = build(torch.nn)
    if build is build_model:  # running statistics that are not the defaults
        theirs.train()
        theirs(torch.randn(32, 1, 8, 8))
    theirs.eval()
    path = tmp_path / "torch.safetensors"
    safetensors_torch.save_file(theirs.state_dict(), str(path))
    ours = build(nn)
    ours.load_state_dict(firefly.load(path))
    ours.eval()
    shape = (5, 6) if build is mlp else (5, 1, 8, 8)
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours(Tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_a_missing_key_or_a_wrong_shape_names_the_key(tmp_path):
    model = mlp()
    state = model.state_dict()
    path = tmp_path / "bad.safetensors"
    firefly.save({k: v for k, v in state.items() if k != "2.bias"}, path)
    with pytest.raises(ValueError, match=r"missing keys \['2\.bias'\]"):
        mlp().load_state_dict(path)
    state["2.weight"] = np.zeros((3, 4), np.float32)
    firefly.save(state, path)
    with pytest.raises(
        ValueError, match=r"'2\.weight' has shape \(3, 4\) in the state but \(3, 5\)"
    ):
        mlp().load_state_dict(path)


def test_string_arrays_and_unreadable_files_are_refused(tmp_path):
    with pytest.raises(TypeError, match="'names'.*string array.*safetensors"):
        firefly.save({"names": np.array(["a", "b"])}, tmp_path / "s.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors is not a readable .safetensors"):
        firefly.load(tmp_path / "junk.safetensors")
