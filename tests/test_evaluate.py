"""Evaluation on the smoke mini benchmark: keys, ranges, the protocol's plumbing (reference features
from the index, "C1 and c2" captions, composer in eval mode), skip reports, rankings and the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from cir_lib import evaluate
from cir_lib.composers import Combiner, ElementwiseSum
from cir_lib.constants import FASHIONIQ_DIR
from cir_lib.data import load_split
from cir_lib.recipes import EvalConfig
from cir_lib.errors import ConfigError, ImageError
from cir_lib.metrics import cirr_recall, fashioniq_recall
from cir_lib.transform import PreprocessConfig

CIRR_KEYS = ["recall@1", "recall@5", "recall@10", "recall@50",
             "recall_subset@1", "recall_subset@2", "recall_subset@3"]


@pytest.fixture(scope="module")
def backbone():
    from cir_lib.backbone import load_backbone

    torch.manual_seed(0)
    return load_backbone("cir-mini", "none")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("feature_cache")


def _in_range(metrics: dict) -> bool:
    return all(isinstance(v, float) and 0.0 <= v <= 100.0 for v in metrics.values())


def test_evaluate_fashioniq_keys_and_ranges(smoke_root, backbone, cache):
    result = evaluate.evaluate_fashioniq(smoke_root, backbone, ElementwiseSum(backbone.embed_dim),
                                         EvalConfig(cache_dir=cache),
                                         preprocess=PreprocessConfig("targetpad", image_size=backbone.image_size))
    assert list(result) == ["dress", "shirt", "toptee", "average"]
    for key in result:
        assert list(result[key]) == ["recall@10", "recall@50"] and _in_range(result[key])
        assert result[key]["recall@10"] <= result[key]["recall@50"]
    for k in ("recall@10", "recall@50"):
        assert result["average"][k] == pytest.approx(sum(result[c][k] for c in ("dress", "shirt", "toptee")) / 3)


def test_evaluate_cirr_keys_and_ranges(smoke_root, backbone, cache):
    result = evaluate.evaluate_cirr(smoke_root, backbone, ElementwiseSum(backbone.embed_dim), EvalConfig(cache_dir=cache))
    assert list(result) == CIRR_KEYS and _in_range(result)


def test_evaluation_follows_the_protocol(smoke_root, backbone, cache):
    """Same numbers as a hand-made pipeline: reference rows of the index, raw JSON captions joined
    as "C1 and c2", normalize(image + text), then the metrics."""
    from cir_lib.features import image_features, text_features

    preprocess = PreprocessConfig("targetpad", image_size=backbone.image_size)
    dress = load_split(smoke_root, "fashioniq", "val", "dress")
    raw = json.loads((smoke_root / FASHIONIQ_DIR / "captions" / "cap.dress.val.json").read_text())
    captions = [f"{e['captions'][0].strip('.?, ').capitalize()} and {e['captions'][1].strip('.?, ')}" for e in raw]
    index = image_features(backbone, dress, preprocess, cache_dir=cache)
    query = F.normalize(index[dress.reference_indices] + text_features(backbone, captions), dim=-1)
    want = fashioniq_recall(query, index, dress.target_indices)
    got = evaluate.evaluate_fashioniq(smoke_root, backbone, ElementwiseSum(), EvalConfig(cache_dir=cache),
                                      preprocess=preprocess, categories=["dress"])
    assert got["dress"] == want and got["average"] == want

    cirr = load_split(smoke_root, "cirr", "val")
    index = image_features(backbone, cirr, preprocess, cache_dir=cache)
    query = F.normalize(index[cirr.reference_indices] + text_features(backbone, [q.captions[0] for q in cirr.queries]), dim=-1)
    want = cirr_recall(query, index, cirr.reference_indices, cirr.target_indices, cirr.member_indices)
    assert evaluate.evaluate_cirr(smoke_root, backbone, ElementwiseSum(), EvalConfig(cache_dir=cache), preprocess=preprocess) == want


def test_combiner_runs_in_eval_mode_and_its_mode_is_restored(smoke_root, backbone, cache):
    torch.manual_seed(1)
    combiner = Combiner(backbone.embed_dim, proj_dim=32, hidden_dim=64)
    combiner.train()
    first = evaluate.evaluate_cirr(smoke_root, backbone, combiner, EvalConfig(cache_dir=cache))
    second = evaluate.evaluate_cirr(smoke_root, backbone, combiner, EvalConfig(cache_dir=cache))
    assert first == second  # dropout (p = 0.5) off: deterministic
    assert combiner.training
    split = load_split(smoke_root, "cirr", "val")
    encoded = evaluate.encode_split(split, backbone, combiner, EvalConfig(cache_dir=cache))
    assert encoded.lambdas is not None and encoded.lambdas.shape == (len(split.queries),)
    assert ((encoded.lambdas > 0) & (encoded.lambdas < 1)).all()
    assert torch.allclose(encoded.query_features.norm(dim=-1), torch.ones(len(split.queries)), atol=1e-5)
    assert torch.equal(encoded.reference_features, encoded.index_features[split.reference_indices])


def test_skip_missing_is_reported(smoke_root, backbone, cache, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(smoke_root / FASHIONIQ_DIR, root / FASHIONIQ_DIR)
    dress = load_split(root, "fashioniq", "val", "dress")
    gone = dress.queries[0].target
    (root / FASHIONIQ_DIR / "images" / f"{gone}.jpg").unlink()
    with pytest.raises(ImageError, match="skip"):
        evaluate.evaluate_fashioniq(root, backbone, ElementwiseSum(), EvalConfig(cache_dir=cache), categories=["dress"])
    result = evaluate.evaluate_fashioniq(root, backbone, ElementwiseSum(),
                                         EvalConfig(cache_dir=cache, skip_missing=True), categories=["dress"])
    assert result["skipped"]["images"] == 1 and result["skipped"]["queries"] >= 1
    assert _in_range(result["dress"])
    assert "skipped" in evaluate.format_table("fashioniq", result)


def test_predict_rankings(smoke_root, backbone, cache):
    for split in (load_split(smoke_root, "cirr", "val"), load_split(smoke_root, "fashioniq", "val", "shirt")):
        encoded = evaluate.encode_split(split, backbone, ElementwiseSum(), EvalConfig(cache_dir=cache))
        top = evaluate.predict(split, encoded.index_features, encoded.query_features, k=5)
        assert top.shape == (len(split.queries), 5)
        refs = split.reference_indices
        if split.dataset == "cirr":
            assert not (top == refs[:, None]).any()
        else:  # FashionIQ keeps the reference; with the sum it is usually ranked near the top
            assert (top == refs[:, None]).any()
        with pytest.raises(ConfigError):
            evaluate.predict(split, encoded.index_features[:-1], encoded.query_features)


def test_bad_requests(smoke_root, backbone):
    with pytest.raises(ConfigError, match="submit-cirr"):
        evaluate.evaluate_cirr(smoke_root, backbone, ElementwiseSum(), EvalConfig(split="test1"))
    with pytest.raises(ConfigError, match="categories"):
        evaluate.evaluate_fashioniq(smoke_root, backbone, ElementwiseSum(), categories=["skirt"])


def test_cli_json_and_table(smoke_root, tmp_path, capsys):
    from cir_lib.cli import main

    args = ["evaluate", "--data-root", str(smoke_root), "--backbone", "cir-mini", "--pretrained", "none",
            "--cache-dir", str(tmp_path)]
    assert main(args + ["--dataset", "cirr", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["cirr"] and list(out["cirr"]) == CIRR_KEYS
    assert main(args + ["--dataset", "fashioniq"]) == 0
    text = capsys.readouterr().out
    assert "average" in text and "recall@50" in text
    assert main(["evaluate", "--data-root", str(smoke_root), "--dataset", "cirr", "--backbone", "cir-mini"]) == 1
    assert "--pretrained" in capsys.readouterr().err
