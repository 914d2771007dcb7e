"""What pyproject.toml promises about the package: one version, written once, and the license."""

import ast
import re
from pathlib import Path

import pytest

import firefly

REPO_ROOT = Path(__file__).resolve().parents[1]

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")


def project_table():
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def test_the_version_is_written_once_as_firefly_version():
    project = project_table()
    assert "version" not in project and "version" in project["dynamic"], project
    # flit reads __version__ from the source without importing it: one literal assignment.
    module = ast.parse((REPO_ROOT / "firefly" / "__init__.py").read_text())
    assigned = [
        node.value.value
        for node in module.body
        if isinstance(node, ast.Assign)
        and any(getattr(target, "id", None) == "__version__" for target in node.targets)
        and isinstance(node.value, ast.Constant)
    ]
    assert assigned == [firefly.__version__], assigned
    assert re.fullmatch(r"\d+\.\d+\.\d+", firefly.__version__), firefly.__version__


def test_the_license_file_matches_pyproject():
    assert project_table()["license"] == "MIT"
    text = (REPO_ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "WITHOUT WARRANTY OF ANY KIND" in text


def test_the_changelog_has_an_entry_for_this_version():
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## .*\b{re.escape(firefly.__version__)}\b", changelog, re.M), changelog[
        :500
    ]
