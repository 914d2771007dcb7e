"""Where the tests find the seed document's training script (the program firefly was first
written to run unchanged), and the skip marker for the tests that run it."""

from pathlib import Path

import pytest

# CI checks out the repository with the shared folder beside it: <parent>/main, <parent>/shared.
SEED_SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "seed" / "seed_training_script.py"

needs_seed_script = pytest.mark.skipif(
    not SEED_SCRIPT.exists(),
    reason="needs the seed document's training script beside the repository, as CI has it "
    "(../shared/seed/seed_training_script.py); a plain clone does not include it",
)
