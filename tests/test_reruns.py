"""Reruns keep work: finished runs are reused, interrupted ones resumed, runs of other settings
refused by name (never deleted unasked), and `fresh` starts over only when asked."""

from __future__ import annotations

import pytest

from cir_lib import notebook
from cir_lib.errors import PipelineError
from cir_lib.settings import result_paths


def _config(**overrides):
    return notebook.stage_config("smoke", "finetune", "cirr", **{"epochs": 2, **overrides})


def test_a_finished_run_is_reused_an_interrupted_one_resumed(smoke_root, tmp_path):
    run = tmp_path / "runs" / "cirr-finetune"
    first = notebook.train_or_reuse("finetune", smoke_root, _config(), run)
    best = (run / "best.pt").stat().st_mtime_ns
    again = notebook.train_or_reuse("finetune", smoke_root, _config(), run)
    assert again.seconds == 0 and (run / "best.pt").stat().st_mtime_ns == best  # nothing trained
    assert (again.best_epoch, again.best_score) == (first.best_epoch, pytest.approx(first.best_score))
    assert again.best_metrics == pytest.approx(first.best_metrics)
    longer = notebook.train_or_reuse("finetune", smoke_root, _config(epochs=3), run)  # more epochs: resumed
    assert [int(r["epoch"]) for r in longer.history] == [1, 2, 3]


def test_a_run_of_other_settings_is_refused_then_replaced_only_when_asked(smoke_root, tmp_path):
    run = tmp_path / "runs" / "cirr-finetune"
    notebook.train_or_reuse("finetune", smoke_root, _config(), run)
    before = (run / "best.pt").stat().st_mtime_ns
    with pytest.raises(PipelineError, match=r"lr.*nothing was deleted.*fresh"):
        notebook.train_or_reuse("finetune", smoke_root, _config(lr=3e-4), run)
    assert (run / "best.pt").stat().st_mtime_ns == before
    result = notebook.train_or_reuse("finetune", smoke_root, _config(lr=3e-4), run, fresh=True)
    assert result.seconds > 0 and (run / "best.pt").stat().st_mtime_ns != before
    assert notebook.train_or_reuse("finetune", smoke_root, _config(lr=3e-4), run).seconds == 0


def test_seed_runs_have_their_own_folders(tmp_path):
    paths = result_paths(tmp_path)
    assert paths.run("cirr", "finetune").name == "cirr-finetune"
    assert paths.run("cirr", "combiner", 2).name == "cirr-combiner-seed2"


def test_a_copied_results_folder_still_loads(smoke_root, tmp_path):
    import shutil

    from cir_lib.loading import load_run

    runs = tmp_path / "a" / "runs"
    stage1 = notebook.train_or_reuse("finetune", smoke_root, _config(epochs=1), runs / "cirr-finetune")
    combiner_cfg = notebook.stage_config("smoke", "combiner", "cirr", epochs=1)
    notebook.train_or_reuse("combiner", smoke_root, combiner_cfg, runs / "cirr-combiner", clip_run=stage1.run_dir)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")  # the original is gone: the copy must not point at it
    backbone, combiner, _ = load_run(tmp_path / "b" / "runs" / "cirr-combiner")
    assert hasattr(combiner, "dynamic_scalar") and backbone.name == "cir-mini"
    assert "/a/" not in (tmp_path / "b" / "runs" / "cirr-combiner" / "config.json").read_text()
