"""Reruns keep work: finished runs are reused, interrupted ones resumed, runs of other settings
refused by name (never deleted unasked), and `fresh` starts over only when asked."""

from __future__ import annotations

import re

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

    from cir_lib.rebuild import load_run

    runs = tmp_path / "a" / "runs"
    stage1 = notebook.train_or_reuse("finetune", smoke_root, _config(epochs=1), runs / "cirr-finetune")
    combiner_cfg = notebook.stage_config("smoke", "combiner", "cirr", epochs=1)
    notebook.train_or_reuse("combiner", smoke_root, combiner_cfg, runs / "cirr-combiner", clip_run=stage1.run_dir)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")  # the original is gone: the copy must not point at it
    backbone, combiner, _ = load_run(tmp_path / "b" / "runs" / "cirr-combiner")
    assert hasattr(combiner, "dynamic_scalar") and backbone.name == "cir-mini"
    assert "/a/" not in (tmp_path / "b" / "runs" / "cirr-combiner" / "config.json").read_text()


def _project(folder):
    """A checkout's skeleton: what `cir_lib.project` recognises as a project root."""
    (folder / "notebooks").mkdir(parents=True)
    (folder / "pyproject.toml").write_text('[project]\nname = "cir_lib"\n')
    return folder


def test_records_are_portable_a_project_at_another_path_writes_the_same_bytes(smoke_root, tmp_path, monkeypatch):
    import json
    import shutil

    from cir_lib.rebuild import load_run

    monkeypatch.delenv("CIR_LIB_PROJECT", raising=False)
    records = {}
    for name in ("a", "b"):  # the same series in two checkouts at different paths
        root = _project(tmp_path / name)
        shutil.copytree(smoke_root, root / "data" / "smoke")
        monkeypatch.chdir(root / "notebooks")  # where a notebook's kernel runs
        paths = result_paths(root / "results" / "smoke")
        data_root = root / "data" / "smoke"
        stage1 = notebook.train_or_reuse("finetune", data_root, _config(epochs=1, cache_dir=paths.cache),
                                         paths.run("cirr", "finetune"))
        combiner = notebook.stage_config("smoke", "combiner", "cirr", epochs=1, cache_dir=paths.cache)
        notebook.train_or_reuse("combiner", data_root, combiner, paths.run("cirr", "combiner"), clip_run=stage1.run_dir)
        meta = notebook.table_meta(paths, "cirr", profile="smoke", data_root=data_root)
        texts = {f.name: (paths.runs / f.name / "config.json").read_text() for f in paths.runs.iterdir()}
        texts["meta"] = json.dumps(meta, indent=2)
        assert not [k for k, t in texts.items() if str(tmp_path) in t], "an absolute path in a record"
        info = json.loads(texts["cirr-finetune"])
        assert (info["data_root"], info["config"]["cache_dir"]) == ("data/smoke", "results/smoke/cache")
        records[name] = {k: re.sub(r'"written": "[^"]*"', "", t) for k, t in texts.items()}
        load_run(paths.run("cirr", "combiner"))  # the relative records load back
    assert records["a"] == records["b"]

    # moved: the copy reuses its runs (the recorded data root is the copy's) and rewrites nothing
    shutil.copytree(tmp_path / "b", tmp_path / "c")
    shutil.rmtree(tmp_path / "b")
    monkeypatch.chdir(tmp_path / "c" / "notebooks")
    paths = result_paths(tmp_path / "c" / "results" / "smoke")
    before = {p: p.read_bytes() for p in paths.runs.rglob("*") if p.is_file()}
    again = notebook.train_or_reuse("finetune", tmp_path / "c" / "data" / "smoke",
                                    _config(epochs=1, cache_dir=paths.cache), paths.run("cirr", "finetune"))
    assert again.reused and notebook.run_summary({"cirr": again})["training"].tolist() == ["reused"]
    assert {p: p.read_bytes() for p in paths.runs.rglob("*") if p.is_file()} == before


def test_a_reused_run_written_with_absolute_paths_is_made_portable(smoke_root, tmp_path, monkeypatch):
    import json

    monkeypatch.delenv("CIR_LIB_PROJECT", raising=False)
    root = _project(tmp_path / "p")
    monkeypatch.chdir(root)
    run = root / "results" / "smoke" / "runs" / "cirr-finetune"
    notebook.train_or_reuse("finetune", smoke_root, _config(epochs=1, cache_dir=root / "cache"), run)
    info = json.loads((run / "config.json").read_text())
    assert info["config"]["cache_dir"] == "cache" and info["data_root"] == str(smoke_root.resolve())  # outside: as given
    info["config"]["cache_dir"] = str(root / "cache")  # as records were written before
    (run / "config.json").write_text(json.dumps(info, indent=2))
    assert notebook.train_or_reuse("finetune", smoke_root, _config(epochs=1, cache_dir=root / "cache"), run).reused
    assert json.loads((run / "config.json").read_text())["config"]["cache_dir"] == "cache"


def test_the_command_line_shares_the_policy_a_finished_run_is_reported_not_trained_again(smoke_root, tmp_path, capsys):
    from cir_lib.cli import main
    from cir_lib.run_policy import decide

    out = tmp_path / "cirr-finetune"
    argv = ["finetune", "--data-root", str(smoke_root), "--recipe", "smoke", "--dataset", "cirr", "--out", str(out)]
    assert decide("finetune", out, _config(epochs=1), smoke_root).action == "fresh"
    assert main(argv + ["--set", "epochs=1"]) == 0
    best = (out / "best.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv + ["--set", "finetune.epochs=1"]) == 0  # the same settings, by their dotted name
    said = capsys.readouterr().out
    assert "already finished" in said and str(out) in said and "nothing trained" in said
    assert (out / "best.pt").stat().st_mtime_ns == best
    assert decide("finetune", out, _config(epochs=2), smoke_root).action == "resume"  # more epochs: continued

    assert main(argv + ["--set", "epochs=1", "--set", "lr=3e-4"]) == 1  # other settings: refused, kept
    err = capsys.readouterr().err
    assert "other settings" in err and "lr: " in err and "nothing was deleted" in err and "--fresh" in err
    assert "fresh=True" not in err and (out / "best.pt").stat().st_mtime_ns == best
    assert decide("finetune", out, _config(epochs=1, lr=3e-4), smoke_root).action == "refuse"

    assert main(argv + ["--set", "epochs=1", "--set", "lr=3e-4", "--fresh"]) == 0  # asked: trained again
    assert "stage 1 done" in capsys.readouterr().out and (out / "best.pt").stat().st_mtime_ns != best
    assert decide("finetune", out, _config(epochs=1, lr=3e-4), smoke_root).action == "reuse"
