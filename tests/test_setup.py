"""The project's set-up files agree with each other and the CLI answers --help everywhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from cir_lib.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict[str, str]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment_requirements() -> dict[str, str]:
    """The pip requirements listed under `- pip:` in environment.yml (the project itself excluded)."""
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    reqs = {}
    for line in lines[start + 1:]:
        m = re.match(r"\s+- (\S.*)$", line)
        if m and not m.group(1).startswith("-e "):
            reqs[_name(m.group(1))] = m.group(1).replace(" ", "")
    return reqs


def test_environment_yml_matches_pyproject():
    assert _environment_requirements() == _pyproject_requirements()


def test_required_packages_are_declared():
    names = set(_pyproject_requirements())
    for pkg in ("torch", "torchvision", "open-clip-torch", "papermill", "jupyterlab", "ipykernel",
                "ipywidgets", "matplotlib", "seaborn", "pandas", "pillow", "tqdm", "pytest"):
        assert pkg in names, pkg


def test_makefile_targets_and_ci():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("setup:", "test:", "reproduce:"):
        assert re.search(rf"^{target}", makefile, re.M), target
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(action.choices)


def test_expected_subcommands_exist():
    expected = {"make-mini", "check-data", "pretrain-mini", "evaluate", "submit-cirr",
                "finetune", "train-combiner", "reproduce"}
    assert expected <= set(_subcommands())


@pytest.mark.parametrize("command", _subcommands())
def test_each_subcommand_has_help(command):
    out = subprocess.run([sys.executable, "-m", "cir_lib", command, "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: cir-lib" in out.stdout
