"""The pieces of a dry run of the paper profile: capped splits over the real annotation files with
placeholder images, step caps, capped evaluation and capped CIRR submissions, on a random RN50 in
OpenAI's weight format (the real backbone's code path, no network)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from cir_lib.data import capped_image_files, load_split
from cir_lib.errors import ConfigError, ImageError
from cir_lib.recipes import EvalConfig, get_recipe, parse_overrides
from real_root import DRY_RUN_SPLITS, build_dry_run_root, shared_annotations, write_random_openai_rn50

CAP = 8
logger = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def dry_root(tmp_path_factory):
    if shared_annotations() is None:
        pytest.skip("real annotation files not found (../shared/real_annotations or $CIR_LIB_SHARED)")
    return build_dry_run_root(tmp_path_factory.mktemp("dry_root"), CAP)


@pytest.fixture(scope="module")
def rn50_file(tmp_path_factory):
    return write_random_openai_rn50(tmp_path_factory.mktemp("weights") / "RN50-random-openai.pt")


# ------------------------------------------------------------------------------------- capped loads


@pytest.mark.parametrize("dataset,split,category", DRY_RUN_SPLITS)
def test_capped_load_keeps_the_first_queries_and_only_their_images(dry_root, dataset, split, category):
    full = load_split(dry_root, dataset, split, category, check_files=False)
    capped = load_split(dry_root, dataset, split, category, max_queries=CAP)  # files checked: placeholders
    per_group = 3 if dataset == "fashioniq" and category is None else 1
    assert len(capped.queries) == CAP * per_group
    assert capped.capped == CAP and full.capped is None and "capped to 8 queries" in capped.label
    named = {n for q in capped.queries for n in (q.reference, q.target, *(q.members or ())) if n is not None}
    assert set(capped.image_names) == named
    if per_group == 1:
        assert capped.queries == full.queries[:CAP]  # file order
        assert capped.image_names == [n for n in full.image_names if n in named]  # split-file order
    else:  # pooled FashionIQ: each category capped, in category order
        parts = [load_split(dry_root, dataset, split, c, check_files=False) for c in ("dress", "shirt", "toptee")]
        assert capped.queries == [q for part in parts for q in part.queries[:CAP]]
    assert set(capped.image_paths) == set(capped_image_files(dry_root, dataset, split, category, CAP))
    assert len(capped.image_names) < len(full.image_names)
    capped.reference_indices  # every name resolves in the restricted index
    if capped.has_targets:
        capped.target_indices
    if dataset == "cirr":
        assert capped.member_indices.shape == (CAP, 6)


def test_only_the_listed_files_are_there(dry_root):
    with pytest.raises(ImageError, match="missing"):
        load_split(dry_root, "cirr", "val")  # the whole split: its other images are absent


def test_the_cap_applies_before_the_missing_file_check(dry_root):
    path = capped_image_files(dry_root, "fashioniq", "val", "dress", CAP)[0]
    moved = path.with_suffix(".bak")
    path.rename(moved)
    try:
        with pytest.raises(ImageError, match=path.stem):
            load_split(dry_root, "fashioniq", "val", "dress", max_queries=CAP)
        skipped = load_split(dry_root, "fashioniq", "val", "dress", max_queries=CAP, skip_missing=True)
        assert skipped.skipped.images == 1 and len(skipped.queries) < CAP
    finally:
        moved.rename(path)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_a_bad_cap_is_refused(dry_root, bad):
    with pytest.raises(ConfigError, match="max_queries"):
        load_split(dry_root, "cirr", "val", max_queries=bad)


# --------------------------------------------------------------------------------- configs and caps


def test_caps_round_trip_through_set_and_are_checked():
    overrides = parse_overrides(["max_steps_per_epoch=1", "max_queries=8"])
    for stage in ("finetune", "combiner"):
        cfg = get_recipe("paper-rn50-cirr", stage=stage, **overrides)
        assert (cfg.max_steps_per_epoch, cfg.max_queries) == (1, 8)
        assert get_recipe("paper-rn50-cirr", stage=stage, max_queries="none").max_queries is None
        defaults = get_recipe("paper-rn50-cirr", stage=stage)
        assert (defaults.max_steps_per_epoch, defaults.max_queries) == (None, None)
        with pytest.raises(ConfigError, match="max_steps_per_epoch"):
            get_recipe("paper-rn50-cirr", stage=stage, max_steps_per_epoch=0)
        with pytest.raises(ConfigError, match="max_queries"):
            get_recipe("paper-rn50-cirr", stage=stage, max_queries=1)
    assert EvalConfig().max_queries is None


@pytest.mark.parametrize("stage,encoders", [("finetune", "text"), ("finetune", "both"), ("combiner", None)])
def test_step_cap_stops_each_epoch_and_the_default_runs_every_batch(smoke_root, tmp_path, stage, encoders):
    from cir_lib.finetune import finetune
    from cir_lib.train_combiner import train_combiner

    def run(name, **overrides):
        if encoders is not None:
            overrides["encoders"] = encoders  # "both": images re-encoded through the DataLoader
        cfg = get_recipe("smoke", stage=stage, dataset="fashioniq", epochs=1, threads=1, **overrides)
        if stage == "finetune":
            return finetune(smoke_root, cfg, tmp_path / name)
        return train_combiner(smoke_root, cfg, "zero-shot", tmp_path / name)

    full, capped = run("full"), run("capped", max_steps_per_epoch=1)
    assert full.history[0]["steps"] > 1 and capped.history[0]["steps"] == 1
    again = run("again")  # the default (None) is an untouched run: same numbers
    assert again.history[0]["loss"] == full.history[0]["loss"]


# --------------------------------------------------------------------- the paper recipe, dry-run sized


def _dry(stage, rn50_file, cache, **more):
    settings = dict(epochs=1, max_steps_per_epoch=1, batch_size=4, max_queries=CAP, device="cpu",
                    encode_batch_size=8, threads=1, pretrained=str(rn50_file), cache_dir=str(cache))
    return get_recipe("paper-rn50-cirr", stage=stage, **{**settings, **more})


@pytest.fixture(scope="module")
def stage1_run(dry_root, rn50_file, tmp_path_factory):
    from cir_lib.finetune import finetune

    out = tmp_path_factory.mktemp("runs")
    t0 = time.perf_counter()
    result = finetune(dry_root, _dry("finetune", rn50_file, out / "cache"), out / "cirr-finetune")
    logger.warning("dry-run stage 1 (RN50, 1 step, %d queries): %.1f s", CAP, time.perf_counter() - t0)
    return result


@pytest.mark.slow
def test_finetune_dry_run_writes_best_and_resumes(stage1_run, dry_root, rn50_file):
    from cir_lib.finetune import finetune
    from cir_lib.rebuild import run_config

    run_dir = stage1_run.run_dir
    assert (run_dir / "best.pt").is_file() and (run_dir / "last.pt").is_file()
    assert [row["steps"] for row in stage1_run.history] == [1]
    cfg = run_config(run_dir)
    assert (cfg.max_steps_per_epoch, cfg.max_queries) == (1, CAP)  # config.json round trip
    t0 = time.perf_counter()
    resumed = finetune(dry_root, _dry("finetune", rn50_file, run_dir.parent / "cache", epochs=2), run_dir,
                       resume=True)
    logger.warning("dry-run stage 1 resume (epoch 2): %.1f s", time.perf_counter() - t0)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert [row["steps"] for row in resumed.history] == [1, 1]
    with pytest.raises(ConfigError, match="max_queries"):  # a resume with another cap is refused
        finetune(dry_root, _dry("finetune", rn50_file, run_dir.parent / "cache", epochs=3, max_queries=4),
                 run_dir, resume=True)


@pytest.fixture(scope="module")
def combiner_run(stage1_run, dry_root, rn50_file):
    from cir_lib.train_combiner import train_combiner

    out = stage1_run.run_dir.parent
    t0 = time.perf_counter()
    result = train_combiner(dry_root, _dry("combiner", rn50_file, out / "cache"), stage1_run.run_dir,
                            out / "cirr-combiner")
    logger.warning("dry-run Combiner: %.1f s", time.perf_counter() - t0)
    return result


@pytest.mark.slow
def test_combiner_dry_run_writes_best(combiner_run):
    assert (combiner_run.run_dir / "best.pt").is_file()
    assert [row["steps"] for row in combiner_run.history] == [1]


@pytest.mark.slow
def test_capped_evaluation_and_submission(combiner_run, dry_root, tmp_path):
    from cir_lib.evaluate import evaluate_cirr, format_table
    from cir_lib.rebuild import load_run
    from cir_lib.submit import validate_cirr_submission, write_cirr_submission

    backbone, combiner, _ = load_run(combiner_run.run_dir)
    config = EvalConfig(max_queries=CAP, batch_size=8, text_batch_size=8, device="cpu",
                        cache_dir=str(combiner_run.run_dir.parent / "cache"))
    t0 = time.perf_counter()
    metrics = evaluate_cirr(dry_root, backbone, combiner, config)
    logger.warning("dry-run CIRR val evaluation: %.1f s", time.perf_counter() - t0)
    assert metrics["capped"] == CAP and 0 <= metrics["recall@1"] <= 100
    assert "capped to the first 8 queries" in format_table("cirr", metrics)

    t0 = time.perf_counter()
    test_config = EvalConfig(split="test1", max_queries=CAP, batch_size=8, text_batch_size=8, device="cpu")
    recall, subset = write_cirr_submission(dry_root, backbone, combiner, tmp_path, test_config)
    logger.warning("dry-run CIRR test1 submission: %.1f s", time.perf_counter() - t0)
    assert "capped8" in recall.name and "capped8" in subset.name
    written = json.loads(recall.read_text())
    test1 = load_split(dry_root, "cirr", "test1", max_queries=CAP)
    assert sorted(k for k in written if k not in ("version", "metric")) == sorted(str(q.pairid) for q in test1.queries)
    assert all(len(written[str(q.pairid)]) == min(50, len(test1.image_names) - 1) for q in test1.queries)
    assert validate_cirr_submission(recall, subset, dry_root, max_queries=CAP) == []
    problems = validate_cirr_submission(recall, subset, dry_root)  # the server's view: the whole test1
    assert any("pairid(s) missing" in p for p in problems)


@pytest.mark.slow
def test_capped_fashioniq_evaluation_on_the_openai_format_file(dry_root, rn50_file):
    from cir_lib.backbone import load_backbone
    from cir_lib.composers import ElementwiseSum
    from cir_lib.evaluate import evaluate_fashioniq

    backbone = load_backbone("RN50", str(rn50_file))
    assert backbone.open_clip_config["quick_gelu"] is True  # recognised as OpenAI's format
    t0 = time.perf_counter()
    metrics = evaluate_fashioniq(dry_root, backbone, ElementwiseSum(backbone.embed_dim),
                                 EvalConfig(max_queries=CAP, batch_size=8, text_batch_size=8, device="cpu"))
    logger.warning("dry-run FashionIQ val evaluation (3 categories): %.1f s", time.perf_counter() - t0)
    assert metrics["capped"] == CAP and set(metrics) >= {"dress", "shirt", "toptee", "average"}


@pytest.mark.slow
def test_fashioniq_dry_run_both_encoders(dry_root, rn50_file, tmp_path):
    # The journal's code path (images re-encoded at each step) on the pooled, capped FashionIQ train.
    from cir_lib.finetune import finetune

    cfg = get_recipe("paper-rn50-fashioniq", encoders="both", epochs=1, max_steps_per_epoch=1, batch_size=4,
                     max_queries=CAP, device="cpu", encode_batch_size=8, threads=1, pretrained=str(rn50_file))
    t0 = time.perf_counter()
    result = finetune(dry_root, cfg, tmp_path / "fashioniq-finetune")
    logger.warning("dry-run stage 1 FashionIQ, both encoders: %.1f s", time.perf_counter() - t0)
    assert (result.run_dir / "best.pt").is_file() and [r["steps"] for r in result.history] == [1]
    assert {"dress_recall@10", "average_recall@50"} <= set(result.best_metrics)
