"""Forward hooks, as feature-extraction and debugging code uses them (issue 21)."""

import numpy as np
from idiom_twins import run_beside_torch

X = np.linspace(-1.0, 1.0, 6).reshape(2, 3)


def program(torch, nn, data):
    model = nn.Sequential(nn.Tanh(), nn.ReLU(), nn.Sigmoid())
    features, calls = {}, []

    def save(name):
        def hook(module, args, output):
            features[name] = output.detach()

        return hook

    handles = [model[i].register_forward_hook(save(f"layer{i}")) for i in range(3)]
    model[0].register_forward_pre_hook(lambda module, args: (args[0] * 2,))
    model[2].register_forward_hook(lambda module, args, output: output + 1)
    model[1].register_forward_pre_hook(lambda module, args: calls.append("first"), prepend=True)
    model[1].register_forward_hook(
        lambda module, args, kwargs, output: calls.append(("kw", sorted(kwargs))),
        with_kwargs=True,
    )
    x = torch.tensor(X)
    hooked = model(x)
    for handle in handles:
        handle.remove()
    features_after = dict(features)
    with model[2].register_forward_hook(lambda m, a, o: o * 0):
        zeroed = model(x)
    plain = model(x)
    return {
        "hooked": hooked,
        "features": features_after,
        "calls": calls,
        "zeroed": zeroed,
        "plain": plain,
    }


def test_forward_hooks_match_torch():
    run_beside_torch(program, rtol=1e-12)
