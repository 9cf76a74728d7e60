"""The CIRR test-server files: written for the REAL test1 annotations (placeholder images, random-init
cir-mini), accepted by the validator, and broken copies rejected."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cir_lib.constants import CIRR_DIR
from cir_lib.data import load_split
from cir_lib.recipes import EvalConfig
from cir_lib.errors import SubmissionError
from cir_lib.submit import (
    RECALL_K,
    SUBSET_K,
    rank_cirr_split,
    submission_dicts,
    validate_cirr_submission,
    write_cirr_submission,
)


@pytest.fixture(scope="module")
def test1_root(real_annotations, tmp_path_factory) -> Path:
    """A data root with the real test1 annotation files (linked, not copied) and an 8x8 PNG at
    every path the split file names (random pixels, a few of them identical to make exact ties)."""
    root = tmp_path_factory.mktemp("cirr_test1")
    ann = root / CIRR_DIR / "cirr"
    for sub, name in (("captions", "cap.rc2.test1.json"), ("image_splits", "split.rc2.test1.json")):
        (ann / sub).mkdir(parents=True, exist_ok=True)
        os.symlink(real_annotations / "cirr" / sub / name, ann / sub / name)
    split_file = json.loads((real_annotations / "cirr" / "image_splits" / "split.rc2.test1.json").read_text())
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (len(split_file), 8, 8, 3), dtype=np.uint8)
    pixels[1::50] = pixels[0]  # duplicates: identical features, exact similarity ties
    for i, rel in enumerate(split_file.values()):
        path = root / CIRR_DIR / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[i]).save(path, compress_level=0)
    return root


@pytest.fixture(scope="module")
def written(test1_root, tmp_path_factory):
    """The two files written by write_cirr_submission with the random-init cir-mini."""
    from cir_lib.backbone import load_backbone
    from cir_lib.composers import ElementwiseSum

    backbone = load_backbone("cir-mini", "none")
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("submission")
    recall, subset = write_cirr_submission(test1_root, backbone, ElementwiseSum(backbone.embed_dim), out,
                                           EvalConfig(split="test1", batch_size=256), tag="mini")
    return recall, subset


def test_submission_on_real_test1_is_valid(written, test1_root, real_annotations):
    recall_path, subset_path = written
    assert recall_path.name == "recall_submission_mini.json"
    assert subset_path.name == "recall_subset_submission_mini.json"
    assert validate_cirr_submission(recall_path, subset_path, test1_root) == []
    # independent checks straight from the real annotation files
    captions = json.loads((real_annotations / "cirr" / "captions" / "cap.rc2.test1.json").read_text())
    index = set(json.loads((real_annotations / "cirr" / "image_splits" / "split.rc2.test1.json").read_text()))
    recall = json.loads(recall_path.read_text())
    subset = json.loads(subset_path.read_text())
    assert len(captions) == 4148
    assert (recall.pop("version"), recall.pop("metric")) == ("rc2", "recall")
    assert (subset.pop("version"), subset.pop("metric")) == ("rc2", "recall_subset")
    assert set(recall) == set(subset) == {str(c["pairid"]) for c in captions}
    for c in captions:
        top, sub = recall[str(c["pairid"])], subset[str(c["pairid"])]
        assert len(top) == 50 and len(set(top)) == 50 and set(top) <= index
        assert len(sub) == 3 and len(set(sub)) == 3 and set(sub) <= set(c["img_set"]["members"])
        assert c["reference"] not in top and c["reference"] not in sub
    assert recall_path.stat().st_size < 5 * 2**20 and subset_path.stat().st_size < 5 * 2**20


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_validator_rejects_broken_files(written, test1_root, tmp_path):
    recall_path, subset_path = written
    recall = json.loads(recall_path.read_text())
    subset = json.loads(subset_path.read_text())
    split = load_split(test1_root, "cirr", "test1", check_files=False)
    q0, q1 = split.queries[0], split.queries[1]
    p0, p1 = str(q0.pairid), str(q1.pairid)

    def problems(r=None, s=None):
        rp = recall_path if r is None else _write(tmp_path / "r.json", r)
        sp = subset_path if s is None else _write(tmp_path / "s.json", s)
        return validate_cirr_submission(rp, sp, None, loaded=split)

    assert problems() == []
    missing = dict(recall)
    del missing[p0]
    assert any("1 pairid(s) missing" in p and p0 in p for p in problems(r=missing))
    assert any("not pairids" in p for p in problems(s={**subset, "999999": subset[p0]}))
    assert any("'rc2'" in p for p in problems(r={**recall, "version": "rc1"}))
    assert any("'recall_subset'" in p for p in problems(s={**subset, "metric": "recall"}))
    with_ref = {**recall, p0: [q0.reference] + recall[p0][:49]}
    assert any("reference" in p and p0 in p for p in problems(r=with_ref))
    assert any("exactly 50" in p for p in problems(r={**recall, p1: recall[p1][:49]}))
    assert any("exactly 3" in p for p in problems(s={**subset, p1: subset[p1][:2]}))
    assert any("repeated" in p for p in problems(r={**recall, p1: recall[p1][:49] + recall[p1][:1]}))
    sub_ref = {**subset, p0: [q0.reference] + subset[p0][:2]}
    assert any("reference" in p for p in problems(s=sub_ref))
    outsider = next(n for n in split.image_names if n not in q1.members)
    assert any("img_set" in p for p in problems(s={**subset, p1: [outsider] + subset[p1][:2]}))
    assert any("not in the split's index" in p for p in problems(r={**recall, p1: ["nope"] + recall[p1][:49]}))
    # too big, not JSON, not there
    big = tmp_path / "big.json"
    big.write_text(json.dumps(recall) + " " * (5 * 2**20))
    assert any("5 MB" in p for p in validate_cirr_submission(big, subset_path, None, loaded=split))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert any("not valid JSON" in p for p in validate_cirr_submission(bad, subset_path, None, loaded=split))
    assert any("not found" in p for p in validate_cirr_submission(tmp_path / "x.json", subset_path, test1_root))


def test_rankings_to_dicts_without_a_model(test1_root):
    """The pure path: features in, server dicts out; reference removed, tie order by position."""
    split = load_split(test1_root, "cirr", "test1", check_files=False)
    gen = torch.Generator().manual_seed(0)
    index = torch.randn(len(split.image_names), 16, generator=gen)
    queries = index[split.reference_indices].clone()  # the reference is the best match: must be dropped
    top, subset = rank_cirr_split(split, index, queries)
    assert top.shape == (len(split.queries), RECALL_K) and subset.shape == (len(split.queries), SUBSET_K)
    assert not (top == split.reference_indices[:, None]).any()
    recall, recall_subset = submission_dicts(split, top, subset)
    q = split.queries[0]
    sims = torch.nn.functional.normalize(index, dim=-1) @ torch.nn.functional.normalize(queries[0], dim=-1)
    order = [j for j in sorted(range(len(sims)), key=lambda j: (-float(sims[j]), j)) if j != int(split.reference_indices[0])]
    assert recall[str(q.pairid)] == [split.image_names[j] for j in order[:RECALL_K]]
    members = sorted((split.name_to_index[m] for m in q.members if m != q.reference), key=lambda j: (-float(sims[j]), j))
    assert recall_subset[str(q.pairid)] == [split.image_names[j] for j in members[:SUBSET_K]]


def test_submit_cli_and_validate_cli(test1_root, tmp_path, capsys, monkeypatch):
    """submit-cirr end to end through the CLI entry point, on a 40-query slice of test1 to stay fast."""
    from cir_lib.cli import main

    small = tmp_path / "root"
    ann = small / CIRR_DIR / "cirr"
    (ann / "captions").mkdir(parents=True)
    (ann / "image_splits").mkdir(parents=True)
    captions = json.loads((test1_root / CIRR_DIR / "cirr" / "captions" / "cap.rc2.test1.json").read_text())[:40]
    split_file = json.loads((test1_root / CIRR_DIR / "cirr" / "image_splits" / "split.rc2.test1.json").read_text())
    used = {n for c in captions for n in [c["reference"], *c["img_set"]["members"]]}
    extra = [n for n in split_file if n not in used][:60]
    keep = {n: split_file[n] for n in split_file if n in used or n in extra}
    (ann / "captions" / "cap.rc2.test1.json").write_text(json.dumps(captions))
    (ann / "image_splits" / "split.rc2.test1.json").write_text(json.dumps(keep))
    for rel in keep.values():
        (small / CIRR_DIR / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(test1_root / CIRR_DIR / rel, small / CIRR_DIR / rel)
    out = tmp_path / "out"
    code = main(["submit-cirr", "--data-root", str(small), "--backbone", "cir-mini", "--pretrained", "none",
                 "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "validated" in text
    recall, subset = out / "recall_submission_cir-mini-none.json", out / "recall_subset_submission_cir-mini-none.json"
    assert recall.is_file() and subset.is_file()
    assert main(["validate-cirr", "--data-root", str(small), str(recall), str(subset)]) == 0
    broken = tmp_path / "broken.json"
    content = json.loads(recall.read_text())
    content["version"] = "rc1"
    broken.write_text(json.dumps(content))
    assert main(["validate-cirr", "--data-root", str(small), str(broken), str(subset)]) == 1
    assert "'rc2'" in capsys.readouterr().err
    # a submission that fails validation is never reported as a success
    import cir_lib.submit as submit

    monkeypatch.setattr(submit, "validate_cirr_submission", lambda *a, **k: ["broken on purpose"])
    assert main(["submit-cirr", "--data-root", str(small), "--backbone", "cir-mini", "--pretrained", "none",
                 "--out", str(out)]) == 1
    assert "broken on purpose" in capsys.readouterr().err


def test_write_refuses_missing_images(test1_root, tmp_path):
    from cir_lib.errors import ImageError

    empty = tmp_path / "root"
    ann = empty / CIRR_DIR / "cirr"
    for sub, name in (("captions", "cap.rc2.test1.json"), ("image_splits", "split.rc2.test1.json")):
        (ann / sub).mkdir(parents=True)
        os.symlink(test1_root / CIRR_DIR / "cirr" / sub / name, ann / sub / name)
    with pytest.raises(ImageError):
        write_cirr_submission(empty, None, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert issubclass(SubmissionError, Exception)
