"""``firefly.backends``: the flags of torch.backends that device-selection and reproducibility
code reads or sets. firefly runs on the CPU with deterministic kernels, so ``mps`` and ``cuda``
are unavailable and the ``cudnn`` flags are plain attributes that change nothing."""

import types

mps = types.SimpleNamespace(is_available=lambda: False, is_built=lambda: False)
cuda = types.SimpleNamespace(is_built=lambda: False)
cudnn = types.SimpleNamespace(
    deterministic=False, benchmark=False, enabled=True, is_available=lambda: False
)
