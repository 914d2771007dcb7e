"""firefly.save / firefly.load: round trips, refusing pickles and object arrays, atomic writes."""

import os
import pickle

import numpy as np
import pytest

import firefly
from firefly import nn
from firefly.nn.parameter import Parameter
from firefly.tensor import Tensor


def model():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2, dtype=np.float64))


def assert_same(a, b):
    """Equal values and equal types, recursively (arrays: dtype and shape too)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert (
            a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
        )
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b)
    else:
        assert a == b


def test_nested_state_round_trips_with_types_intact(tmp_path):
    state = {
        "model": model().state_dict(),
        "optimizer": {
            "state": {
                0: {"step": 3, "exp_avg": np.arange(4.0)},
                2: {"step": 3, "exp_avg": np.ones(2, np.float32)},
            },
            "param_groups": [
                {"lr": 1e-3, "betas": [0.9, 0.999], "amsgrad": False, "params": [0, 1, 2, 3]}
            ],
        },
        "epoch": 7,
        "history": (0.5, float("inf"), float("nan"), -0.0),
        "note": "run/1",
        "nothing": None,
        "numpy_scalar": np.float32(2.5),
        "int_labels": np.array([[1, 2]], dtype=np.int16),
        "flags": np.array([True, False]),
        "a/b": np.zeros(1),  # a key that contains the path separator
        "a": {"b": np.ones(1)},  # ... and the path it would collide with
        "empty": {},
    }
    path = tmp_path / "checkpoint.npz"
    firefly.save(state, path)
    assert_same(firefly.load(path), state)
    assert isinstance(firefly.load(str(path))["numpy_scalar"], np.float32)


def test_tensors_and_parameters_are_saved_as_arrays(tmp_path):
    path = tmp_path / "t.npz"
    firefly.save(
        {"t": Tensor(np.ones((2, 2))), "p": Parameter(np.zeros(3, dtype=np.float32))}, path
    )
    loaded = firefly.load(path)
    assert_same(loaded, {"t": np.ones((2, 2)), "p": np.zeros(3, dtype=np.float32)})


def test_model_resumes_from_a_checkpoint(tmp_path):
    firefly.manual_seed(0)
    source = model()
    firefly.save({"model": source.state_dict()}, tmp_path / "m.npz")
    firefly.manual_seed(1)
    target = model()
    target.load_state_dict(firefly.load(tmp_path / "m.npz")["model"])
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    assert np.array_equal(source(x).numpy(), target(x).numpy())


def test_a_plain_numpy_npz_loads_as_a_dict_of_arrays(tmp_path):
    np.savez(tmp_path / "plain.npz", weight=np.ones(3), bias=np.zeros(2))
    assert_same(firefly.load(tmp_path / "plain.npz"), {"weight": np.ones(3), "bias": np.zeros(2)})


def test_object_arrays_are_refused_on_save_and_on_load(tmp_path):
    path = tmp_path / "c.npz"
    with pytest.raises(TypeError, match="'model/w' is an array of dtype object"):
        firefly.save({"model": {"w": np.array([1, "x"], dtype=object)}}, path)
    assert not path.exists() and os.listdir(tmp_path) == []
    np.savez(path, w=np.array([{"a": 1}], dtype=object))  # NumPy pickles object arrays
    with pytest.raises(ValueError, match="object array.*refuses to unpickle"):
        firefly.load(path)


def test_a_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="not an .npz checkpoint"):
        firefly.load(path)
    assert not marker.exists()


def test_unsupported_values_name_their_path(tmp_path):
    with pytest.raises(TypeError, match="cannot save a set at 'model/extra'"):
        firefly.save({"model": {"extra": {1, 2}}}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="dict keys must be str or int"):
        firefly.save({(1, 2): 3}, tmp_path / "x.npz")


def test_other_files_are_refused_clearly(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(2))
    with pytest.raises(ValueError, match="single .npy array"):
        firefly.load(tmp_path / "a.npy")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an .npz checkpoint"):
        firefly.load(tmp_path / "text.npz")


@pytest.mark.parametrize("failing", ["savez", "fsync", "replace"])
def test_a_crash_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failing):
    path = tmp_path / "checkpoint.npz"
    firefly.save({"epoch": 1, "w": np.ones(1000)}, path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        if failing == "savez":  # write part of the data, then die
            args[0].write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    target = {"savez": (np, "savez"), "fsync": (os, "fsync"), "replace": (os, "replace")}[failing]
    monkeypatch.setattr(*target, crash)
    with pytest.raises(OSError, match="disk full"):
        firefly.save({"epoch": 2, "w": np.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert firefly.load(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.npz"]  # the temporary file is cleaned up


def test_save_replaces_and_the_file_gets_ordinary_permissions(tmp_path):
    path = tmp_path / "c.npz"
    firefly.save({"v": 1}, path)
    firefly.save({"v": 2}, path)
    assert firefly.load(path) == {"v": 2}
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("key", ["allow_pickle", "file", "__firefly_structure__"])
def test_keys_that_np_savez_takes_as_its_own_arguments_round_trip(tmp_path, key):
    path = tmp_path / "state.npz"
    firefly.save({key: np.arange(3.0), "other": np.ones(2)}, path)
    loaded = firefly.load(path)
    np.testing.assert_array_equal(loaded[key], np.arange(3.0))
    np.testing.assert_array_equal(loaded["other"], np.ones(2))
