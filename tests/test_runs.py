"""Run folders: a resumed run must read the data it was started on (data root, dataset and the
annotation files' fingerprint); what the run records hold (plain JSON, the
environment, the git state)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from cir_lib import runs
from cir_lib.data import annotation_fingerprint
from cir_lib.errors import ConfigError
from cir_lib.recipes import get_recipe


def _open(out, data_root, dataset="fashioniq", resume=False):
    config = get_recipe("mini", stage="finetune", dataset=dataset)
    extra = {"data_root": str(data_root.resolve()), "dataset": dataset,
             "annotations": annotation_fingerprint(data_root, dataset)}
    run = runs.RunFolder.open(out, "finetune", config, resume, extra=extra)
    run.save_last({"epoch": 1})
    return run


@pytest.fixture
def data(smoke_root, tmp_path):
    root = tmp_path / "data"
    for sub in ("fashionIQ_dataset/captions", "fashionIQ_dataset/image_splits", "cirr_dataset/cirr"):
        shutil.copytree(smoke_root / sub, root / sub)
    return root


def test_fingerprint_is_stable_and_covers_the_training_files(data, tmp_path):
    fp = annotation_fingerprint(data, "fashioniq")
    assert set(fp["files"]) == {f"fashionIQ_dataset/{kind}/{prefix}.{c}.{s}.json"
                                for kind, prefix in (("captions", "cap"), ("image_splits", "split"))
                                for c in ("dress", "shirt", "toptee") for s in ("train", "val")}
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    assert annotation_fingerprint(moved, "fashioniq") == fp == json.loads(json.dumps(fp))
    cirr = annotation_fingerprint(data, "cirr")
    assert set(cirr["files"]) == {"cirr_dataset/cirr/captions/cap.rc2.train.json",
                                  "cirr_dataset/cirr/captions/cap.rc2.val.json",
                                  "cirr_dataset/cirr/image_splits/split.rc2.train.json",
                                  "cirr_dataset/cirr/image_splits/split.rc2.val.json"}
    (data / "cirr_dataset/cirr/captions/cap.rc2.val.json").unlink()
    assert annotation_fingerprint(data, "cirr")["files"]["cirr_dataset/cirr/captions/cap.rc2.val.json"] is None


def test_resume_on_changed_annotations_is_refused_naming_the_file(data, tmp_path):
    out = tmp_path / "run"
    _open(out, data)
    _open(out, data, resume=True)  # same data: fine
    cap = data / "fashionIQ_dataset/captions/cap.shirt.train.json"
    entries = json.loads(cap.read_text())
    cap.write_text(json.dumps(entries[:-1]))
    with pytest.raises(ConfigError, match="annotation files changed") as err:
        _open(out, data, resume=True)
    assert "fashionIQ_dataset/captions/cap.shirt.train.json" in str(err.value)
    assert "cap.dress.train.json" not in str(err.value)


def test_resume_on_another_data_root_or_dataset_is_refused(data, tmp_path):
    out = tmp_path / "run"
    _open(out, data)
    other = tmp_path / "other"
    shutil.copytree(data, other)
    with pytest.raises(ConfigError, match="data_root: ") as err:
        _open(out, other, resume=True)
    assert str(data.resolve()) in str(err.value) and str(other.resolve()) in str(err.value)
    assert json.loads((out / "config.json").read_text())["data_root"] == str(data.resolve())  # untouched
    with pytest.raises(ConfigError, match="dataset: 'fashioniq' -> 'cirr'"):
        _open(out, data, dataset="cirr", resume=True)


def test_resume_keeps_the_recorded_inputs_and_records_a_missing_fingerprint(data, tmp_path, caplog):
    out = tmp_path / "run"
    _open(out, data)
    record = json.loads((out / "config.json").read_text())
    del record["annotations"]  # a run started before fingerprints were recorded
    (out / "config.json").write_text(json.dumps(record))
    _open(out, data, resume=True)
    assert "without an annotation fingerprint" in caplog.text
    after = json.loads((out / "config.json").read_text())
    assert after["annotations"] == annotation_fingerprint(data, "fashioniq")
    assert after["data_root"] == record["data_root"]


def test_jsonable_plain_data():
    from dataclasses import dataclass
    from pathlib import Path

    @dataclass
    class Config:
        lr: float = 0.1
        path: Path = Path("a/b")

    got = runs.jsonable({"c": Config(), "k": (1, 2), "x": np.float32(0.5), "n": np.int64(3), 4: {"s"}, "none": None})
    assert got == {"c": {"lr": 0.1, "path": "a/b"}, "k": [1, 2], "x": 0.5, "n": 3, "4": ["s"], "none": None}


def test_environment_info_fields():
    env = runs.environment_info("cpu")
    assert set(env) >= {"python", "platform", "packages", "git_commit", "device"}
    assert env["packages"]["pandas"] == pd.__version__


def test_git_state_ignores_results_folder(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo, plain = tmp_path / "repo", tmp_path / "plain"
    (repo / "results").mkdir(parents=True)
    plain.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)
    run("init", "-q")
    (repo / "results" / "table.md").write_text("old")
    (repo / "code.py").write_text("x = 1")
    run("add", ".")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    commit, dirty = runs.git_state(repo)
    assert len(commit) == 40 and dirty is False
    (repo / "results" / "table.md").write_text("new")
    assert runs.git_state(repo) == (commit, False)
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "results only")
    assert runs.git_state(repo) == (commit, False)  # committing results does not change the code's commit
    (repo / "code.py").write_text("x = 2")
    assert runs.git_state(repo) == (commit, True)
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "code")
    assert runs.git_state(repo)[0] != commit
    assert runs.git_state(plain) == (None, None)
