"""`cir-lib check-data`: counts on the real annotation files, hand-built trees with every kind of
damage, and the smoke mini benchmark (clean, then damaged copies)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cir_lib.check import check_data, format_report
from cir_lib.images import verify_image
from cir_lib.cli import main


def run_cli(capsys, *args) -> tuple:
    rc = main(["check-data", *map(str, args)])
    return rc, capsys.readouterr().out


# ------------------------------------------------------------------------------ real annotations




def test_real_annotations_json_counts_and_nonzero_exit(real_root, capsys):
    rc, out = run_cli(capsys, "--data-root", real_root, "--json")
    assert rc == 1
    report = json.loads(out)
    assert set(report) == {"fashioniq", "cirr", "problems", "warnings"}
    # the real files hold a few empty captions: named as warnings (used as the official code uses them)
    assert any("cap.toptee.train.json: 12 entries have an empty caption" in w for w in report["warnings"])
    val = report["fashioniq"]["val"]
    assert val == {
        "dress": {"queries": 2017, "images": 3817, "missing_images": 3817, "unreadable_images": 0},
        "shirt": {"queries": 2038, "images": 6346, "missing_images": 6346, "unreadable_images": 0},
        "toptee": {"queries": 1961, "images": 5373, "missing_images": 5373, "unreadable_images": 0},
    }
    assert set(report["fashioniq"]) == {"train", "val", "test"}
    assert report["cirr"]["val"] == {"queries": 4181, "images": 2297, "missing_images": 2297, "unreadable_images": 0}
    assert report["cirr"]["test1"] == {"queries": 4148, "images": 2315, "missing_images": 2315, "unreadable_images": 0}
    problems = report["problems"]
    # no annotation problem in the real files: the only problems are the absent images (one short
    # line per split) and the CIRR train captions file, which is not shipped
    assert any("cap.rc2.train.json is missing" in p for p in problems)
    missing_lines = [p for p in problems if "index images missing" in p]
    assert len(missing_lines) == 9 + 3
    assert len(problems) == 13
    assert all(len(p) < 400 for p in problems)
    assert any(p.startswith("cirr val: 2297 of 2297 index images missing") for p in problems)


def test_real_annotations_one_dataset(real_root, capsys):
    rc, out = run_cli(capsys, "--data-root", real_root, "--dataset", "cirr", "--json")
    report = json.loads(out)
    assert rc == 1 and set(report) == {"cirr", "problems", "warnings"}
    rc, out = run_cli(capsys, "--data-root", real_root, "--dataset", "cirr")
    assert "cirr     val    -            4181    2297     2297" in out
    assert "problem(s):" in out


# ----------------------------------------------------------------------------- hand-built trees


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def save_image(path: Path, size=(40, 56)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 160, 30)).save(path)


def build_tree(root: Path) -> Path:
    """Every FashionIQ category and split, and every CIRR split: 6 images per category and 8 per CIRR
    split, all present and readable (val holds two queries each; train and test one)."""
    for cat in ("dress", "shirt", "toptee"):
        names = [f"{cat}{i}" for i in range(6)]
        for split in ("train", "val", "test"):
            write_json(root / f"fashionIQ_dataset/image_splits/split.{cat}.{split}.json", names)
        write_json(root / f"fashionIQ_dataset/captions/cap.{cat}.val.json", [
            {"candidate": names[0], "target": names[1], "captions": ["a", "b"]},
            {"candidate": names[2], "target": names[3], "captions": ["c", "d"]},
        ])
        write_json(root / f"fashionIQ_dataset/captions/cap.{cat}.train.json", [
            {"candidate": names[4], "target": names[5], "captions": ["e", "f"]}])
        write_json(root / f"fashionIQ_dataset/captions/cap.{cat}.test.json", [
            {"candidate": names[1], "captions": ["g", "h"]}])
        for n in names:
            save_image(root / f"fashionIQ_dataset/images/{n}.jpg")
    names = [f"dev-{i}-0-img0" for i in range(8)]
    write_json(root / "cirr_dataset/cirr/image_splits/split.rc2.val.json", {n: f"./dev/{n}.png" for n in names})
    write_json(root / "cirr_dataset/cirr/captions/cap.rc2.val.json", [
        {"pairid": 1, "reference": names[0], "target_hard": names[1], "caption": "x",
         "img_set": {"id": 0, "members": names[:6]}},
        {"pairid": 2, "reference": names[6], "target_hard": names[7], "caption": "y",
         "img_set": {"id": 1, "members": names[2:]}},
    ])
    for n in names:
        save_image(root / f"cirr_dataset/dev/{n}.png")
    for split, folder in (("train", "train/0"), ("test1", "test1")):
        names = [f"{split}-{i}-0-img0" for i in range(8)]
        write_json(root / f"cirr_dataset/cirr/image_splits/split.rc2.{split}.json",
                   {n: f"./{folder}/{n}.png" for n in names})
        entry = {"pairid": 1, "reference": names[0], "caption": "z", "img_set": {"id": 0, "members": names[:6]}}
        if split == "train":
            entry["target_hard"] = names[1]
        write_json(root / f"cirr_dataset/cirr/captions/cap.rc2.{split}.json", [entry])
        for n in names:
            save_image(root / f"cirr_dataset/{folder}/{n}.png")
    return root


def test_clean_tree_exits_zero(tmp_path, capsys):
    build_tree(tmp_path)
    rc, out = run_cli(capsys, "--data-root", tmp_path, "--json")
    report = json.loads(out)
    assert rc == 0 and report["problems"] == []
    assert report["fashioniq"]["val"] == {
        cat: {"queries": 2, "images": 6, "missing_images": 0, "unreadable_images": 0}
        for cat in ("dress", "shirt", "toptee")}
    assert set(report["fashioniq"]) == {"train", "val", "test"} and set(report["cirr"]) == {"train", "val", "test1"}
    assert report["cirr"]["val"] == {"queries": 2, "images": 8, "missing_images": 0, "unreadable_images": 0}
    rc, out = run_cli(capsys, "--data-root", tmp_path)
    assert rc == 0 and "clean" in out and "fashioniq  val    shirt" in out


def test_damaged_images_are_each_named(tmp_path, capsys):
    build_tree(tmp_path)
    (tmp_path / "fashionIQ_dataset/images/dress3.jpg").unlink()
    truncated = tmp_path / "cirr_dataset/dev/dev-4-0-img0.png"
    truncated.write_bytes(truncated.read_bytes()[:60])
    not_image = tmp_path / "fashionIQ_dataset/images/shirt5.jpg"
    not_image.write_text("<html>404</html>")
    rc, out = run_cli(capsys, "--data-root", tmp_path, "--json")
    report = json.loads(out)
    assert rc == 1
    assert report["fashioniq"]["val"]["dress"]["missing_images"] == 1  # absent and unreadable apart
    assert report["fashioniq"]["val"]["shirt"]["unreadable_images"] == 1
    assert report["cirr"]["val"]["unreadable_images"] == 1
    assert report["cirr"]["val"]["missing_images"] == report["fashioniq"]["val"]["shirt"]["missing_images"] == 0
    problems = "\n".join(report["problems"])
    assert "fashioniq dress val: 1 of 6 index images missing: fashionIQ_dataset/images/dress3.jpg" in problems
    assert "cirr val: unreadable image cirr_dataset/dev/dev-4-0-img0.png" in problems
    assert "fashioniq shirt val: unreadable image fashionIQ_dataset/images/shirt5.jpg" in problems
    # one line per split that names them (FashionIQ's splits of a category share its images here)
    assert len([p for p in report["problems"] if " val: " in p]) == 3
    assert len(report["problems"]) == 3 + 2 + 2


def test_truncated_jpeg_is_unreadable(tmp_path):
    path = tmp_path / "x.jpg"
    save_image(path, size=(128, 128))
    assert verify_image(path) is None
    path.write_bytes(path.read_bytes()[:-200])
    assert verify_image(path) is not None and verify_image(path) != "missing"
    assert verify_image(tmp_path / "nope.jpg") == "missing"


def test_no_verify_only_checks_existence(tmp_path):
    build_tree(tmp_path)
    bad = tmp_path / "cirr_dataset/dev/dev-4-0-img0.png"
    bad.write_bytes(b"junk")
    report = check_data(tmp_path, ["cirr"], verify_images=False, progress=False)
    assert report["problems"] == [] and report["cirr"]["val"]["missing_images"] == 0
    report = check_data(tmp_path, ["cirr"], verify_images=True, progress=False)
    assert report["cirr"]["val"]["unreadable_images"] == 1


def test_missing_images_listing_is_capped_but_counts_exact(tmp_path):
    names = [f"n{i:03d}" for i in range(60)]
    write_json(tmp_path / "fashionIQ_dataset/image_splits/split.toptee.val.json", names)
    write_json(tmp_path / "fashionIQ_dataset/captions/cap.toptee.val.json",
               [{"candidate": "n000", "target": "n001", "captions": ["a", "b"]}])
    for n in names[:10]:
        save_image(tmp_path / f"fashionIQ_dataset/images/{n}.jpg", size=(8, 8))
    report = check_data(tmp_path, ["fashioniq"], progress=False)
    assert report["fashioniq"]["val"]["toptee"] == {"queries": 1, "images": 60, "missing_images": 50, "unreadable_images": 0}
    (line,) = [p for p in report["problems"] if "index images missing" in p]
    assert line.startswith("fashioniq toptee val: 50 of 60 index images missing: ")
    assert "fashionIQ_dataset/images/n010.jpg" in line and "n029.jpg" in line and "n030.jpg" not in line
    assert line.endswith("... and 30 more")


def test_all_annotation_problems_collected(tmp_path):
    build_tree(tmp_path)
    cap = tmp_path / "cirr_dataset/cirr/captions/cap.rc2.val.json"
    entries = json.loads(cap.read_text())
    entries[1]["pairid"] = 1  # duplicate pairid
    entries.append({"pairid": 3, "reference": "dev-0-0-img0", "target_hard": "dev-1-0-img0", "caption": "z",
                    "img_set": {"id": 2, "members": [f"dev-{i}-0-img0" for i in range(1, 7)]}})  # no reference
    write_json(cap, entries)
    fiq = tmp_path / "fashionIQ_dataset/captions/cap.shirt.val.json"
    write_json(fiq, [{"candidate": "shirt0", "target": "ghost", "captions": ["a", "b"]}, {"candidate": "shirt1"}])
    (tmp_path / "fashionIQ_dataset/captions/cap.dress.val.json").write_text("{not json")
    report = check_data(tmp_path, progress=False)
    problems = report["problems"]
    assert len(problems) == 5
    joined = "\n".join(problems)
    assert "cap.dress.val.json: malformed JSON at line 1" in joined
    assert "cap.shirt.val.json entry 0 (candidate 'shirt0'): target 'ghost' is not in" in joined
    assert "cap.shirt.val.json entry 1 (candidate 'shirt1'): missing key(s) target, captions" in joined
    assert "cap.rc2.val.json entry 1 (pairid 1): duplicate pairid 1 (first at entry 0)" in joined
    assert "cap.rc2.val.json entry 2 (pairid 3): img_set members" in joined and "reference 'dev-0-0-img0'" in joined
    # counts still given: entries in each caption file (valid or not), index images of each split
    assert report["fashioniq"]["val"]["shirt"]["queries"] == 2
    assert report["fashioniq"]["val"]["dress"] == {"queries": 0, "images": 6, "missing_images": 0, "unreadable_images": 0}
    assert report["cirr"]["val"]["queries"] == 3


def test_missing_dataset_is_a_problem_when_asked_for_or_expected(tmp_path, capsys):
    build_tree(tmp_path)
    shutil.rmtree(tmp_path / "cirr_dataset")
    rc, out = run_cli(capsys, "--data-root", tmp_path, "--json")  # both are expected without --dataset
    problems = json.loads(out)["problems"]
    assert rc == 1 and len(problems) == 1
    assert problems[0].startswith("cirr: folder") and "--dataset fashioniq" in problems[0]
    rc, out = run_cli(capsys, "--data-root", tmp_path, "--dataset", "fashioniq", "--json")
    assert rc == 0 and json.loads(out)["problems"] == []
    rc, out = run_cli(capsys, "--data-root", tmp_path, "--dataset", "cirr", "--json")
    assert rc == 1 and "cirr: folder" in json.loads(out)["problems"][0]
    shutil.rmtree(tmp_path / "fashionIQ_dataset")
    rc, out = run_cli(capsys, "--data-root", tmp_path, "--json")
    assert rc == 1 and "neither fashionIQ_dataset/ nor cirr_dataset/" in json.loads(out)["problems"][0]
    rc, out = run_cli(capsys, "--data-root", tmp_path / "nowhere", "--json")
    assert rc == 1 and "does not exist" in json.loads(out)["problems"][0]


def test_split_file_without_captions_file(tmp_path):
    build_tree(tmp_path)
    (tmp_path / "cirr_dataset/cirr/captions/cap.rc2.val.json").unlink()
    report = check_data(tmp_path, ["cirr"], progress=False)
    assert report["cirr"]["val"] == {"queries": 0, "images": 8, "missing_images": 0, "unreadable_images": 0}
    assert len(report["problems"]) == 1 and "cap.rc2.val.json is missing" in report["problems"][0]


def test_format_report_table():
    text = format_report({"cirr": {"val": {"queries": 5, "images": 7, "missing_images": 1, "unreadable_images": 2}},
                          "problems": ["cirr val: something"]})
    assert "cirr     val    -               5       7        1           2" in text
    assert "1 problem(s):\n  - cirr val: something" in text


# ---------------------------------------------------------------------------------- smoke benchmark

needs_mini = pytest.mark.skipif(importlib.util.find_spec("cir_lib.mini") is None,
                                reason="cir_lib.mini is not written yet")


@needs_mini
def test_smoke_is_clean(smoke_root, capsys):
    rc, out = run_cli(capsys, "--data-root", smoke_root, "--json")
    report = json.loads(out)
    assert rc == 0, report["problems"]
    assert set(report["fashioniq"]["val"]) == {"dress", "shirt", "toptee"}
    assert set(report["cirr"]) == {"train", "val", "test1"}
    for counts in [*report["fashioniq"]["val"].values(), report["cirr"]["val"]]:
        assert counts["queries"] > 0 and counts["images"] > 0 and counts["missing_images"] == 0


@needs_mini
def test_smoke_damaged_copy_names_each_image(smoke_root, tmp_path, capsys):
    root = tmp_path / "damaged"
    shutil.copytree(smoke_root, root)
    fiq_names = json.loads((root / "fashionIQ_dataset/image_splits/split.dress.val.json").read_text())
    cirr_paths = json.loads((root / "cirr_dataset/cirr/image_splits/split.rc2.val.json").read_text())
    deleted = root / "fashionIQ_dataset/images" / f"{fiq_names[0]}.jpg"
    deleted.unlink()
    truncated = root / "cirr_dataset" / list(cirr_paths.values())[1]
    truncated.write_bytes(truncated.read_bytes()[:100])
    rc, out = run_cli(capsys, "--data-root", root, "--json")
    report = json.loads(out)
    assert rc == 1
    joined = "\n".join(report["problems"])
    assert str(deleted.relative_to(root)) in joined
    assert f"unreadable image {truncated.relative_to(root)}" in joined
    assert report["cirr"]["val"]["unreadable_images"] == 1


def test_absent_and_unreadable_images_are_reported_apart_with_their_reasons(tmp_path):
    build_tree(tmp_path)
    images = tmp_path / "fashionIQ_dataset/images"
    (images / "dress1.jpg").unlink()
    (images / "dress2.jpg").write_bytes(b"")
    (images / "dress3.jpg").write_text("<html><body>Access denied</body></html>")
    (images / "shirt0.jpg").unlink()
    (images / "shirt0.jpg").mkdir()
    for verify in (True, False):
        report = check_data(tmp_path, ["fashioniq"], verify_images=verify, progress=False)
        dress, shirt = report["fashioniq"]["val"]["dress"], report["fashioniq"]["val"]["shirt"]
        assert (dress["missing_images"], dress["unreadable_images"]) == (1, 2 if verify else 0)
        assert (shirt["missing_images"], shirt["unreadable_images"]) == (0, 1)  # a folder is never "missing"
        problems = "\n".join(report["problems"])
        assert "fashioniq dress val: 1 of 6 index images missing: fashionIQ_dataset/images/dress1.jpg" in problems
        assert ("unreadable image fashionIQ_dataset/images/shirt0.jpg (a folder, not an image file)"
                in problems)
        if verify:
            assert "unreadable image fashionIQ_dataset/images/dress2.jpg (empty file (0 bytes))" in problems
            assert "unreadable image fashionIQ_dataset/images/dress3.jpg (not an image" in problems
    assert "missing  unreadable" in format_report(report)


def test_duplicate_fashioniq_entries_are_a_problem_naming_file_and_entries(tmp_path):
    build_tree(tmp_path)
    cap = tmp_path / "fashionIQ_dataset/captions/cap.dress.val.json"
    write_json(cap, json.loads(cap.read_text()) * 2)  # entries 2 and 3 repeat 0 and 1
    report = check_data(tmp_path, ["fashioniq"], progress=False)
    assert len(report["problems"]) == 2
    assert report["problems"][0].startswith(
        "fashionIQ_dataset/captions/cap.dress.val.json entry 2 (candidate 'dress0'): exact duplicate of entry 0")
    assert "entry 3" in report["problems"][1] and f"delete entry 3 from {cap}" in report["problems"][1]
