"""CIRR runs keep the best checkpoint by each mean (as the original code), best.pt being the one the
recipe's `selection` names; `evaluate --run --best-by MEAN` evaluates the others."""

from __future__ import annotations

import json

import pytest
import torch

from cir_lib import runs
from cir_lib.errors import ConfigError
from cir_lib.rebuild import ZERO_SHOT, best_checkpoint_path, load_run
from cir_lib.recipes import get_recipe
from cir_lib.selection import SELECTION_CHOICES
from cir_lib.train_combiner import train_combiner


@pytest.fixture(scope="module")
def cirr_combiner_run(smoke_root, tmp_path_factory):
    from cir_lib.backbone import load_backbone, save_backbone_checkpoint

    folder = tmp_path_factory.mktemp("bests")
    torch.manual_seed(0)  # fixed random weights in a file, so that evaluation loads the same encoders
    weights = save_backbone_checkpoint(load_backbone("cir-mini", "none"), folder / "cir-mini-random.pt")
    out = folder / "cirr-combiner"
    config = get_recipe("smoke", stage="combiner", dataset="cirr", epochs=4, batch_size=32, pretrained=str(weights),
                        encode_batch_size=128, selection="harmonic", lr=1e-3)
    return out, train_combiner(smoke_root, config, ZERO_SHOT, out)


def _extra(path):
    return torch.load(path, map_location="cpu", weights_only=True)["extra"]


def test_a_cirr_run_keeps_one_best_checkpoint_per_mean(cirr_combiner_run):
    out, result = cirr_combiner_run
    history = runs.read_history(out).to_dict("records")
    for mean in SELECTION_CHOICES:
        path = out / runs.best_file(mean)
        scores = [row[f"score_{mean}"] for row in history]
        best_epoch = history[scores.index(max(scores))]["epoch"]  # the first epoch reaching the max
        extra = _extra(path)
        assert (extra["epoch"], extra["selection"]) == (best_epoch, mean)
        assert extra["score"] == pytest.approx(max(scores), abs=1e-6)
    # best.pt is the file of the selection's mean (a hard link where the file system allows)
    assert (out / runs.BEST_FILE).read_bytes() == (out / runs.best_file("harmonic")).read_bytes()
    assert result.best_epoch == _extra(out / runs.best_file("harmonic"))["epoch"]


def test_evaluate_best_by_names_the_checkpoint_of_each_mean(cirr_combiner_run, smoke_root, capsys):
    from cir_lib.cli import main

    out, _ = cirr_combiner_run
    history = {row["epoch"]: row for row in runs.read_history(out).to_dict("records")}
    for mean in SELECTION_CHOICES:
        capsys.readouterr()
        argv = ["evaluate", "--data-root", str(smoke_root), "--dataset", "cirr", "--json", "--run", str(out),
                "--best-by", mean]
        assert main(argv) == 0, capsys.readouterr().err
        got = json.loads(capsys.readouterr().out)["cirr"]
        row = history[_extra(out / runs.best_file(mean))["epoch"]]
        assert got["recall@1"] == pytest.approx(row["recall@1"], abs=1e-6)
        assert got["recall_subset@1"] == pytest.approx(row["recall_subset@1"], abs=1e-6)


def test_best_by_is_refused_without_a_cirr_run(cirr_combiner_run, smoke_root, tmp_path, capsys):
    from cir_lib.cli import main

    out, _ = cirr_combiner_run
    with pytest.raises(ConfigError, match="unknown checkpoint"):
        best_checkpoint_path(out, "median")
    (tmp_path / "fiq").mkdir()
    (tmp_path / "fiq" / runs.CONFIG_FILE).write_text(json.dumps({"kind": "combiner", "dataset": "fashioniq"}))
    with pytest.raises(ConfigError, match="only CIRR runs keep a best checkpoint per mean"):
        best_checkpoint_path(tmp_path / "fiq", "harmonic")
    argv = ["evaluate", "--data-root", str(smoke_root), "--dataset", "cirr", "--backbone", "cir-mini",
            "--pretrained", "none", "--best-by", "harmonic"]
    assert main(argv) == 1
    assert "--best-by names a checkpoint of a run folder" in capsys.readouterr().err
    _, combiner, _ = load_run(out, which="geometric")
    assert not combiner.training
