"""Each optional extra in pyproject.toml installs from a checkout, as ``pip install ".[extra]"``,
under the distribution name firefly-dl ("firefly" on the package index is another project). The
same spelling works once published: ``pip install "firefly-dl[extra]"``.

Two halves prove it, in seconds rather than the minutes of a fresh virtual environment per
extra:

- the packages: every extra's requirements are also the ``test`` extra's (checked below), and
  ``.ci/run`` installs ``.[test]`` into a virtual environment it has just created, so CI resolves
  and installs every extra's packages from nothing on each run (a subset of a set of
  requirements that resolves resolves too);
- the extras themselves: pip installs the checkout with every extra, non-editable, into a new
  virtual environment that sees this environment's packages; the wheel's metadata must declare
  each extra with its requirements, and pip must find them all satisfied.
"""

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from firefly.install import DISTRIBUTION

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]

# Prints the installed distribution's extras and their requirements, as the wheel declares them.
DECLARED_EXTRAS = """
import json, re
from importlib import metadata
dist = metadata.distribution("firefly-dl")
extras = {name: [] for name in dist.metadata.get_all("Provides-Extra")}
for requirement in dist.requires:
    found = re.search(r"extra\\s*==\\s*['\\"]([^'\\"]+)['\\"]", requirement)
    if found:
        extras[found.group(1)].append(requirement.split(";")[0].replace(" ", ""))
print(json.dumps(extras))
"""


def requirement_name(requirement):
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0)


def canonical(requirement):
    """``name>=1.0`` with pip's normalized name (lower case, runs of ``-_.`` as ``-``)."""
    name = requirement_name(requirement)
    return re.sub(r"[-_.]+", "-", name).lower() + requirement[len(name) :].replace(" ", "")


def test_the_distribution_name_is_firefly_dl_and_imports_as_firefly():
    assert PYPROJECT["project"]["name"] == DISTRIBUTION == "firefly-dl"
    assert PYPROJECT["tool"]["flit"]["module"]["name"] == "firefly"


@pytest.mark.parametrize("extra", sorted(set(EXTRAS) - {"test"}))
def test_each_extras_requirements_are_installed_by_ci_with_the_test_extra(extra):
    # .ci/run installs ".[test]" into a fresh venv: that is the real install of this extra's
    # packages, as long as the test extra asks for each of them with the same bounds.
    assert set(EXTRAS[extra]) <= set(EXTRAS["test"]), (
        extra,
        set(EXTRAS[extra]) - set(EXTRAS["test"]),
    )


def test_every_extra_installs_from_the_checkout_and_declares_its_requirements(tmp_path):
    venv = tmp_path / "venv"
    # No pip of its own: this environment's pip, on the path below, installs into the new venv.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }

    def run(*args, cwd=tmp_path):
        result = subprocess.run(
            [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    # The new venv sees this environment's packages (a plain path line: their .pth files, an
    # editable firefly among them, are not read), so pip finds the extras' requirements
    # installed and builds and installs only the firefly-dl wheel.
    site_packages = Path(
        run("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    )
    (site_packages / "this-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run("-m", "pip", "install", "--quiet", f".[{','.join(EXTRAS)}]", cwd=REPO_ROOT)

    declared = json.loads(run("-c", DECLARED_EXTRAS))
    assert sorted(declared) == sorted(EXTRAS)
    for extra, requirements in EXTRAS.items():
        assert sorted(map(canonical, declared[extra])) == sorted(map(canonical, requirements)), (
            extra
        )
    # installed, not read from the checkout: run from elsewhere
    out = run("-c", "import firefly, firefly.install; print(firefly.__file__)")
    assert str(venv) in out
