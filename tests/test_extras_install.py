"""Each optional extra in pyproject.toml installs from a checkout, as ``pip install ".[extra]"``,
into a fresh virtual environment, under the distribution name firefly-dl ("firefly" on the
package index is another project). The same spelling works once published:
``pip install "firefly-dl[extra]"``."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from firefly.install import DISTRIBUTION

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]


def requirement_name(requirement):
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0)


def test_the_distribution_name_is_firefly_dl_and_imports_as_firefly():
    assert PYPROJECT["project"]["name"] == DISTRIBUTION == "firefly-dl"
    assert PYPROJECT["tool"]["flit"]["module"]["name"] == "firefly"


@pytest.mark.slow
def test_each_extra_installs_from_the_checkout_in_a_fresh_venv(tmp_path):
    checkout, venv = tmp_path / "checkout", tmp_path / "venv"
    shutil.copytree(
        REPO_ROOT,
        checkout,
        ignore=shutil.ignore_patterns(".git", "__pycache__", "*.nbi", "*.nbc", ".pytest_cache"),
    )
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }

    def run(*args, cwd=checkout):
        result = subprocess.run(
            [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    for extra, requirements in EXTRAS.items():
        run("-m", "pip", "install", "--quiet", f".[{extra}]")
        names = [requirement_name(r) for r in requirements]
        shown = run("-m", "pip", "show", DISTRIBUTION, *names)
        for name in [DISTRIBUTION, *names]:
            assert re.search(rf"^Name: {re.escape(name)}$", shown, re.M | re.I), (extra, name)
    # installed, not read from the checkout: run from elsewhere
    out = run("-c", "import firefly, firefly.install; print(firefly.__file__)", cwd=tmp_path)
    assert str(venv) in out
