"""Learning on real data: the digits CNN of examples/digits_cnn.py, trained briefly.

A linear classifier on the raw pixels already reaches about 95% on these digits, so the full
model's accuracy alone could hide broken convolution gradients behind a working last layer.
The second test freezes that layer at its random initialization: every bit of learning must
then flow back through Linear, Dropout, MaxPool2d, ReLU, BatchNorm2d and Conv2d."""

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import firefly
from firefly import nn
from firefly.optim import AdamW

REPO_ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip(
    "sklearn", reason='needs scikit-learn for the digits data: pip install ".[examples]"'
)
sys.path.insert(0, str(REPO_ROOT / "examples"))
import digits_cnn  # noqa: E402

from firefly import digits  # noqa: E402


def sklearn_split(seed, dtype=np.float32):
    """The split as scikit-learn makes it, with nothing of firefly's cache in between."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype(dtype)[:, None, :, :]
    labels = data.target.astype(np.int64)
    return train_test_split(images, labels, test_size=0.2, stratify=labels, random_state=seed)


def assert_same_split(got, expected):
    assert len(got) == len(expected) == 4
    for a, b in zip(got, expected):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def cached_files(cache_home):
    return sorted((cache_home / "firefly" / "datasets").glob("*.npz"))


@pytest.mark.parametrize("seed, dtype", [(0, np.float32), (3, np.float64)])
def test_load_split_is_sklearns_split_and_later_calls_read_it_from_the_cache(
    tmp_path, monkeypatch, seed, dtype
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    expected = sklearn_split(seed, dtype)
    assert_same_split(digits.load_split(seed, dtype), expected)
    assert len(cached_files(tmp_path)) == 1

    def no_sklearn(seed):
        raise AssertionError("the cached split should have been read")

    monkeypatch.setattr(digits, "_split_with_sklearn", no_sklearn)
    assert_same_split(digits.load_split(seed, dtype), expected)


def test_a_damaged_cached_split_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    digits.load_split(0)
    (path,) = cached_files(tmp_path)
    whole = path.read_bytes()
    for damaged in (whole[: len(whole) // 2], b"not an npz file"):
        path.write_bytes(damaged)
        assert_same_split(digits.load_split(0), sklearn_split(0))
        assert path.read_bytes() != damaged
    # A well-formed file holding the wrong arrays is not trusted either.
    np.savez(path, train_images=np.zeros((3, 8, 8), np.uint8))
    assert_same_split(digits.load_split(0), sklearn_split(0))


def test_an_unwritable_cache_folder_still_gives_the_split(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made under a file")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert_same_split(digits.load_split(0), sklearn_split(0))


def train(model, epochs, lr=3e-3):
    X_train, X_test, y_train, y_test = digits_cnn.load_split()
    rng = np.random.default_rng(0)
    optimizer = AdamW(model.get_parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for idx in digits_cnn.batches(len(X_train), 64, rng):
            optimizer.zero_grad()
            loss_fn(model(firefly.Tensor(X_train[idx])), y_train[idx]).backward()
            optimizer.step()
    model.eval()
    with firefly.no_grad():
        predictions = model(firefly.Tensor(X_test)).numpy().argmax(axis=1)
    return float(np.mean(predictions == y_test))


def test_digits_cnn_learns():
    firefly.manual_seed(0)
    assert train(digits_cnn.build_model(nn), epochs=3) >= 0.97


def test_digits_cnn_learns_through_the_convolutions_alone():
    firefly.manual_seed(0)
    model = digits_cnn.build_model(nn)
    head = model[-1]
    head.requires_grad_(False)
    frozen = head.weight.numpy().copy()
    accuracy = train(model, epochs=3)
    assert np.array_equal(head.weight.numpy(), frozen)
    assert accuracy >= 0.9, accuracy


def test_digits_mlp_example_reaches_97_percent_and_plots_its_curves(tmp_path, run_python):
    # One run at the example's defaults checks its accuracy and, with matplotlib installed, its
    # --plot: the curves' PNG, and no bar when stderr is not a terminal. An empty kernel cache
    # adds the compile notice to stderr (a line, not a bar): off here.
    plot = importlib.util.find_spec("matplotlib") is not None
    path = tmp_path / "mlp.png"
    result = run_python(
        REPO_ROOT / "examples" / "digits_mlp.py",
        *(["--plot", path] if plot else []),
        cwd=tmp_path,
        env={"FIREFLY_NO_COMPILE_NOTICE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    if plot:
        assert f"curves written to {path}" in result.stdout
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    epochs = re.findall(
        r"Epoch \[(\d+)/30\], loss: (\S+), train accuracy: (\S+)%, held-out accuracy: (\S+)%",
        result.stdout,
    )
    assert [int(e[0]) for e in epochs] == list(range(1, 31))
    final = float(re.search(r"final held-out accuracy: (\S+)%", result.stdout).group(1))
    assert final >= 97.0, result.stdout[-600:]


def test_demo_digits_cnn_reports_each_epoch(tmp_path, run_python):
    result = run_python(
        "-m", "firefly", "demo", "--model", "digits-cnn", "--epochs", "2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "digits CNN (float32, 2 epochs, AdamW lr=0.01" in result.stdout
    assert (
        len(
            re.findall(
                r"Epoch \[\d/2\], loss: \S+, train accuracy: \S+%, held-out accuracy: \S+%, "
                r"time: \S+ s",
                result.stdout,
            )
        )
        == 2
    )
    final = float(re.search(r"final held-out accuracy (\S+)%", result.stdout).group(1))
    assert final >= 95.0, result.stdout
