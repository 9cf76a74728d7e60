"""Shared fixtures: the real annotation files from ../shared (skipped when absent) and the smoke
preset of the embedded mini benchmark, generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the project; CIR_LIB_SHARED points elsewhere (e.g. a CI checkout in another folder)
REAL_ANNOTATIONS = Path(os.environ.get("CIR_LIB_SHARED", PROJECT_ROOT.parent / "shared")) / "real_annotations"


@pytest.fixture(scope="session")
def real_annotations() -> Path:
    """Folder holding `fashionIQ/` and `cirr/` real annotation files (no images); skip if absent."""
    if not (REAL_ANNOTATIONS / "fashionIQ").is_dir() or not (REAL_ANNOTATIONS / "cirr").is_dir():
        pytest.skip(f"real annotation files not found at {REAL_ANNOTATIONS}")
    return REAL_ANNOTATIONS


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory) -> Path:
    """A data root holding the smoke preset (fashionIQ_dataset/, cirr_dataset/, mini_pool/).

    Tests must not modify it: copy it first (see `damaged_smoke_root` style fixtures)."""
    from cir_lib.mini import make_mini

    root = tmp_path_factory.mktemp("smoke")
    make_mini(root, preset="smoke", seed=0)
    return root


@pytest.fixture(scope="session")
def real_root(real_annotations, tmp_path_factory) -> Path:
    """A data root in tmp whose annotation folders are symlinks to the real files (no images)."""
    root = tmp_path_factory.mktemp("real_root")
    for src, dst in [
        (real_annotations / "fashionIQ", root / "fashionIQ_dataset"),
        (real_annotations / "cirr", root / "cirr_dataset" / "cirr"),
    ]:
        dst.mkdir(parents=True)
        for sub in ("captions", "image_splits"):
            (dst / sub).symlink_to(src / sub, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def smoke_pipeline(smoke_root, tmp_path_factory):
    """The smoke profile run once through `cir_lib.reproduce` (the five notebooks), in a project
    skeleton (the notebooks and pyproject.toml, as a checkout has them: data/ and results/ land beside
    them), shared by the tests that read its products (tests/test_notebooks.py,
    tests/test_pinned_numbers.py).

    Returns a namespace: project (the skeleton), data_root (`data/smoke`, a copy of `smoke_root`),
    results (the results folder), out (`results/smoke`), summary (what `reproduce` returned) and
    seconds. Tests must not modify it."""
    import shutil
    import time
    from types import SimpleNamespace

    from cir_lib import reproduce as runner

    root = Path(__file__).resolve().parents[1]
    project = tmp_path_factory.mktemp("smoke_pipeline") / "first"
    shutil.copytree(root / "notebooks", project / "notebooks")
    shutil.copy2(root / "pyproject.toml", project / "pyproject.toml")
    data_root = project / "data" / "smoke"
    shutil.copytree(smoke_root, data_root)  # the session fixture must stay untouched
    cwd, env = os.getcwd(), os.environ.pop("CIR_LIB_PROJECT", None)
    os.chdir(project)  # the project root is found from the working directory
    try:
        start = time.perf_counter()
        summary = runner.reproduce("smoke", progress=False)  # the project's data/smoke and results/smoke
        seconds = time.perf_counter() - start
    finally:
        os.chdir(cwd)
        if env is not None:
            os.environ["CIR_LIB_PROJECT"] = env
    return SimpleNamespace(project=project, data_root=data_root, results=project / "results",
                           out=project / "results" / "smoke", summary=summary, seconds=seconds)
