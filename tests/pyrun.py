"""Running Python in a subprocess against this checkout, as a user would from a shell."""
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_python(*args, timeout=600, cwd=None, env=None, repo_importable=True):
    """``python *args``; returns the CompletedProcess (text).

    ``env`` adds to, or overrides, this process's environment. ``repo_importable`` puts this
    checkout first on PYTHONPATH; turn it off when ``env`` points PYTHONPATH at another copy of
    the package that the child must import instead.
    """
    child_env = dict(os.environ, **(env or {}))
    if repo_importable:
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or REPO_ROOT, env=child_env)
