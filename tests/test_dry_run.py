"""The authors' dry run: the paper profile's five notebooks on a data root made from the real
annotation files (placeholder images for the capped subset) and a random RN50 in OpenAI's format,
without network; and the real paper profile refusing when images or weights are missing."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cir_lib import notebook
from cir_lib import reproduce as runner
from cir_lib.constants import COMPOSERS
from cir_lib.errors import PipelineError
from cir_lib.methods import stage2_methods
from cir_lib.tables import ALL_ROWS

from real_root import build_dry_run_root, shared_annotations, write_random_openai_rn50

pytestmark = pytest.mark.skipif(shared_annotations() is None,
                                reason="../shared/real_annotations is absent (set CIR_LIB_SHARED)")


@pytest.fixture(scope="module")
def real_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("real") / "data"
    return build_dry_run_root(root, notebook.DRY_RUN_QUERIES)


def test_the_paper_profile_refuses_missing_images_and_weights(real_root, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "openai_weights_location", lambda model: None)  # no weights cached
    monkeypatch.setattr(runner, "network_reachable", lambda *a, **k: False)  # and no network
    with pytest.raises(PipelineError) as err:
        runner.reproduce("paper", data_root=real_root, results_dir=tmp_path)
    message = str(err.value)
    assert "fashioniq images of the train and val splits" in message and "cirr images" in message
    assert "OpenAI's RN50 weights" in message and "OpenAI's RN50x4 weights" in message
    assert "--dry-run" in message and not (tmp_path / "paper").exists()
    with pytest.raises(PipelineError) as err:  # a dry run needs no more images, but still the weights
        runner.reproduce("paper", data_root=real_root, results_dir=tmp_path, dry_run=True,
                         parameters={"backbones": "RN50"})
    assert "OpenAI's RN50 weights" in str(err.value) and "images of the train" not in str(err.value)
    assert "RN50x4" not in str(err.value)  # only the chosen backbone


@pytest.mark.slow
@pytest.mark.notebooks
def test_the_paper_dry_run_goes_through_every_notebook(real_root, tmp_path):
    weights = write_random_openai_rn50(tmp_path / "RN50.pt")
    summary = runner.reproduce("paper", data_root=real_root, results_dir=tmp_path / "results", dry_run=True,
                               parameters={"backbones": "RN50", "pretrained": str(weights)}, log_output=False,
                               progress=False)
    out = tmp_path / "results" / "paper-dry-run"
    assert summary["results"] == out and list(summary["executed"]) == list(runner.NOTEBOOKS)
    stages = ["finetune"] + [m.run_stage for m in stage2_methods(COMPOSERS)]  # every composer, both encoders
    assert {"combiner", "combiner-zeroshot", "tirg", "tirg-zeroshot", "artemis", "artemis-zeroshot"} <= set(stages)
    for dataset in ("fashioniq", "cirr"):
        for stage in stages:
            run = out / "runs" / f"{dataset}-{stage}-rn50"
            history = pd.read_csv(run / "history.csv")
            assert list(history["epoch"]) == [1, 2] and (run / "best.pt").is_file()  # resumed for epoch 2
            assert json.loads((run / "config.json").read_text())["config"]["max_steps_per_epoch"] == notebook.DRY_RUN_STEPS
        table = pd.read_csv(out / "tables" / f"{dataset}.csv")
        ours = table[table["source"] == "this run"]
        assert set(ours["backbone"]) == {"RN50"} and {"cited", "published"} <= set(table["source"])
        assert set(ALL_ROWS) == set(ours["method"])  # the composer rows too, each with its interval
        assert ours[[c for c in table.columns if c.endswith("_ci_low")]].notna().all().all()
        differences = pd.read_csv(out / "tables" / f"{dataset}_differences.csv")["comparison"]
        assert any(c.endswith("stage 1 + Combiner - zero-shot + Combiner") for c in differences)
        assert any(c.endswith("stage 1 + Combiner - stage 1 + ARTEMIS") for c in differences)
        assert "DRY RUN" in (out / "tables" / f"{dataset}.md").read_text()
    files = sorted(p.name for p in (out / "submissions").iterdir())
    # recall + subset for the stage-1 sum and each stage-2 run (ARTEMIS ranked by its score matrix)
    assert len(files) == 2 * len(stages) and all("capped" in f for f in files)
    assert any("artemis-zeroshot" in f for f in files)
