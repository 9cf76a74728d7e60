"""The embedded mini benchmarks (cir_lib.mini): determinism, real layouts and formats, consistency
of every reference, img_set invariants, caption variety, the pool, and the `make-mini` command."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from PIL import Image

from cir_lib import __version__
from cir_lib import mini, mini_common, mini_garments, mini_scenes
from cir_lib.cli import build_parser
from cir_lib.constants import CIRR_SPLITS, FASHIONIQ_CATEGORIES, FASHIONIQ_SPLITS
from cir_lib.errors import ConfigError

from tool_modules import load_tool

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIQ_NAME = re.compile(r"B0[0-9A-Z]{8}")
CIRR_NAME = re.compile(r"(train|dev|test1)-\d+-\d-img[01]")
CIRR_PATH = re.compile(r"\./(train/\d+|dev|test1)/((train|dev|test1)-\d+-\d-img[01])\.png")
CIRR_PREFIX = {"train": "train", "val": "dev", "test1": "test1"}


def _tree_hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _fiq(root: Path, kind: str, category: str, split: str):
    folder = "captions" if kind == "cap" else "image_splits"
    return json.loads((root / "fashionIQ_dataset" / folder / f"{kind}.{category}.{split}.json").read_text())


def _cirr(root: Path, kind: str, split: str):
    folder = "captions" if kind == "cap" else "image_splits"
    return json.loads((root / "cirr_dataset" / "cirr" / folder / f"{kind}.rc2.{split}.json").read_text())


# ------------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_another_seed_differs(smoke_root, tmp_path):
    again = tmp_path / "again"
    other = tmp_path / "other"
    mini.make_mini(again, preset="smoke", seed=0)
    mini.make_mini(other, preset="smoke", seed=1)
    first, second, third = _tree_hashes(smoke_root), _tree_hashes(again), _tree_hashes(other)
    assert len(first) > 500
    assert first == second
    # Another seed: other image names, other contents (the fixed-name files differ too).
    assert set(first) != set(third)
    for name in ("cirr_dataset/cirr/captions/cap.rc2.val.json", "mini_pool/captions.json",
                 "mini_pool/images/fashion_00000.jpg", "mini_pool/images/scene_00000.png"):
        assert first[name] != third[name], name


def test_render_functions_are_deterministic_per_generator():
    g = mini_garments.random_garment("shirt", mini_common.seeded_rng(3, "g"))
    a = mini_garments.render_garment(g, mini_common.seeded_rng(3, "r"))
    b = mini_garments.render_garment(g, mini_common.seeded_rng(3, "r"))
    assert a.tobytes() == b.tobytes() and a.size == b.size
    s = mini_scenes.random_scene(mini_common.seeded_rng(3, "s"))
    render = mini_scenes.render_scene
    assert render(s, mini_common.seeded_rng(4)).tobytes() == render(s, mini_common.seeded_rng(4)).tobytes()


# ----------------------------------------------------------------------- layouts and formats


def test_fashioniq_layout_and_formats_match_the_real_files(smoke_root, real_annotations):
    for category in FASHIONIQ_CATEGORIES:
        for split in FASHIONIQ_SPLITS:
            for kind in ("cap", "split"):
                folder = "captions" if kind == "cap" else "image_splits"
                ours_path = smoke_root / "fashionIQ_dataset" / folder / f"{kind}.{category}.{split}.json"
                real_path = real_annotations / "fashionIQ" / folder / f"{kind}.{category}.{split}.json"
                ours_text, real_text = ours_path.read_text(), real_path.read_text()
                ours, real = json.loads(ours_text), json.loads(real_text)
                # Same text formatting rule as the real files (indent 4, no trailing newline).
                assert real_text == json.dumps(real, indent=4)
                assert ours_text == json.dumps(ours, indent=4), ours_path
                assert isinstance(ours, list) and ours
                if kind == "cap":
                    real_keys = {tuple(e) for e in real}
                    assert {tuple(e) for e in ours} == real_keys, ours_path  # key sets and order
                    assert all(len(e["captions"]) == 2 for e in ours)
                    assert all(isinstance(c, str) and c.strip() for e in ours for c in e["captions"])
                else:
                    assert all(isinstance(n, str) and FIQ_NAME.fullmatch(n) for n in ours)
                    assert sum(bool(FIQ_NAME.fullmatch(n)) for n in real) > 0.99 * len(real)
                    assert len(set(ours)) == len(ours)
            for name in _fiq(smoke_root, "split", category, split):
                assert (smoke_root / "fashionIQ_dataset" / "images" / f"{name}.jpg").is_file()


def test_cirr_layout_and_formats_match_the_real_files(smoke_root, real_annotations):
    real_cap = {s: json.loads((real_annotations / "cirr" / "captions" / f"cap.rc2.{s}.json").read_text())
                for s in ("val", "test1")}
    for split in CIRR_SPLITS:
        for kind in ("cap", "split"):
            folder = "captions" if kind == "cap" else "image_splits"
            ours_text = (smoke_root / "cirr_dataset" / "cirr" / folder / f"{kind}.rc2.{split}.json").read_text()
            real_text = (real_annotations / "cirr" / folder / f"{kind}.rc2.{split}.json")
            ours = json.loads(ours_text)
            assert ours_text == json.dumps(ours)  # one line, as the real files
            if real_text.is_file():
                assert real_text.read_text() == json.dumps(json.loads(real_text.read_text()))
        caps, split_map = _cirr(smoke_root, "cap", split), _cirr(smoke_root, "split", split)
        reference = real_cap["test1" if split == "test1" else "val"]  # no real train captions here
        assert {tuple(e) for e in caps} == {tuple(e) for e in reference}
        assert {tuple(e["img_set"]) for e in caps} == {tuple(e["img_set"]) for e in reference}
        for e in caps:
            assert isinstance(e["pairid"], int) and isinstance(e["caption"], str) and e["caption"].strip()
            if split != "test1":
                assert e["target_soft"][e["target_hard"]] == 1.0
                assert set(e["target_soft"].values()) <= {1.0, -1.0}
        # Split files map names to "./<folder>/<name>.png"; train images in numbered subfolders.
        real_map = json.loads((real_annotations / "cirr" / "image_splits" / f"split.rc2.{split}.json").read_text())
        for mapping in (split_map, real_map):
            for name, rel in mapping.items():
                m = CIRR_PATH.fullmatch(rel)
                assert m and m.group(2) == name and CIRR_NAME.fullmatch(name), rel
                assert name.startswith(CIRR_PREFIX[split] + "-")
                assert rel.startswith(f"./{CIRR_PREFIX[split]}/")
        folders = {rel.split("/")[2] for rel in split_map.values()} if split == "train" else set()
        if split == "train":
            assert len(folders) == mini.PRESETS["smoke"].cirr_train_folders
        for rel in split_map.values():
            assert (smoke_root / "cirr_dataset" / rel).is_file(), rel


def test_images_are_small_jpg_and_png_with_non_square_fashion(smoke_root):
    fiq = sorted((smoke_root / "fashionIQ_dataset" / "images").glob("*"))
    assert fiq and all(p.suffix == ".jpg" for p in fiq)
    sizes = []
    for p in fiq[:150]:
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            sizes.append(im.size)
    assert all(48 <= min(s) and max(s) <= 96 for s in sizes)
    # Enough images beyond the 1.25 aspect ratio that targetpad pads them, and some within it.
    assert sum(max(s) / min(s) >= 1.25 for s in sizes) > 30
    assert sum(max(s) / min(s) < 1.25 for s in sizes) > 10
    cirr = sorted((smoke_root / "cirr_dataset").rglob("*.png"))
    assert cirr
    for p in cirr[:50]:
        with Image.open(p) as im:
            assert im.format == "PNG" and 64 <= min(im.size) and max(im.size) <= 96
    assert not list((smoke_root / "cirr_dataset").rglob("*.jpg"))


# ----------------------------------------------------------------------- references and sets


def test_every_fashioniq_name_exists_in_its_split(smoke_root):
    names_everywhere = Counter()
    for category in FASHIONIQ_CATEGORIES:
        for split in FASHIONIQ_SPLITS:
            caps = _fiq(smoke_root, "cap", category, split)
            index = set(_fiq(smoke_root, "split", category, split))
            names_everywhere.update(index)
            for e in caps:
                assert e["candidate"] in index
                if split == "test":
                    assert "target" not in e
                else:
                    assert e["target"] in index and e["target"] != e["candidate"]
            # Evaluation indexes hold distractors: more images than the captions use.
            if split != "train":
                used = {e["candidate"] for e in caps} | {e.get("target") for e in caps} - {None}
                assert used < index
    # No image shared between categories or splits (as in the real files).
    assert max(names_everywhere.values()) == 1


def test_every_cirr_name_exists_and_img_sets_hold_reference_and_target(smoke_root):
    all_pairids = []
    for split in CIRR_SPLITS:
        caps, split_map = _cirr(smoke_root, "cap", split), _cirr(smoke_root, "split", split)
        sets = defaultdict(list)
        for e in caps:
            all_pairids.append(e["pairid"])
            members = e["img_set"]["members"]
            assert len(members) == 6 and len(set(members)) == 6
            assert all(m in split_map for m in members)
            assert e["reference"] in members
            assert 0 <= e["img_set"]["reference_rank"] < 6
            if split == "test1":
                assert "target_hard" not in e and "target_soft" not in e and "target_rank" not in e["img_set"]
            else:
                assert e["target_hard"] in members and e["target_hard"] != e["reference"]
                assert set(e["target_soft"]) <= set(members)
                assert 0 <= e["img_set"]["target_rank"] < 6
            sets[e["img_set"]["id"]].append(e)
        covered = set()
        for set_id, entries in sets.items():
            assert len({tuple(e["img_set"]["members"]) for e in entries}) == 1, set_id
            rank_of = {}
            for e in entries:  # a member keeps its rank over the set's pairs, as in the real files
                pairs = [(e["reference"], e["img_set"]["reference_rank"])]
                if split != "test1":
                    pairs.append((e["target_hard"], e["img_set"]["target_rank"]))
                for name, rank in pairs:
                    assert rank_of.setdefault(name, rank) == rank
            members = entries[0]["img_set"]["members"]
            assert not covered & set(members)  # img_sets do not share images
            covered |= set(members)
            # The 6 members are variants of one base scene ("<prefix>-<base>-<k>-img<j>").
            assert len({m.rsplit("-", 2)[0] for m in members}) == 1
        assert covered == set(split_map)  # every image of the split belongs to an img_set
        assert len(sets) == getattr(mini.PRESETS["smoke"], f"cirr_{split}_sets")
        assert [e["pairid"] for e in caps] == sorted(e["pairid"] for e in caps)
    assert len(all_pairids) == len(set(all_pairids))


# ------------------------------------------------------------------------------------ captions


def test_captions_are_varied_with_some_vague_and_partial_ones(smoke_root):
    fiq = [c for cat in FASHIONIQ_CATEGORIES for s in FASHIONIQ_SPLITS
           for e in _fiq(smoke_root, "cap", cat, s) for c in e["captions"]]
    assert len(set(fiq)) > 0.5 * len(fiq) and len(set(fiq)) > 150
    vague = [c for c in fiq if c in mini_garments.VAGUE_FASHION_CAPTIONS]
    assert 0.03 * len(fiq) < len(vague) < 0.3 * len(fiq)
    # Most pairs have two different captions.
    pairs = [tuple(e["captions"]) for cat in FASHIONIQ_CATEGORIES for e in _fiq(smoke_root, "cap", cat, "val")]
    assert sum(a != b for a, b in pairs) > 0.8 * len(pairs)
    cirr = [e["caption"] for s in CIRR_SPLITS for e in _cirr(smoke_root, "cap", s)]
    assert len(set(cirr)) > 0.7 * len(cirr)
    words = Counter(w for c in cirr for w in re.findall(r"[a-z]+", c.lower()))
    for verb in ("add", "remove", "move"):
        assert words[verb] > 0, verb
    assert any(c in mini_scenes.VAGUE_SCENE_CAPTIONS for c in cirr) or len(cirr) < 100


def test_fashioniq_captions_mention_only_changed_or_true_attributes():
    rng = mini_common.seeded_rng(11, "captions")
    partial = 0
    for i in range(300):
        ref = mini_garments.random_garment("dress", rng)
        tgt, changed = mini_garments.mutate_garment(ref, 3, rng)
        assert len(changed) == 3 and len(set(changed)) == 3
        differing = {f for f in ("colour", "pattern", "sleeves", "neck", "length", "graphic")
                     if getattr(ref, f) != getattr(tgt, f)
                     or (f == "graphic" and ref.graphic_colour != tgt.graphic_colour)}
        assert differing == set(changed)
        c1, c2 = mini_garments.fashioniq_captions(ref, tgt, changed, rng)
        assert c1.strip() and c2.strip()
        # The target's colour word never contradicts: a caption naming a colour as the garment's
        # colour names the target's colour (checked on the simple "is <colour>" form).
        for c in (c1, c2):
            m = re.fullmatch(r"(?:it |the dress )?is (\w+)", c.lower().rstrip("."))
            if m and m.group(1) in mini_garments.FASHION_COLOURS:
                assert m.group(1) == tgt.colour
        partial += len(c1) < 25 and len(c2) < 25
    assert partial > 0


def test_scene_variants_are_distinct_and_diffs_non_empty():
    rng = mini_common.seeded_rng(5, "scenes")
    for _ in range(100):
        variants = mini_scenes.scene_variants(mini_scenes.random_scene(rng), 6, rng)
        assert len({v.signature() for v in variants}) == 6
        for v in variants:
            assert mini_scenes.MIN_OBJECTS <= len(v.objects) <= mini_scenes.MAX_OBJECTS
            assert len({o.cell for o in v.objects}) == len(v.objects)
        for a in variants:
            for b in variants:
                if a is not b:
                    assert mini_scenes.scene_diff(a, b)
                    assert mini_scenes.cirr_caption(a, b, rng).strip()


# ---------------------------------------------------------------------------------- the pool


def test_pool_captions_images_and_readme(smoke_root):
    pool = smoke_root / "mini_pool"
    entries = json.loads((pool / "captions.json").read_text())
    preset = mini.PRESETS["smoke"]
    assert len(entries) == preset.pool_fashion_images + preset.pool_scene_images
    assert {tuple(sorted(e)) for e in entries} == {("caption", "domain", "image")}
    assert Counter(e["domain"] for e in entries) == {"fashion": preset.pool_fashion_images,
                                                     "scene": preset.pool_scene_images}
    for e in entries:
        assert e["image"].startswith("images/") and (pool / e["image"]).is_file()
        assert len(e["caption"].split()) >= 3
    assert any("sleeve" in e["caption"] for e in entries)
    assert (pool / "README.md").read_text().startswith("# mini_pool")
    pool_hashes = {hashlib.sha256((pool / e["image"]).read_bytes()).hexdigest() for e in entries}
    bench = {hashlib.sha256(p.read_bytes()).hexdigest()
             for d in ("fashionIQ_dataset", "cirr_dataset") for p in (smoke_root / d).rglob("*")
             if p.suffix in (".jpg", ".png")}
    assert not pool_hashes & bench


def test_manifest_records_preset_seed_version_and_true_counts(smoke_root):
    manifest = json.loads((smoke_root / "MINI_BENCHMARK.json").read_text())
    assert manifest["preset"] == "smoke" and manifest["seed"] == 0 and manifest["kit_version"] == __version__
    counts = manifest["counts"]
    for category in FASHIONIQ_CATEGORIES:
        for split in FASHIONIQ_SPLITS:
            assert counts["fashioniq"][category][split] == {
                "queries": len(_fiq(smoke_root, "cap", category, split)),
                "images": len(_fiq(smoke_root, "split", category, split)),
            }
    for split in CIRR_SPLITS:
        assert counts["cirr"][split]["queries"] == len(_cirr(smoke_root, "cap", split))
        assert counts["cirr"][split]["images"] == len(_cirr(smoke_root, "split", split))
    n_files = sum(1 for p in smoke_root.rglob("*") if p.suffix in (".jpg", ".png"))
    assert counts["images_total"] == n_files


def test_presets_have_the_planned_sizes():
    smoke, full = mini.PRESETS["smoke"], mini.PRESETS["mini"]
    assert 50 <= smoke.fashioniq_val_images <= 120 and smoke.cirr_val_sets * 6 <= 120
    assert 1000 <= full.fashioniq_val_images <= 1500 and full.fashioniq_val_queries >= 500
    assert 1000 <= full.cirr_val_sets * 6 <= 1500
    assert full.fashioniq_train_queries * 3 >= 2000
    assert full.pool_fashion_images + full.pool_scene_images >= 2000


def test_bad_arguments_and_existing_output_are_refused(tmp_path, smoke_root):
    with pytest.raises(ConfigError, match="unknown mini preset"):
        mini.make_mini(tmp_path / "x", preset="huge")
    with pytest.raises(ConfigError, match="seed"):
        mini.make_mini(tmp_path / "x", preset="smoke", seed=-1)
    with pytest.raises(ConfigError, match="more images than"):
        mini.MiniPreset(**{**dataclasses.asdict(mini.PRESETS["smoke"]), "fashioniq_val_images": 10})
    with pytest.raises(ConfigError, match="already holds"):
        mini.make_mini(smoke_root, preset="smoke")
    foreign = tmp_path / "foreign"
    (foreign / "cirr_dataset").mkdir(parents=True)
    with pytest.raises(ConfigError, match="does not look like"):
        mini.make_mini(foreign, preset="smoke", overwrite=True)
    assert (foreign / "cirr_dataset").is_dir()


# --------------------------------------------------------------------------------------- CLI


def test_cli_make_mini_smoke(tmp_path, smoke_root):
    # One real process (the command users type); it imports the whole CLI, so only once.
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, "-m", "cir_lib", "make-mini", "--out", str(out), "--preset", "smoke"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "FashionIQ dress" in done.stdout and "CIRR" in done.stdout and "wrote" in done.stdout
    assert _tree_hashes(out) == _tree_hashes(smoke_root)


def test_make_mini_command_refuses_existing_output_then_overwrites_and_has_help(tmp_path, smoke_root, capsys):
    # Through the module's own subcommand (the full CLI is exercised once, above).
    parser = build_parser(["make-mini"])
    out = tmp_path / "cmd"
    shutil.copytree(smoke_root, out)
    args = parser.parse_args(["make-mini", "--out", str(out), "--preset", "smoke"])
    with pytest.raises(ConfigError, match="--overwrite"):
        args.func(args)
    (out / "mini_pool" / "captions.json").write_text("[]")
    (out / "fashionIQ_dataset" / "stale.txt").write_text("left over")
    (out / "cir-mini.pt").write_bytes(b"pretrained on the previous pool")  # must not survive the new data
    args = parser.parse_args(["make-mini", "--out", str(out), "--preset", "smoke", "--seed", "0", "--overwrite"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "FashionIQ dress" in printed and "wrote" in printed and " s" in printed
    assert _tree_hashes(out) == _tree_hashes(smoke_root) and not (out / "cir-mini.pt").exists()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["make-mini", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--preset" in text and "--seed" in text and "--out" in text and "smoke" in text


# ------------------------------------------------------------------------- generator versions


def _as_older_generator(root: Path, version) -> None:
    """Rewrite a copied root's manifest as an older generator's (None: a manifest without a version)."""
    manifest = json.loads((root / mini.MANIFEST_NAME).read_text())
    if version is None:
        manifest.pop("generator_version")
    else:
        manifest["generator_version"] = version
    (root / mini.MANIFEST_NAME).write_text(json.dumps(manifest))


@pytest.mark.parametrize("version", [None, 1])
def test_an_older_data_root_is_refused_everywhere_with_what_to_do(tmp_path, smoke_root, version):
    from cir_lib import notebook
    from cir_lib.check import check_data
    from cir_lib.data import check_data_root, load_split
    from cir_lib.pretrain import pretrain_mini

    root = tmp_path / "old"
    shutil.copytree(smoke_root, root)
    _as_older_generator(root, version)
    (root / "cir-mini.pt").write_bytes(b"pretrained on the old pool")
    before = _tree_hashes(root)
    made_by = "an unversioned generator" if version is None else f"generator version {version}"
    for call in (lambda: mini.check_generator_version(root), lambda: check_data_root(root),
                 lambda: load_split(root, "cirr", "val"), lambda: notebook.ensure_mini(root, "smoke", seed=0),
                 lambda: pretrain_mini(root, out=tmp_path / "new.pt")):
        with pytest.raises(ConfigError, match=re.escape(made_by)) as err:
            call()
        assert f"version {mini.MINI_GENERATOR_VERSION}" in str(err.value) and "--overwrite" in str(err.value)
    assert any(made_by in p for p in check_data(root, verify_images=False, progress=False)["problems"])
    assert _tree_hashes(root) == before and not (tmp_path / "new.pt").exists()  # nothing touched
    mini.check_generator_version(smoke_root)  # the current version passes
    mini.check_generator_version(tmp_path)  # so does a folder without a manifest (real data)


def test_regenerating_an_older_root_moves_it_aside_with_its_weights(tmp_path, smoke_root):
    root = tmp_path / "data"
    shutil.copytree(smoke_root, root)
    _as_older_generator(root, 1)
    (root / "cir-mini.pt").write_bytes(b"pretrained on the old pool")
    (root / "notes.txt").write_text("the user's own file")  # not the generator's: stays where it is
    old = _tree_hashes(root)
    mini.make_mini(root, preset="smoke", seed=0, overwrite=True)
    aside = tmp_path / "data.generator-v1"
    moved = _tree_hashes(aside)
    assert moved == {k: v for k, v in old.items() if k != "notes.txt"}  # every old file, byte for byte
    assert mini.generator_version(aside) == 1 and (aside / "cir-mini.pt").is_file()
    assert mini.generator_version(root) == mini.MINI_GENERATOR_VERSION and not (root / "cir-mini.pt").exists()
    assert (root / "notes.txt").read_text() == "the user's own file"
    _as_older_generator(root, 1)  # a second old root moved aside does not overwrite the first
    mini.make_mini(root, preset="smoke", seed=0, overwrite=True)
    assert _tree_hashes(aside) == moved and (tmp_path / "data.generator-v1-2" / mini.MANIFEST_NAME).is_file()


def test_the_feature_cache_key_holds_the_generator_version(tmp_path, smoke_root):
    from types import SimpleNamespace

    from cir_lib.features import feature_cache_key
    from cir_lib.transform import PreprocessConfig

    root = tmp_path / "data"
    shutil.copytree(smoke_root, root, copy_function=shutil.copy2)
    image = sorted((root / "cirr_dataset" / "dev").glob("*.png"))[0]
    backbone = SimpleNamespace(image_weights_key="w", dtype=None, name="cir-mini")
    preprocess = PreprocessConfig(image_size=64)
    key = feature_cache_key(backbone, [image], preprocess)
    _as_older_generator(root, 1)  # same image file, same stamp: only the version differs
    older = feature_cache_key(backbone, [image], preprocess)
    assert older != key and mini.generator_version_of_file(image) == 1
    (root / mini.MANIFEST_NAME).unlink()  # real data (no manifest): no version in the key
    assert feature_cache_key(backbone, [image], preprocess) not in (key, older)
    assert mini.generator_version_of_file(image) is None


def test_the_calibration_checks_pass_the_published_profile_and_catch_a_swap():
    from cir_lib.mini_calibration import KEY_RATIOS, PUBLISHED_ZERO_SHOT, profile_checks

    checks = profile_checks(PUBLISHED_ZERO_SHOT)
    assert all(c["ok"] for c in checks) and len(checks) == 9 + len(KEY_RATIOS)
    swapped = {d: {**rows, "text_only": rows["image_only"], "image_only": rows["text_only"]}
               for d, rows in PUBLISHED_ZERO_SHOT.items()}
    failed = {c["check"] for c in profile_checks(swapped) if not c["ok"]}
    assert "cirr recall@1 order" in failed and "fashioniq recall@10 text_only/image_only" in failed
    halved = {d: {**rows, "text_only": {m: v / 2.2 for m, v in rows["text_only"].items()}}
              for d, rows in PUBLISHED_ZERO_SHOT.items()}  # outside the factor 2 on a ratio
    assert "cirr recall@10 text_only/image_only" in {c["check"] for c in profile_checks(halved) if not c["ok"]}


def _doc_table(text: str, heading: str) -> dict:
    """{row label: [cells]} of the first table under `heading` in a markdown page."""
    section = text.split(heading, 1)[1]
    rows = {}
    for line in section.splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        if line.startswith("|") and not line.startswith("| ---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_the_published_numbers_in_the_calibration_page_are_the_ones_the_code_checks():
    from cir_lib.mini_calibration import PUBLISHED_FASHIONIQ_CATEGORIES, PUBLISHED_ZERO_SHOT

    text = (PROJECT_ROOT / "docs" / "mini-calibration.md").read_text(encoding="utf-8")
    labels = {"image only": "image_only", "text only": "text_only", "image + text (sum)": "sum"}
    cirr = _doc_table(text, "### CIRR test1")
    metrics = list(PUBLISHED_ZERO_SHOT["cirr"]["sum"])
    assert cirr["query"] == [m.replace("recall_subset@", "Rs@").replace("recall@", "R@") for m in metrics]
    for label, composer in labels.items():
        assert [float(v) for v in cirr[label]] == [PUBLISHED_ZERO_SHOT["cirr"][composer][m] for m in metrics]
    fashioniq = _doc_table(text, "### FashionIQ val")
    assert fashioniq["query"] == ["shirt", "dress", "toptee", "average"]
    for label, composer in labels.items():
        cells = [tuple(float(v) for v in cell.split(" / ")) for cell in fashioniq[label]]
        rows = PUBLISHED_FASHIONIQ_CATEGORIES[composer]
        assert cells[:3] == [rows["shirt"], rows["dress"], rows["toptee"]]
        average = PUBLISHED_ZERO_SHOT["fashioniq"][composer]
        assert cells[3] == (average["recall@10"], average["recall@50"])
        # the average is the categories' mean (to the printed rounding), in the page as in the code
        assert all(abs(cells[3][i] - sum(c[i] for c in cells[:3]) / 3) <= 0.005 + 1e-9 for i in (0, 1))


def test_mini_x2_doubles_every_split_and_keeps_the_pool():
    # the same pool (drawn per image from (seed, "pool", ...)) pretrains the same cir-mini, so the
    # mini-x2 profile differs from the mini by the benchmark's size alone
    small, large = mini.PRESETS["mini"], mini.PRESETS["mini-x2"]
    for field in dataclasses.fields(small):
        want = getattr(small, field.name) * (1 if field.name.startswith("pool_") else 2)
        assert getattr(large, field.name) == want, field.name
    assert "mini-x2" in build_parser().parse_args(["make-mini", "--out", "x", "--preset", "mini-x2"]).preset


def test_zero_shot_profile_summary_rows_name_the_seeds_and_the_failing_checks(tmp_path):
    from cir_lib.mini_calibration import PUBLISHED_ZERO_SHOT

    tool = load_tool("zero_shot_profile")
    weak_caption = {d: {**rows, "text_only": {m: v / 2.5 for m, v in rows["text_only"].items()}}
                    for d, rows in PUBLISHED_ZERO_SHOT.items()}
    files = []
    for i, (measured, pretrain_seed) in enumerate([(PUBLISHED_ZERO_SHOT, 0), (weak_caption, 3)]):
        files.append(tmp_path / f"run{i}.json")
        files[-1].write_text(json.dumps({"seed": 7, "pretrain_seed": pretrain_seed, "measured": measured}))
    assert tool.main(["--summarize", *map(str, files)]) == 0
    rows = tool.format_summary([json.loads(f.read_text()) for f in files]).splitlines()
    assert rows[2].startswith("| 7 | 0 | 17/17 |") and rows[2].endswith("| none |")
    assert rows[3].startswith("| 7 | 3 |") and "17/17" not in rows[3] and "cirr recall@1 order" in rows[3]
    assert "(no)" in rows[3] and rows[-1].startswith("| published |")


def test_the_zero_shot_profile_of_a_finished_run_comes_from_its_metrics_file():
    from cir_lib.methods import Method
    from cir_lib.mini_calibration import PUBLISHED_ZERO_SHOT, measured_from_metrics, profile_checks

    def rows(dataset):
        return {Method(c, "zero-shot").label: ({"shirt": {}, "average": m} if dataset == "fashioniq" else m)
                for c, m in PUBLISHED_ZERO_SHOT[dataset].items()}

    val_metrics = {d: {"cir-mini": {"stage 1 sum": {}, **rows(d)}} for d in PUBLISHED_ZERO_SHOT}
    measured = measured_from_metrics(val_metrics)
    assert measured == PUBLISHED_ZERO_SHOT and all(c["ok"] for c in profile_checks(measured))
    two = {d: {"RN50": rows(d), "RN50x4": rows(d)} for d in PUBLISHED_ZERO_SHOT}
    with pytest.raises(ConfigError, match="several backbones"):
        measured_from_metrics(two)
    assert measured_from_metrics(two, backbone="RN50x4") == PUBLISHED_ZERO_SHOT
    with pytest.raises(ConfigError, match="zero-shot text only"):
        measured_from_metrics({"cirr": {"cir-mini": {"zero-shot sum": {}, "zero-shot image only": {}}}})
