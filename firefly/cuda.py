"""``firefly.cuda``: torch.cuda's availability questions, answered for a library without CUDA.

Device-selection code (``"cuda" if torch.cuda.is_available() else "cpu"``) picks the CPU, and
seeding every device (``torch.cuda.manual_seed_all``) is accepted and does nothing, as in a
CPU-only torch. Anything that needs a CUDA device raises, saying firefly runs on the CPU.
"""


def is_available() -> bool:
    """False: firefly runs on the CPU only."""
    return False


def device_count() -> int:
    return 0


def is_initialized() -> bool:
    return False


def manual_seed(seed: int) -> None:
    """Accepted and ignored: there is no CUDA generator to seed (as in a CPU-only torch)."""


manual_seed_all = manual_seed


def synchronize(device: object = None) -> None:
    """Nothing to wait for: every firefly op has finished when it returns."""


def empty_cache() -> None:
    """Nothing to free: firefly has no device memory cache."""


def _no_device(name: str) -> RuntimeError:
    return RuntimeError(
        f"firefly.cuda.{name}: firefly runs on the CPU only and there is no CUDA device; "
        "check firefly.cuda.is_available() first"
    )


def current_device() -> int:
    raise _no_device("current_device")


def set_device(device: object) -> None:
    raise _no_device("set_device")


def get_device_name(device: object = None) -> str:
    raise _no_device("get_device_name")
