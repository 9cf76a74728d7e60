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


LOCK = ROOT / "requirements-lock.txt"
LOCK_PYTHON = "3.11"  # the Python the lock was made with (its header says so)


def _lock() -> dict[str, str]:
    """{normalized name: version} of requirements-lock.txt (every line `name==version`)."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
            assert m, f"not an exact pin in {LOCK.name}: {line!r}"
            pins[_name(m.group(1))] = m.group(2)
    return pins


def _environment_pip_lines() -> list[str]:
    """The lines under `- pip:` in environment.yml."""
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    return [m.group(1).strip() for line in lines[start + 1:] if (m := re.match(r"\s+- (\S.*)$", line))]


def test_environment_yml_installs_the_lock():
    assert _environment_pip_lines() == ["-r requirements-lock.txt", "-e ."]
    assert f"python={LOCK_PYTHON}" in (ROOT / "environment.yml").read_text()
    assert f"Python {LOCK_PYTHON}" in LOCK.read_text()


def test_the_lock_pins_every_declared_requirement_within_its_range():
    from packaging.requirements import Requirement

    pins = _lock()
    for name, requirement in _pyproject_requirements().items():
        assert name in pins, f"{name} is declared in pyproject.toml but not pinned in {LOCK.name}"
        assert pins[name] in Requirement(requirement).specifier, (name, pins[name], requirement)
    assert "cir-lib" not in pins  # the project itself is installed editable beside the lock


def test_make_setup_installs_the_lock_and_setup_latest_the_ranges():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK := requirements-lock\.txt$", makefile, re.M)
    assert re.search(r"^\$\(STAMP\): pyproject\.toml \$\(LOCK\)$", makefile, re.M)
    assert '-r $(LOCK) -e ".[dev]"' in makefile
    assert re.search(r"^setup-latest:", makefile, re.M)
    readme = (ROOT / "README.md").read_text()
    assert "make setup-latest" in readme and "TORCH_INDEX=" in readme


def _version(name: str):
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_the_installed_packages_are_the_locked_versions():
    stamp = ROOT / ".venv" / ".installed"
    if stamp.is_file() and stamp.read_text().strip() == "latest":
        pytest.skip("set up with `make setup-latest`: the latest versions within the ranges, not the lock")
    if not sys.platform.startswith("linux"):
        pytest.skip("the lock is for Linux x86-64")
    # a torch build from another index (`make setup TORCH_INDEX=...`) carries a local label: 2.14.1+cpu
    differ = {name: (version, _version(name)) for name, version in _lock().items()
              if (_version(name) or "").split("+")[0] != version.split("+")[0]}
    if any(name.startswith(("nvidia-", "cuda-")) or name == "triton" for name in differ) and \
            "+" in (_version("torch") or ""):
        differ = {k: v for k, v in differ.items() if not (k.startswith(("nvidia-", "cuda-")) or k == "triton")}
    assert not differ, (f"installed versions differ from {LOCK.name} (locked, installed): {differ}; "
                        "`make clean setup` installs the lock")


def _committed_records() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "results/*.meta.json", "results/*/runs/*/config.json"],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / line for line in out.stdout.split()]


def test_the_committed_results_were_produced_with_the_locked_versions():
    import json

    pins = _lock()
    records = _committed_records()
    assert any(p.name.endswith(".meta.json") for p in records), "no committed table records found"
    for path in records:
        environment = json.loads(path.read_text())["environment"]
        assert environment["python"].rsplit(".", 1)[0] == LOCK_PYTHON, path
        for package, version in environment["packages"].items():
            if _name(package) == "cir-lib":
                continue
            assert pins.get(_name(package)) == version, \
                (f"{path.relative_to(ROOT)} was produced with {package} {version}, the lock has "
                 f"{pins.get(_name(package))}: regenerate the results with the locked versions")


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
