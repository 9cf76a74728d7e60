"""The kit installed without -e: the notebooks run from a checkout write beside that checkout.

The library is installed non-editable into a folder of its own (`pip install --no-deps --target`,
the test environment providing the dependencies), put first on PYTHONPATH, and the series' first
notebook runs from a clone of the project at another path: its data and results land in the clone,
never beside the installed package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _clone(dest: Path) -> Path:
    """The project's tracked files at `dest` (what `git clone` gives); skip without git."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, timeout=60)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot clone the project")
    for name in listed.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.mark.notebooks
@pytest.mark.slow
def test_non_editable_install_writes_beside_the_checkout(tmp_path, smoke_root):
    source = _clone(tmp_path / "source")  # built from a copy: the build leaves build/ behind
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                            "--target", str(site), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    assert (site / "cir_lib" / "cli" / "__init__.py").is_file(), "the command line is not installed"
    checkout = _clone(tmp_path / "elsewhere" / "checkout")
    shutil.copytree(smoke_root, checkout / "data" / "smoke")  # the generated data, as 00 would write it
    env = {**os.environ, "PYTHONPATH": str(site), "CIR_LIB_PROFILE": "mini"}  # the profile comes from --profile
    env.pop("CIR_LIB_PROJECT", None)
    # run in notebooks/, as JupyterLab's kernels (from the root, `python -c` would import the clone's cir_lib/)
    where = subprocess.run([sys.executable, "-c", "import cir_lib; print(cir_lib.__file__)"], cwd=checkout / "notebooks",
                           capture_output=True, text=True, env=env, timeout=120)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr  # the installed copy
    helped = subprocess.run([sys.executable, "-m", "cir_lib", "reproduce", "--help"], cwd=checkout / "notebooks",
                            capture_output=True, text=True, env=env, timeout=120)
    assert helped.returncode == 0 and "usage: cir-lib" in helped.stdout, helped.stderr[-2000:]
    run = ("from cir_lib.reproduce import reproduce; "
           "reproduce('smoke', notebooks=['00_data_prep'], parameters={'datasets': ['cirr']}, progress=False)")
    done = subprocess.run([sys.executable, "-c", run], cwd=checkout / "notebooks",  # where JupyterLab's kernel runs
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    executed = checkout / "results" / "smoke" / "executed" / "00_data_prep.ipynb"
    assert executed.is_file() and (checkout / "results" / "smoke" / "data" / "check_data.json").is_file()
    assert (checkout / "data" / "smoke" / "cir-mini.pt").is_file()  # pretrained into the checkout's data
    assert not (site / "results").exists() and not (site / "data").exists()  # nothing beside the package
    assert str(tmp_path) not in executed.read_text()  # printed paths are root-relative
    summary = json.loads((checkout / "results" / "smoke" / "reproduce_summary.json").read_text())
    assert summary["data_root"] == "data/smoke"
