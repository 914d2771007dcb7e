"""Device-agnostic code: pick a device, move the model and the data to it (issue 21)."""

import pytest
from idiom_twins import run_beside_torch

import firefly


def program(torch, nn, data):
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU()).to(device)
    nn.init.constant_(model[0].weight, 0.5)
    nn.init.zeros_(model[0].bias)
    x = torch.ones(4, 3, device=device)
    out = model(x.to(device)).cpu()
    return {
        "device": str(device),
        "type": device.type,
        "same_device": x.device == device,
        "param_device": str(next(model.parameters()).device),
        "cpu0": str(torch.device("cpu:0")),
        "out": out,
        "to_both": x.to(device, torch.float64),
        "to_keyword": x.to(device=device, dtype=torch.float64),
        "to_other": torch.zeros(2).to(torch.zeros(1, dtype=torch.float64)),
        "arange": torch.arange(3, device="cpu"),
        "like": torch.zeros_like(x, device=device).shape,
        "cuda": (torch.cuda.is_available(), torch.cuda.device_count()),
        "mps": torch.backends.mps.is_available(),
        "is_cuda": x.is_cuda,
    }


def test_device_selection_runs_on_the_cpu_like_torch():
    result = run_beside_torch(program)
    assert result["device"] == "cpu" and result["cuda"] == [False, 0]


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps", firefly.device("cpu")])
def test_only_the_cpu_is_accepted(device):
    if isinstance(device, firefly.device):
        assert firefly.zeros(2, device=device).device == device
        return
    with pytest.raises(ValueError, match="firefly runs on the CPU only"):
        firefly.zeros(2).to(device)
    with pytest.raises(ValueError, match=f"ones: device '{device}'"):
        firefly.ones(2, device=device)


def test_device_objects_behave_like_torch():
    torch = pytest.importorskip("torch")
    for spec in ("cpu", "cpu:0"):
        ours, theirs = firefly.device(spec), torch.device(spec)
        assert (str(ours), repr(ours), ours.type, ours.index) == (
            str(theirs),
            repr(theirs),
            theirs.type,
            theirs.index,
        )
    assert firefly.device("cpu", 0) == firefly.device("cpu:0")
    assert firefly.device("cpu") != firefly.device("cpu:0")  # as torch: the index counts
    assert (firefly.device("cpu") == "cpu") is (torch.device("cpu") == "cpu") is False
    assert len({firefly.device("cpu"), firefly.device("cpu")}) == 1
