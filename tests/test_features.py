"""Feature extraction and its on-disk cache (hit, and invalidation by each of its three keys)."""

from __future__ import annotations

import copy
import json
import os
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from cir_lib.backbone import load_backbone
from cir_lib.errors import ConfigError, ImageError
from cir_lib.features import (feature_cache_key, image_features, memoized_text_features, query_features,
                              text_features)
from cir_lib.transform import PreprocessConfig, make_transform

PRE = PreprocessConfig("targetpad", image_size=64)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return load_backbone("cir-mini")


@pytest.fixture
def images(tmp_path):
    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(10):
        w, h = (64 + 8 * i, 80) if i % 2 else (72, 96)
        pixels = (torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()
        path = tmp_path / "images" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def counter(backbone, monkeypatch):
    """Counts the images the model encodes."""
    seen = {"images": 0}
    original = backbone.model.encode_image

    def counting(images, *a, **k):
        seen["images"] += images.shape[0]
        return original(images, *a, **k)

    monkeypatch.setattr(backbone.model, "encode_image", counting)
    return seen


def test_features_are_raw_in_order_and_batch_independent(backbone, images):
    feats = image_features(backbone, images, PRE, batch_size=4)
    assert feats.shape == (10, 128) and feats.dtype == torch.float32
    transform = make_transform(PRE)
    with torch.no_grad():
        direct = backbone.model.eval().encode_image(
            torch.stack([transform(Image.open(p)) for p in images[::-1]])
        )
    assert torch.allclose(feats, direct.flip(0), atol=1e-4)
    assert torch.allclose(image_features(backbone, images, PRE, batch_size=3), feats, atol=1e-5)
    assert not torch.allclose(feats.norm(dim=-1), torch.ones(10))  # raw, unnormalized


def test_second_call_encodes_nothing(backbone, images, counter, tmp_path):
    cache = tmp_path / "cache"
    first = image_features(backbone, images, PRE, cache_dir=cache, batch_size=4)
    assert counter["images"] == 10
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".pt")  # no temporaries
    meta = json.loads((cache / files[0]).read_text())
    assert meta["n_images"] == 10 and meta["preprocess"] == PRE.key() and meta["image_weights_key"] == backbone.image_weights_key
    second = image_features(backbone, images, PRE, cache_dir=cache, batch_size=4)
    assert counter["images"] == 10  # nothing encoded
    assert torch.equal(first, second)


def test_changed_weights_invalidate(backbone, images, counter, tmp_path):
    cache = tmp_path / "cache"
    image_features(backbone, images, PRE, cache_dir=cache)
    saved = backbone.model.visual.attnpool.c_proj.weight.detach().clone()
    with torch.no_grad():
        backbone.model.visual.attnpool.c_proj.weight.mul_(1.5)  # as an optimizer step would
    try:
        changed = image_features(backbone, images, PRE, cache_dir=cache)
        assert counter["images"] == 20
    finally:
        with torch.no_grad():
            backbone.model.visual.attnpool.c_proj.weight.copy_(saved)
    original = image_features(backbone, images, PRE, cache_dir=cache)
    assert counter["images"] == 20  # the original weights hit their entry again
    assert not torch.allclose(changed, original)


def test_text_tower_changes_keep_image_features_cached(backbone, images, counter, tmp_path):
    # a text-only fine-tune leaves the image tower, hence the image features, exactly as they were
    cache = tmp_path / "cache"
    before = image_features(backbone, images, PRE, cache_dir=cache)
    whole_key = backbone.weights_key
    saved = backbone.model.text_projection.detach().clone()
    with torch.no_grad():
        backbone.model.text_projection.mul_(1.5)
    try:
        assert backbone.weights_key != whole_key
        assert torch.equal(image_features(backbone, images, PRE, cache_dir=cache), before)
        assert counter["images"] == 10
    finally:
        with torch.no_grad():
            backbone.model.text_projection.copy_(saved)


def test_changed_preprocessing_invalidates(backbone, images, counter, tmp_path):
    cache = tmp_path / "cache"
    image_features(backbone, images, PRE, cache_dir=cache)
    square = image_features(backbone, images, PreprocessConfig("squarepad", image_size=64), cache_dir=cache)
    assert counter["images"] == 20
    image_features(backbone, images, PreprocessConfig("targetpad", image_size=64, ratio=1.5), cache_dir=cache)
    assert counter["images"] == 30
    assert not torch.allclose(square, image_features(backbone, images, PRE, cache_dir=cache))
    assert counter["images"] == 30


def test_changed_image_list_invalidates(backbone, images, counter, tmp_path):
    cache = tmp_path / "cache"
    full = image_features(backbone, images, PRE, cache_dir=cache)
    subset = image_features(backbone, images[:7], PRE, cache_dir=cache)
    assert counter["images"] == 17 and torch.allclose(subset, full[:7], atol=1e-5)
    reordered = image_features(backbone, images[::-1], PRE, cache_dir=cache)
    assert counter["images"] == 27 and torch.allclose(reordered, full.flip(0), atol=1e-5)
    # an image rewritten in place under the same name is not served stale features
    Image.new("RGB", (70, 70), (200, 10, 10)).save(images[3])
    st = os.stat(images[3])
    os.utime(images[3], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    renewed = image_features(backbone, images, PRE, cache_dir=cache)
    assert counter["images"] == 37
    assert not torch.allclose(renewed[3], full[3]) and torch.allclose(renewed[4], full[4], atol=1e-5)


def test_cache_key_covers_exactly_the_three_inputs(backbone, images):
    key = feature_cache_key(backbone, images, PRE)
    assert feature_cache_key(backbone, list(images), PreprocessConfig("targetpad", 64, 1.25)) == key
    assert feature_cache_key(backbone, images[1:], PRE) != key
    assert feature_cache_key(backbone, images, PreprocessConfig("clip", 64)) != key


def test_cache_key_carries_the_precision_and_the_sidecar_records_it(backbone, images, tmp_path, monkeypatch):
    import cir_lib.features as features

    key = feature_cache_key(backbone, images, PRE)
    # the payload names the precision: another precision gives another key (old bf16 caches are not reused)
    monkeypatch.setattr(features, "precision_name", lambda bb: "bf16")
    assert feature_cache_key(backbone, images, PRE) != key
    monkeypatch.undo()
    assert feature_cache_key(backbone, images, PRE) == key
    # the key does not depend on the device any more: fp32 everywhere
    assert feature_cache_key(backbone, images, PRE, torch.device("cuda")) == key
    # a model loaded in half precision is keyed as such
    half = SimpleNamespace(model=copy.deepcopy(backbone.model).to(torch.bfloat16),
                           image_weights_key=backbone.image_weights_key)
    assert features.precision_name(half) == "bf16" and feature_cache_key(half, images, PRE) != key
    image_features(backbone, images, PRE, cache_dir=tmp_path / "cache")
    meta = json.loads(next((tmp_path / "cache").glob("*.json")).read_text())
    assert meta["precision"] == "fp32" == features.FEATURE_PRECISION


def test_features_are_fp32_even_under_an_enclosing_autocast(backbone, images):
    """A training step's autocast (bf16 here, on the CPU) must not leak into evaluation features."""
    transform = make_transform(PRE)
    batch = torch.stack([transform(Image.open(p)) for p in images])
    tokens = backbone.tokenize(["is red and has long sleeves", "a dog on a sofa"])
    model = backbone.model.eval()
    with torch.no_grad():
        plain_images, plain_text = model.encode_image(batch), model.encode_text(tokens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            leaked = model.encode_image(batch)
            feats = image_features(backbone, images, PRE, batch_size=10)
            text = text_features(backbone, tokens)
    assert not torch.allclose(leaked.float(), plain_images, atol=1e-4)  # autocast does change them
    assert feats.dtype == torch.float32 and torch.allclose(feats, plain_images, atol=1e-5)
    assert text.dtype == torch.float32 and torch.allclose(text, plain_text, atol=1e-5)


def test_damaged_cache_entry_is_recomputed(backbone, images, counter, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = image_features(backbone, images, PRE, cache_dir=cache)
    entry = next(cache.glob("*.pt"))
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    again = image_features(backbone, images, PRE, cache_dir=cache)
    assert counter["images"] == 20 and torch.equal(first, again)
    assert "unreadable" in caplog.text
    image_features(backbone, images, PRE, cache_dir=cache)
    assert counter["images"] == 20  # repaired


def test_bad_inputs(backbone, images, tmp_path):
    with pytest.raises(ConfigError, match="image_size=64"):
        image_features(backbone, images, PreprocessConfig("targetpad", image_size=224))
    missing = images[:3] + [tmp_path / "images" / "gone.png"]
    with pytest.raises(ImageError, match=r"gone\.png.*dress val"):
        image_features(backbone, missing, PRE, split_label="fashioniq dress val", cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())  # nothing cached
    assert image_features(backbone, [], PRE).shape == (0, 128)


def test_text_features_and_query_features(backbone, images):
    captions = ["is red and longer", "has a floral print", "Is shorter and blue"]
    feats = text_features(backbone, captions, batch_size=2)
    assert feats.shape == (3, 128)
    with torch.no_grad():
        assert torch.allclose(feats, backbone.model.eval().encode_text(backbone.tokenize(captions)), atol=1e-5)
    assert torch.allclose(text_features(backbone, backbone.tokenize(captions)), feats, atol=1e-6)

    split = SimpleNamespace(
        image_paths=images, image_names=[p.stem for p in images], label="fake val",
        queries=[0, 1, 2], reference_indices=torch.tensor([4, 0, 4]),
    )
    index = image_features(backbone, split, PRE)
    ref, txt = query_features(backbone, split, index, captions)
    assert torch.equal(ref, index[[4, 0, 4]]) and torch.allclose(txt, feats, atol=1e-5)
    with pytest.raises(ConfigError, match="2 captions for 3 queries"):
        query_features(backbone, split, index, captions[:2])


def test_query_captions_are_encoded_once_per_encoder(backbone, monkeypatch):
    """A table's rows share their encoders: the second row's captions come from the memo, bit for bit
    what encoding them again gives, and new weights, captions or batch size encode again."""
    captions = ["is red and longer", "has a floral print", "Is shorter and blue"]
    model = copy.deepcopy(backbone.model)
    other = copy.copy(backbone)
    other.model, other._key_cache = model, (None, None)
    seen = {"calls": 0}
    original = model.encode_text

    def counting(*a, **k):
        seen["calls"] += 1
        return original(*a, **k)

    monkeypatch.setattr(model, "encode_text", counting)
    monkeypatch.setattr("cir_lib.features.text_length", lambda m, t: None)  # through model.encode_text
    first = memoized_text_features(other, captions, batch_size=2)
    assert seen["calls"] == 2  # two batches
    again = memoized_text_features(other, captions, batch_size=2)
    assert seen["calls"] == 2 and torch.equal(again, first)
    assert torch.equal(first, text_features(other, captions, batch_size=2))  # what encoding again gives
    again.add_(1.0)  # a caller's in-place change does not reach the memo
    assert torch.equal(memoized_text_features(other, captions, batch_size=2), first)
    memoized_text_features(other, captions[:2], batch_size=2)
    memoized_text_features(other, captions, batch_size=3)
    assert seen["calls"] == 2 + 2 + 1 + 1  # the text_features above, other captions, another batch size
    with torch.no_grad():
        model.text_projection.mul_(2.0)  # new weights: encoded again
    changed = memoized_text_features(other, captions, batch_size=2)
    assert seen["calls"] == 8 and torch.allclose(changed, 2 * first, atol=1e-5)
