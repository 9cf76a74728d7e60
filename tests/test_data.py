"""Readers: the real annotation files (their exact published counts), hand-built tiny trees, every bad
input, skip_missing accounting, the image dataset and the caption helpers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from cir_lib.constants import CLIP_MEAN, CLIP_STD
from cir_lib.data import (
    Query,
    SkipReport,
    eval_captions,
    fashioniq_caption_variants,
    fashioniq_eval_caption,
    load_split,
    merge_splits,
    read_annotations,
)
from cir_lib.errors import AnnotationError, ConfigError, ImageError
from cir_lib.images import ImageDataset, verify_image
from cir_lib.transform import PreprocessConfig, make_transform

# ------------------------------------------------------------------------------ real annotations




@pytest.mark.parametrize("category, n_queries, n_images", [
    ("dress", 2017, 3817), ("shirt", 2038, 6346), ("toptee", 1961, 5373)])
def test_real_fashioniq_val_counts(real_root, real_annotations, category, n_queries, n_images):
    split = load_split(real_root, "fashioniq", "val", category, check_files=False)
    assert (len(split.queries), len(split.image_names)) == (n_queries, n_images)
    names = json.loads((real_annotations / "fashionIQ/image_splits" / f"split.{category}.val.json").read_text())
    assert split.image_names == names  # index order = split-file order
    assert split.image_paths[0] == real_root / "fashionIQ_dataset/images" / f"{names[0]}.jpg"
    entries = json.loads((real_annotations / "fashionIQ/captions" / f"cap.{category}.val.json").read_text())
    first = split.queries[0]
    assert (first.reference, first.target, list(first.captions)) == (
        entries[0]["candidate"], entries[0]["target"], entries[0]["captions"])
    assert first.category == category
    targets = split.target_indices
    assert targets.dtype == torch.long and targets.shape == (n_queries,)
    assert [split.image_names[i] for i in targets[:50].tolist()] == [e["target"] for e in entries[:50]]
    assert split.skipped.is_empty


def test_real_fashioniq_test_has_no_targets(real_root):
    split = load_split(real_root, "fashioniq", "test", "dress", check_files=False)
    assert len(split.queries) > 0 and all(q.target is None for q in split.queries)
    assert split.reference_indices.shape == (len(split.queries),)
    with pytest.raises(ConfigError, match="no targets"):
        split.target_indices


def test_real_fashioniq_train_pools_categories(real_root, real_annotations):
    pooled = load_split(real_root, "fashioniq", "train", check_files=False)
    union = set()
    n_queries = 0
    for c in ("dress", "shirt", "toptee"):
        union |= set(json.loads((real_annotations / f"fashionIQ/image_splits/split.{c}.train.json").read_text()))
        n_queries += len(json.loads((real_annotations / f"fashionIQ/captions/cap.{c}.train.json").read_text()))
    assert len(pooled.image_names) == len(union) and set(pooled.image_names) == union
    assert len(pooled.queries) == n_queries
    assert pooled.category == "dress+shirt+toptee"
    assert {q.category for q in pooled.queries} == {"dress", "shirt", "toptee"}
    # every query's images resolve in the pooled index
    assert pooled.target_indices.shape == (n_queries,)


@pytest.mark.parametrize("split_name, n_queries, n_images, has_target", [
    ("val", 4181, 2297, True), ("test1", 4148, 2315, False)])
def test_real_cirr_counts(real_root, split_name, n_queries, n_images, has_target):
    split = load_split(real_root, "cirr", split_name, check_files=False)
    assert (len(split.queries), len(split.image_names)) == (n_queries, n_images)
    assert split.image_paths[0].parent.parent == real_root / "cirr_dataset"
    assert split.image_paths[0].name == split.image_names[0] + ".png"
    members = split.member_indices
    assert members.shape == (n_queries, 6)
    refs = split.reference_indices
    assert bool((members == refs[:, None]).any(dim=1).all())
    assert len({q.pairid for q in split.queries}) == n_queries
    if has_target:
        assert bool((members == split.target_indices[:, None]).any(dim=1).all())
    else:
        with pytest.raises(ConfigError, match="test1 has no targets"):
            split.target_indices


def test_real_without_images_check_files_raises(real_root):
    with pytest.raises(ImageError) as info:
        load_split(real_root, "cirr", "val")
    msg = str(info.value)
    assert "cirr val" in msg and "2297 of 2297" in msg and "dev-244-0-img0.png" in msg
    assert "skip_missing=True" in msg and "--skip-missing" in msg and "check-data" in msg


def test_real_skip_missing_counts_everything(real_root, caplog):
    with caplog.at_level(logging.WARNING, logger="cir_lib.data"):
        split = load_split(real_root, "fashioniq", "val", skip_missing=True)
    assert split.queries == [] and split.image_names == []
    assert split.skipped.queries == 2017 + 2038 + 1961
    assert split.skipped.images == 3817 + 6346 + 5373
    assert split.skipped.groups["fashioniq shirt val"] == {"queries": 2038, "images": 6346,
                                                           "missing_images": 6346, "unreadable_images": 0}
    assert (split.skipped.missing_images, split.skipped.unreadable_images) == (3817 + 6346 + 5373, 0)
    assert len(split.skipped.details) == 3
    assert sum("fashioniq" in r.getMessage() and "removed" in r.getMessage() for r in caplog.records) == 3


# ----------------------------------------------------------------------------- hand-built trees


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def save_image(path: Path, size=(24, 32), color=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def fiq_files(root: Path, category: str, split: str) -> tuple:
    base = root / "fashionIQ_dataset"
    return base / "captions" / f"cap.{category}.{split}.json", base / "image_splits" / f"split.{category}.{split}.json"


def build_fashioniq(root: Path, category="dress", split="val", images=True, entries=None, names=None):
    names = names or [f"{category}{i:02d}" for i in range(6)]
    if entries is None:
        entries = [
            {"candidate": names[0], "target": names[1], "captions": ["is red.", "Has long sleeves "]},
            {"candidate": names[2], "target": names[3], "captions": ["is blue", "is shorter?"]},
            {"candidate": names[4], "target": names[0], "captions": [" has a logo", "is green"]},
        ]
        if split == "test":
            entries = [{k: v for k, v in e.items() if k != "target"} for e in entries]
    cap, spl = fiq_files(root, category, split)
    write_json(spl, names)
    write_json(cap, entries)
    if images:
        for n in names:
            save_image(root / "fashionIQ_dataset" / "images" / f"{n}.jpg")
    return names, entries


def cirr_files(root: Path, split: str) -> tuple:
    base = root / "cirr_dataset" / "cirr"
    return base / "captions" / f"cap.rc2.{split}.json", base / "image_splits" / f"split.rc2.{split}.json"


def build_cirr(root: Path, split="val", images=True, entries=None):
    prefix = {"train": "train", "val": "dev", "test1": "test1"}[split]
    names = [f"{prefix}-{i}-0-img{i % 2}" for i in range(8)]
    rel = {n: (f"./train/{i % 2}/{n}.png" if split == "train" else f"./{prefix}/{n}.png") for i, n in enumerate(names)}
    if entries is None:
        entries = [
            {"pairid": 10, "reference": names[0], "target_hard": names[1], "caption": "add a dog",
             "img_set": {"id": 1, "members": names[0:6]}},
            {"pairid": 11, "reference": names[2], "target_hard": names[6], "caption": "remove the cat",
             "img_set": {"id": 2, "members": names[2:8]}},
            {"pairid": 12, "reference": names[7], "target_hard": names[0], "caption": "Make it night.",
             "img_set": {"id": 3, "members": [names[7]] + names[0:5]}},
        ]
        if split == "test1":
            entries = [{k: v for k, v in e.items() if k != "target_hard"} for e in entries]
    cap, spl = cirr_files(root, split)
    write_json(spl, rel)
    write_json(cap, entries)
    if images:
        for n in names:
            save_image(root / "cirr_dataset" / rel[n])
    return names, entries


def test_hand_built_fashioniq_reads_back(tmp_path):
    names, entries = build_fashioniq(tmp_path)
    split = load_split(tmp_path, "fashioniq", "val", "dress")
    assert split.image_names == names
    assert split.image_paths == [tmp_path / "fashionIQ_dataset/images" / f"{n}.jpg" for n in names]
    assert split.reference_indices.tolist() == [0, 2, 4]
    assert split.target_indices.tolist() == [1, 3, 0]
    assert split.indices([names[5], names[1]]).tolist() == [5, 1]
    assert split.name_to_index[names[3]] == 3
    assert split.queries[0] == Query(reference=names[0], captions=("is red.", "Has long sleeves "),
                                     target=names[1], category="dress")
    assert eval_captions(split) == ["Is red and Has long sleeves", "Is blue and is shorter", "Has a logo and is green"]
    with pytest.raises(ConfigError, match="only in CIRR"):
        split.member_indices
    with pytest.raises(AnnotationError, match="not in the index of fashioniq dress val"):
        split.indices(["nope"])


def test_hand_built_cirr_reads_back(tmp_path):
    names, _ = build_cirr(tmp_path, "train")
    split = load_split(tmp_path, "cirr", "train")
    assert split.image_paths[3] == tmp_path / "cirr_dataset/train/1" / f"{names[3]}.png"
    assert [q.pairid for q in split.queries] == [10, 11, 12]
    assert split.target_indices.tolist() == [1, 6, 0]
    assert split.member_indices.tolist() == [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 7], [7, 0, 1, 2, 3, 4]]
    assert eval_captions(split) == ["add a dog", "remove the cat", "Make it night."]


def test_hand_built_test_splits(tmp_path):
    build_fashioniq(tmp_path, split="test")
    build_cirr(tmp_path, "test1")
    fiq = load_split(tmp_path, "fashioniq", "test", "dress")
    cirr = load_split(tmp_path, "cirr", "test1")
    assert not fiq.has_targets and not cirr.has_targets
    assert cirr.member_indices.shape == (3, 6)
    for s in (fiq, cirr):
        with pytest.raises(ConfigError, match="no targets"):
            s.target_indices


@pytest.mark.parametrize("args, match", [
    (("imagenet", "val"), "unknown dataset 'imagenet'; valid: fashioniq, cirr"),
    (("cirr", "test"), "valid: train, val, test1"),
    (("fashioniq", "val", "shoes"), "valid: dress, shirt, toptee"),
    (("cirr", "val", "dress"), "CIRR has no categories"),
])
def test_unknown_names(tmp_path, args, match):
    with pytest.raises(ConfigError, match=match):
        load_split(tmp_path, *args)


def test_missing_annotation_file_names_it(tmp_path):
    with pytest.raises(AnnotationError) as info:
        load_split(tmp_path, "cirr", "val")
    assert "split.rc2.val.json is missing" in str(info.value)
    assert "folder holding fashionIQ_dataset/ and cirr_dataset/" in str(info.value)
    build_cirr(tmp_path, "val")
    with pytest.raises(AnnotationError, match="looks like a dataset folder; pass its parent"):
        load_split(tmp_path / "cirr_dataset", "cirr", "val")


# ----------------------------------------------------------------------------------- bad annotations


def test_malformed_json_names_file_and_line(tmp_path):
    build_fashioniq(tmp_path)
    cap, _ = fiq_files(tmp_path, "dress", "val")
    cap.write_text('[{"candidate": "dress00",\n "target": }]')
    with pytest.raises(AnnotationError) as info:
        load_split(tmp_path, "fashioniq", "val", "dress")
    assert str(cap) in str(info.value) and "malformed JSON at line 2" in str(info.value)


def test_split_file_of_wrong_type(tmp_path):
    build_cirr(tmp_path)
    _, spl = cirr_files(tmp_path, "val")
    write_json(spl, ["dev-0-0-img0"])
    with pytest.raises(AnnotationError, match=r"split.rc2.val.json: expected a JSON object mapping image names"):
        load_split(tmp_path, "cirr", "val")


def bad_fashioniq_entry(tmp_path, index, entry, split="val"):
    names, entries = build_fashioniq(tmp_path, split=split, images=False)
    entries[index] = entry
    write_json(fiq_files(tmp_path, "dress", split)[0], entries)
    with pytest.raises(AnnotationError) as info:
        load_split(tmp_path, "fashioniq", split, "dress", check_files=False)
    return str(info.value)


def test_fashioniq_entry_missing_key(tmp_path):
    msg = bad_fashioniq_entry(tmp_path, 1, {"candidate": "dress02", "captions": ["a", "b"]})
    assert "captions/cap.dress.val.json entry 1 (candidate 'dress02'): missing key(s) target" in msg
    assert "check-data" in msg


def test_fashioniq_unknown_image_name(tmp_path):
    msg = bad_fashioniq_entry(tmp_path, 2, {"candidate": "dress04", "target": "B000GHOST", "captions": ["a", "b"]})
    assert "entry 2 (candidate 'dress04'): target 'B000GHOST' is not in fashionIQ_dataset/image_splits/split.dress.val.json" in msg


@pytest.mark.parametrize("entry, match", [
    ({"candidate": "dress00", "target": "dress01", "captions": ["only one"]}, "captions must be a list of two strings"),
    ({"candidate": "dress00", "target": "dress01", "captions": "a and b"}, "captions must be a list of two strings"),
    ({"candidate": 7, "target": "dress01", "captions": ["a", "b"]}, "candidate must be an image name"),
    (["dress00", "dress01"], "expected an object"),
])
def test_fashioniq_wrong_types(tmp_path, entry, match):
    msg = bad_fashioniq_entry(tmp_path, 0, entry)
    assert "cap.dress.val.json entry 0" in msg and match in msg


def test_fashioniq_test_entry_without_target_is_fine_but_without_candidate_is_not(tmp_path):
    msg = bad_fashioniq_entry(tmp_path, 0, {"captions": ["a", "b"]}, split="test")
    assert "cap.dress.test.json entry 0: missing key(s) candidate" in msg


def test_duplicate_name_in_split_file(tmp_path):
    build_fashioniq(tmp_path, images=False, names=["a", "b", "c", "a", "d", "e"],
                    entries=[{"candidate": "a", "target": "b", "captions": ["x", "y"]}])
    with pytest.raises(AnnotationError, match=r"split.dress.val.json item 3: duplicate image name 'a' \(first at item 0\)"):
        load_split(tmp_path, "fashioniq", "val", "dress", check_files=False)


def bad_cirr(tmp_path, mutate, split="val"):
    names, entries = build_cirr(tmp_path, split, images=False)
    mutate(names, entries)
    write_json(cirr_files(tmp_path, split)[0], entries)
    with pytest.raises(AnnotationError) as info:
        load_split(tmp_path, "cirr", split, check_files=False)
    return str(info.value)


def test_cirr_duplicate_pairid(tmp_path):
    msg = bad_cirr(tmp_path, lambda n, e: e[2].update(pairid=10))
    assert "cap.rc2.val.json entry 2 (pairid 10): duplicate pairid 10 (first at entry 0)" in msg


def test_cirr_img_set_without_reference(tmp_path):
    def mutate(names, entries):
        entries[1]["img_set"]["members"] = [names[0], names[1], names[3], names[4], names[5], names[6]]
    msg = bad_cirr(tmp_path, mutate)
    assert "entry 1 (pairid 11): img_set members" in msg and "do not include the reference 'dev-2-0-img0'" in msg


def test_cirr_img_set_without_target_on_val(tmp_path):
    def mutate(names, entries):
        entries[0]["img_set"]["members"] = [names[0]] + names[2:7]
    msg = bad_cirr(tmp_path, mutate)
    assert "entry 0 (pairid 10)" in msg and "do not include the target 'dev-1-0-img1'" in msg


def test_cirr_unknown_member(tmp_path):
    def mutate(names, entries):
        entries[0]["img_set"]["members"][3] = "dev-999-9-img9"
    msg = bad_cirr(tmp_path, mutate)
    assert "entry 0 (pairid 10): image name(s) 'dev-999-9-img9' not in cirr_dataset/cirr/image_splits/split.rc2.val.json" in msg


@pytest.mark.parametrize("mutation, match", [
    (lambda n, e: e[0].pop("caption"), "entry 0 (pairid 10): missing key(s) caption"),
    (lambda n, e: e[1].pop("target_hard"), "entry 1 (pairid 11): missing key(s) target_hard"),
    (lambda n, e: e[1].update(pairid="11"), "entry 1: pairid must be an integer"),
    (lambda n, e: e[0]["img_set"].update(members=n[0:5]), "img_set members must be 6 distinct names"),
    (lambda n, e: e[0].update(img_set=n[0:6]), "img_set must be an object with a list 'members'"),
    (lambda n, e: e[2].update(caption=None), "entry 2 (pairid 12): caption must be a string"),
])
def test_cirr_malformed_entries(tmp_path, mutation, match):
    assert match in bad_cirr(tmp_path, mutation)


def test_every_problem_collected_by_read_annotations(tmp_path):
    names, entries = build_cirr(tmp_path, images=False)
    entries[0]["pairid"] = 11
    entries[2]["target_hard"] = "ghost"
    entries.append({"pairid": 13})
    write_json(cirr_files(tmp_path, "val")[0], entries)
    ann = read_annotations(tmp_path, "cirr", "val")
    assert len(ann.problems) == 3 and ann.n_entries == 4
    assert [q.pairid for q in ann.queries] == [11]  # entry 0 now holds pairid 11; entry 1 repeats it
    assert "entry 1 (pairid 11): duplicate pairid 11 (first at entry 0)" in ann.problems[0]
    assert "entry 2 (pairid 12)" in ann.problems[1] and "'ghost'" in ann.problems[1]
    assert "entry 3 (pairid 13): missing key(s) reference, caption, img_set, target_hard" in ann.problems[2]
    with pytest.raises(AnnotationError, match="3 annotation problem"):
        load_split(tmp_path, "cirr", "val", check_files=False)


# -------------------------------------------------------------------------- missing images, skipping


def test_missing_image_raises_naming_file_and_split(tmp_path):
    names, _ = build_fashioniq(tmp_path)
    (tmp_path / "fashionIQ_dataset/images" / f"{names[3]}.jpg").unlink()
    with pytest.raises(ImageError) as info:
        load_split(tmp_path, "fashioniq", "val", "dress")
    msg = str(info.value)
    assert "fashioniq dress val: 1 of 6 index image files are missing" in msg
    assert f"fashionIQ_dataset/images/{names[3]}.jpg" in msg
    assert "skip_missing=True" in msg and "--skip-missing" in msg and "cir-lib check-data" in msg
    # reading the annotations alone does not look at images
    assert len(load_split(tmp_path, "fashioniq", "val", "dress", check_files=False).image_names) == 6


def test_skip_missing_fashioniq_counts_and_warns(tmp_path, caplog):
    names, _ = build_fashioniq(tmp_path)
    build_fashioniq(tmp_path, category="shirt")
    (tmp_path / "fashionIQ_dataset/images" / f"{names[1]}.jpg").unlink()  # target of query 0
    (tmp_path / "fashionIQ_dataset/images" / f"{names[5]}.jpg").unlink()  # used by no query
    with caplog.at_level(logging.WARNING, logger="cir_lib.data"):
        split = load_split(tmp_path, "fashioniq", "val", "dress", skip_missing=True)
    assert split.image_names == [names[0], names[2], names[3], names[4]]
    assert [q.reference for q in split.queries] == [names[2], names[4]]
    assert split.target_indices.tolist() == [2, 0]  # positions in the reduced index
    assert (split.skipped.queries, split.skipped.images) == (1, 2)
    assert split.skipped.to_dict()["groups"] == {"fashioniq dress val": {
        "queries": 1, "images": 2, "missing_images": 2, "unreadable_images": 0}}
    assert "removed 1 of 3 queries and 2 of 6 index images" in split.skipped.details[0]
    assert any("fashioniq dress val" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)

    # pooled over the categories that exist: the counts travel with the merged split
    shirt = load_split(tmp_path, "fashioniq", "val", "shirt", skip_missing=True)
    assert shirt.skipped.is_empty
    pooled = merge_splits([split, shirt])
    assert (pooled.skipped.queries, pooled.skipped.images) == (1, 2)
    assert len(pooled.queries) == 2 + 3 and len(pooled.image_names) == 4 + 6


def test_skip_missing_cirr_drops_queries_with_a_missing_member(tmp_path):
    names, _ = build_cirr(tmp_path)
    (tmp_path / "cirr_dataset/dev" / f"{names[5]}.png").unlink()  # a member of pairids 10 and 11 only
    split = load_split(tmp_path, "cirr", "val", skip_missing=True)
    assert [q.pairid for q in split.queries] == [12]
    assert (split.skipped.queries, split.skipped.images) == (2, 1)
    assert split.member_indices.shape == (1, 6)


def test_no_missing_files_means_empty_report(tmp_path):
    build_cirr(tmp_path)
    split = load_split(tmp_path, "cirr", "val", skip_missing=True)
    assert split.skipped == SkipReport() and len(split.queries) == 3


def test_merge_splits_dedups_and_refuses_mixed(tmp_path):
    build_fashioniq(tmp_path, category="shirt", names=["s0", "s1", "shared"],
                    entries=[{"candidate": "s0", "target": "shared", "captions": ["a", "b"]}])
    build_fashioniq(tmp_path, category="toptee", names=["shared", "t1"],
                    entries=[{"candidate": "t1", "target": "shared", "captions": ["c", "d"]}])
    shirt = load_split(tmp_path, "fashioniq", "val", "shirt")
    toptee = load_split(tmp_path, "fashioniq", "val", "toptee")
    pooled = merge_splits([shirt, toptee])
    assert pooled.image_names == ["s0", "s1", "shared", "t1"]
    assert pooled.target_indices.tolist() == [2, 2] and pooled.reference_indices.tolist() == [0, 3]
    assert pooled.category == "shirt+toptee"
    build_fashioniq(tmp_path, category="dress", split="test")
    with pytest.raises(ConfigError, match="cannot pool"):
        merge_splits([shirt, load_split(tmp_path, "fashioniq", "test", "dress")])
    with pytest.raises(ConfigError):
        merge_splits([])


# ------------------------------------------------------------------------------------ image dataset


def test_image_dataset_reads_and_transforms(tmp_path):
    build_cirr(tmp_path)
    split = load_split(tmp_path, "cirr", "val")
    ds = ImageDataset.from_split(split, make_transform(PreprocessConfig("targetpad", image_size=16)))
    assert len(ds) == 8 and ds[0].shape == (3, 16, 16)
    raw = ImageDataset(split.image_paths, None, "cirr val")[1]
    assert isinstance(raw, Image.Image) and raw.mode == "RGB" and raw.size == (24, 32)


def test_image_dataset_keeps_the_file_mode_and_the_transform_makes_rgb(tmp_path):
    # the original pads / resizes in the file's mode and converts to RGB last (see cir_lib.transform)
    path = tmp_path / "gray.png"
    Image.new("L", (10, 12), 128).save(path)
    assert ImageDataset([path], None, "x")[0].mode == "L"
    out = ImageDataset([path], make_transform(PreprocessConfig("clip", image_size=8)), "x")[0]
    assert out.shape == (3, 8, 8)
    pixels = out * torch.tensor(CLIP_STD).view(3, 1, 1) + torch.tensor(CLIP_MEAN).view(3, 1, 1)
    assert torch.allclose(pixels, torch.full((3, 8, 8), 128 / 255), atol=1e-5)  # grey in all three channels


@pytest.mark.parametrize("damage", ["missing", "truncated", "not_an_image", "empty"])
def test_image_dataset_bad_files_raise_naming_file_and_split(tmp_path, damage):
    path = tmp_path / "images" / "B00BAD.jpg"
    save_image(path, size=(64, 64))
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "not_an_image":
        path.write_text("<html>404 Not Found</html>")
    else:
        path.write_bytes(b"")
    ds = ImageDataset([path], make_transform(PreprocessConfig("clip", image_size=8)), "fashioniq dress val")
    with pytest.raises(ImageError) as info:
        ds[0]
    msg = str(info.value)
    assert str(path) in msg and "fashioniq dress val" in msg
    assert ("missing" if damage == "missing" else "unreadable") in msg


# ------------------------------------------------------------------------------------------ captions


def test_caption_helpers_match_the_original_formulas():
    c1, c2 = "is red and WHITE.", " Has Long sleeves?"
    s1, s2 = c1.strip(".?, "), c2.strip(".?, ")
    assert fashioniq_eval_caption(c1, c2) == f"{s1.capitalize()} and {s2}" == "Is red and white and Has Long sleeves"
    assert fashioniq_caption_variants(c1, c2) == (
        "Is red and white and Has Long sleeves",
        "Has long sleeves and is red and WHITE",
        "Is red and white",
        "Has long sleeves",
    )
    assert fashioniq_caption_variants(c1, c2)[0] == fashioniq_eval_caption(c1, c2)


def test_caption_helpers_on_empty_and_punctuation_only():
    assert fashioniq_eval_caption("...", "is blue") == " and is blue"
    assert fashioniq_caption_variants("", "?")[2:] == ("", "")


# ---------------------------------------------------------------------------- generated smoke tree

needs_mini = pytest.mark.skipif(__import__("importlib").util.find_spec("cir_lib.mini") is None,
                                reason="cir_lib.mini is not written yet")


@needs_mini
def test_smoke_tree_reads_like_real_data(smoke_root):
    counts = json.loads((smoke_root / "MINI_BENCHMARK.json").read_text())["counts"]
    for category in ("dress", "shirt", "toptee"):
        for split_name in ("train", "val", "test"):
            split = load_split(smoke_root, "fashioniq", split_name, category)  # files checked
            expected = counts["fashioniq"][category][split_name]
            assert (len(split.queries), len(split.image_names)) == (expected["queries"], expected["images"])
            assert split.has_targets == (split_name != "test")
    for split_name in ("train", "val", "test1"):
        split = load_split(smoke_root, "cirr", split_name)
        expected = counts["cirr"][split_name]
        assert (len(split.queries), len(split.image_names)) == (expected["queries"], expected["images"])
        assert split.member_indices.shape == (len(split.queries), 6)
        assert split.has_targets == (split_name != "test1")
    val = load_split(smoke_root, "cirr", "val")
    ds = ImageDataset.from_split(val, make_transform(PreprocessConfig("targetpad", image_size=32)))
    assert ds[0].shape == (3, 32, 32)


@pytest.mark.parametrize("value", ["/etc/hosts", "./dev/../../outside.png"])
def test_cirr_split_paths_must_stay_inside_the_dataset(tmp_path, value):
    names, _ = build_cirr(tmp_path, images=False)
    _, spl = cirr_files(tmp_path, "val")
    mapping = json.loads(spl.read_text())
    mapping[names[2]] = value
    write_json(spl, mapping)
    with pytest.raises(AnnotationError, match=f"split.rc2.val.json image '{names[2]}': path"):
        load_split(tmp_path, "cirr", "val", check_files=False)


# ------------------------------------------------------------------------------ unusable images


def _noise_jpeg(path: Path, size=(96, 96)) -> None:
    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(size[1], size[0], 3, generator=g) * 255).to(torch.uint8).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)


def _damage(path: Path, damage: str) -> None:
    if damage == "absent":
        path.unlink()
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        _noise_jpeg(path)
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif damage == "html":
        path.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    elif damage == "folder":
        path.unlink()
        path.mkdir()


REASONS = {"absent": "missing", "empty": "empty file (0 bytes)", "truncated": "truncated or corrupt",
           "html": "not an image", "folder": "a folder, not an image file"}


@pytest.mark.parametrize("damage", list(REASONS))
def test_verify_image_tells_why_an_image_is_unusable(tmp_path, damage):
    path = tmp_path / "x.jpg"
    _noise_jpeg(path)
    assert verify_image(path) is None
    _damage(path, damage)
    assert verify_image(path).startswith(REASONS[damage])


@pytest.mark.parametrize("damage", list(REASONS))
def test_skip_missing_drops_queries_on_every_kind_of_unusable_image(tmp_path, damage, caplog):
    names, _ = build_fashioniq(tmp_path)
    _damage(tmp_path / "fashionIQ_dataset/images" / f"{names[1]}.jpg", damage)  # target of query 0
    with caplog.at_level(logging.WARNING, logger="cir_lib.data"):
        split = load_split(tmp_path, "fashioniq", "val", "dress", skip_missing=True)
    assert names[1] not in split.image_names and [q.reference for q in split.queries] == [names[2], names[4]]
    absent = damage == "absent"
    report = split.skipped.to_dict()
    assert (report["queries"], report["images"]) == (1, 1)
    assert (report["missing_images"], report["unreadable_images"]) == ((1, 0) if absent else (0, 1))
    assert report["groups"]["fashioniq dress val"] == {
        "queries": 1, "images": 1, "missing_images": int(absent), "unreadable_images": int(not absent)}
    detail = report["details"][0]
    assert f"{names[1]}.jpg" in detail
    if absent:
        assert "missing image files" in detail
    else:
        assert "unreadable image files" in detail and REASONS[damage] in detail
        assert "missing image files" not in detail
    assert detail in caplog.text


def test_without_skip_missing_a_folder_is_named_as_a_folder(tmp_path):
    names, _ = build_fashioniq(tmp_path)
    _damage(tmp_path / "fashionIQ_dataset/images" / f"{names[1]}.jpg", "folder")
    with pytest.raises(ImageError, match="a folder, not an image file"):
        load_split(tmp_path, "fashioniq", "val", "dress")
    with pytest.raises(ImageError, match="a folder, not an image file"):
        ImageDataset([tmp_path / "fashionIQ_dataset/images" / f"{names[1]}.jpg"])[0]


def test_without_skip_missing_files_are_only_checked_for_existence(tmp_path, monkeypatch):
    import cir_lib.images as images

    names, _ = build_fashioniq(tmp_path)
    _damage(tmp_path / "fashionIQ_dataset/images" / f"{names[1]}.jpg", "empty")
    monkeypatch.setattr(images, "verify_image", lambda p: pytest.fail("decoded an image"))
    assert len(load_split(tmp_path, "fashioniq", "val", "dress").image_names) == 6  # caught when loaded


def test_training_keeps_cirr_queries_whose_other_img_set_member_is_unusable(tmp_path):
    names, _ = build_cirr(tmp_path)
    _damage(tmp_path / "cirr_dataset/dev" / f"{names[5]}.png", "html")  # member of pairids 10 and 11 only
    evaluation = load_split(tmp_path, "cirr", "val", skip_missing=True)
    assert [q.pairid for q in evaluation.queries] == [12]
    assert (evaluation.skipped.queries, evaluation.skipped.unreadable_images) == (2, 1)
    training = load_split(tmp_path, "cirr", "val", skip_missing=True, skip_members=False)
    assert [q.pairid for q in training.queries] == [10, 11, 12]
    assert names[5] not in training.image_names
    assert (training.skipped.queries, training.skipped.images, training.skipped.unreadable_images) == (0, 1, 1)
    assert training.reference_indices.shape == training.target_indices.shape == (3,)
    # the reference or target still counts in training
    _damage(tmp_path / "cirr_dataset/dev" / f"{names[6]}.png", "empty")  # target of pairid 11
    training = load_split(tmp_path, "cirr", "val", skip_missing=True, skip_members=False)
    assert [q.pairid for q in training.queries] == [10, 12] and training.skipped.queries == 1


def test_skip_reports_combine_old_and_new_counts():
    a = SkipReport(queries=1, images=2, groups={"x": {"queries": 1, "images": 2}})  # an older report
    b = SkipReport(queries=3, images=1, missing_images=0, unreadable_images=1,
                   groups={"x": {"queries": 3, "images": 1, "missing_images": 0, "unreadable_images": 1}})
    both = SkipReport.combine([a, b]).to_dict()
    assert {k: both[k] for k in ("queries", "images", "missing_images", "unreadable_images")} == {
        "queries": 4, "images": 3, "missing_images": 0, "unreadable_images": 1}
    assert both["groups"]["x"] == {"queries": 4, "images": 3, "missing_images": 0, "unreadable_images": 1}


# ------------------------------------------------------------------------------ duplicate entries


def test_exact_duplicate_fashioniq_entries_are_an_annotation_problem(tmp_path):
    names, entries = build_fashioniq(tmp_path, images=False)
    cap, _ = fiq_files(tmp_path, "dress", "val")
    write_json(cap, entries + [dict(entries[1]), dict(entries[0]), dict(entries[1])])  # entries 3, 4, 5
    ann = read_annotations(tmp_path, "fashioniq", "val", "dress")
    assert len(ann.queries) == 3 and len(ann.problems) == 3
    assert ann.problems[0].startswith(
        f"fashionIQ_dataset/captions/cap.dress.val.json entry 3 (candidate {names[2]!r}): exact duplicate of entry 1")
    assert "entry 4" in ann.problems[1] and "duplicate of entry 0" in ann.problems[1]
    assert f"delete entry 5 from {cap}" in ann.problems[2]
    with pytest.raises(AnnotationError, match="3 annotation problem") as err:
        load_split(tmp_path, "fashioniq", "val", "dress", check_files=False)
    assert "exact duplicate of entry 1" in str(err.value) and "check-data" in str(err.value)


def test_same_pair_with_other_captions_is_not_a_duplicate(tmp_path):
    names, entries = build_fashioniq(tmp_path, images=False)
    cap, _ = fiq_files(tmp_path, "dress", "val")
    write_json(cap, entries + [{**entries[0], "captions": ["is darker", "is longer"]}])
    assert len(load_split(tmp_path, "fashioniq", "val", "dress", check_files=False).queries) == 4


def test_identical_test_entries_are_kept_as_their_targets_are_hidden(tmp_path):
    _, entries = build_fashioniq(tmp_path, split="test", images=False)
    cap, _ = fiq_files(tmp_path, "dress", "test")
    write_json(cap, entries + [entries[0]])
    assert len(load_split(tmp_path, "fashioniq", "test", "dress", check_files=False).queries) == 4


@pytest.mark.parametrize("split_name", ["train", "val", "test"])
def test_real_fashioniq_files_hold_no_duplicate_problem(real_root, real_annotations, split_name):
    # the real test files repeat a few entries verbatim (hidden targets): they are all kept
    for category in ("dress", "shirt", "toptee"):
        ann = read_annotations(real_root, "fashioniq", split_name, category)
        n = len(json.loads((real_annotations / f"fashionIQ/captions/cap.{category}.{split_name}.json").read_text()))
        assert ann.problems == [] and len(ann.queries) == n
