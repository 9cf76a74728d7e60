"""Preprocessing: pad sizes, output shape, normalization, and exactness against a by-hand pipeline."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from cir_lib.constants import CLIP_MEAN, CLIP_STD, PREPROCESS_KINDS
from cir_lib.errors import ConfigError
from cir_lib.transform import PreprocessConfig, make_transform, square_pad, target_pad


def noise_image(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (h, w, channels) if channels else (h, w)
    return Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode)


# ------------------------------------------------------------------------------------ padding sizes


@pytest.mark.parametrize(
    "size, expected",
    [
        ((100, 110), (100, 110)),  # ratio 1.1 < 1.25: untouched
        ((124, 100), (124, 100)),  # 1.24 < 1.25: untouched
        ((100, 200), (160, 200)),  # tall: 30 columns each side -> 200/160 = 1.25
        ((300, 100), (300, 240)),  # wide: 70 rows each side -> 300/240 = 1.25
        ((101, 200), (159, 200)),  # int((160 - 101) / 2) = 29 each side, as the original truncates
        ((100, 125), (100, 125)),  # exactly 1.25: padded by zero pixels
    ],
)
def test_target_pad_sizes(size, expected):
    assert target_pad(Image.new("RGB", size), 1.25).size == expected


def test_target_pad_other_ratio():
    # ratio 1.0 pads any non-square image to a square (as squarepad does)
    assert target_pad(Image.new("RGB", (100, 60)), 1.0).size == (100, 100)
    # ratio 2: 100x150 (1.5) is left alone, 100x300 is padded to 150x300
    assert target_pad(Image.new("RGB", (100, 150)), 2.0).size == (100, 150)
    assert target_pad(Image.new("RGB", (100, 300)), 2.0).size == (150, 300)


@pytest.mark.parametrize(
    "size, expected",
    [((100, 60), (100, 100)), ((60, 100), (100, 100)), ((61, 100), (99, 100)), ((50, 50), (50, 50))],
)
def test_square_pad_sizes(size, expected):
    assert square_pad(Image.new("RGB", size)).size == expected


def test_padding_is_zeros_and_centered():
    image = Image.new("RGB", (100, 200), (255, 255, 255))
    padded = np.asarray(target_pad(image, 1.25))
    assert padded.shape == (200, 160, 3)
    assert (padded[:, :30] == 0).all() and (padded[:, 130:] == 0).all()
    assert (padded[:, 30:130] == 255).all()
    sq = np.asarray(square_pad(Image.new("RGB", (100, 60), (255, 255, 255))))
    assert (sq[:20] == 0).all() and (sq[80:] == 0).all() and (sq[20:80] == 255).all()


# ---------------------------------------------------------------------------------------- pipelines


@pytest.mark.parametrize("kind", PREPROCESS_KINDS)
@pytest.mark.parametrize("size", [(64, 64), (40, 90), (150, 70), (17, 200)])
def test_output_shape_and_dtype(kind, size):
    out = make_transform(PreprocessConfig(kind, image_size=32))(noise_image(*size))
    assert out.shape == (3, 32, 32)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("mode", ["L", "RGBA", "RGB"])
def test_any_mode_becomes_three_channels(mode):
    out = make_transform(PreprocessConfig("targetpad", image_size=16))(noise_image(30, 20, mode=mode))
    assert out.shape == (3, 16, 16)


def test_normalization_of_a_uniform_image():
    color = (10, 128, 250)
    out = make_transform(PreprocessConfig("clip", image_size=8))(Image.new("RGB", (20, 20), color))
    for c in range(3):
        expected = (color[c] / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]
        assert torch.allclose(out[c], torch.full((8, 8), expected), atol=1e-6)


def by_hand(image: Image.Image, kind: str, size: int, ratio: float = 1.25) -> torch.Tensor:
    """The pipeline spelled out with bare PIL and numpy: pad, bicubic resize of the short side,
    center crop, RGB, [0, 1], normalize."""
    w, h = image.size
    pad_w = pad_h = 0
    if kind == "squarepad":
        pad_w, pad_h = int((max(w, h) - w) / 2), int((max(w, h) - h) / 2)
    elif kind == "targetpad" and max(w, h) / min(w, h) >= ratio:
        target = max(w, h) / ratio
        pad_w, pad_h = max(int((target - w) / 2), 0), max(int((target - h) / 2), 0)
    if pad_w or pad_h:
        canvas = Image.new(image.mode, (w + 2 * pad_w, h + 2 * pad_h), 0)
        canvas.paste(image, (pad_w, pad_h))
        image = canvas
    w, h = image.size
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    image = image.resize(new, Image.BICUBIC)
    left = int(round((new[0] - size) / 2.0))
    top = int(round((new[1] - size) / 2.0))
    image = image.crop((left, top, left + size, top + size)).convert("RGB")
    arr = np.asarray(image, dtype=np.float32) / 255.0
    arr = (arr - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


@pytest.mark.parametrize("kind", PREPROCESS_KINDS)
@pytest.mark.parametrize("size", [(90, 40), (40, 90), (60, 70), (33, 77)])
def test_exact_against_by_hand_pipeline(kind, size):
    image = noise_image(*size, seed=size[0])
    out = make_transform(PreprocessConfig(kind, image_size=24))(image)
    assert torch.allclose(out, by_hand(image, kind, 24), atol=1e-5)


def test_kinds_differ_on_elongated_images():
    image = noise_image(40, 120, seed=3)
    outs = {k: make_transform(PreprocessConfig(k, image_size=24))(image) for k in PREPROCESS_KINDS}
    assert not torch.allclose(outs["clip"], outs["targetpad"])
    assert not torch.allclose(outs["squarepad"], outs["targetpad"])
    # a nearly square image is left alone by targetpad, so it matches plain clip exactly
    square = noise_image(50, 55, seed=4)
    clip = make_transform(PreprocessConfig("clip", image_size=24))(square)
    assert torch.equal(make_transform(PreprocessConfig("targetpad", image_size=24))(square), clip)


# ------------------------------------------------------------------------------------------- config


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(ConfigError, match="clip, squarepad, targetpad"):
        PreprocessConfig(kind="resize")

    class Fake:  # a config built around the dataclass' validation
        kind, image_size, ratio = "bogus", 32, 1.25

    with pytest.raises(ConfigError, match="valid kinds"):
        make_transform(Fake())


@pytest.mark.parametrize("bad", [dict(image_size=0), dict(image_size=2.5), dict(ratio=0.5)])
def test_bad_size_or_ratio(bad):
    with pytest.raises(ConfigError):
        PreprocessConfig(**{"kind": "targetpad", **bad})


def test_key_is_stable_and_distinguishes_configs():
    assert PreprocessConfig().key() == PreprocessConfig("targetpad", 224, 1.25).key() == "targetpad1.25-224"
    keys = {
        PreprocessConfig("targetpad", 224).key(),
        PreprocessConfig("targetpad", 288).key(),
        PreprocessConfig("targetpad", 224, ratio=1.5).key(),
        PreprocessConfig("squarepad", 224).key(),
        PreprocessConfig("clip", 224).key(),
    }
    assert len(keys) == 5
    assert PreprocessConfig("clip", 64, ratio=2.0).key() == PreprocessConfig("clip", 64).key()


def test_transform_is_picklable():
    t = make_transform(PreprocessConfig("squarepad", image_size=16))
    t2 = pickle.loads(pickle.dumps(t))
    image = noise_image(20, 30)
    assert torch.equal(t(image), t2(image))


# --------------------------------------------------- bit-exactness with the original code, every mode
# The reference below is the published pipeline (CLIP4Cir src/data_utils.py, and CLIP's own for "clip")
# written out with the torchvision calls it makes, applied as the original applies it: to the file as
# `PIL.Image.open` returns it, RGB conversion last. It shares no code with cir_lib.transform.

from torchvision.transforms import CenterCrop, Compose, Normalize, Resize, ToTensor  # noqa: E402
from torchvision.transforms import functional as TF  # noqa: E402

from cir_lib.images import ImageDataset  # noqa: E402

_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)


def _reference_square_pad(image):
    w, h = image.size
    max_wh = max(w, h)
    hp = int((max_wh - w) / 2)
    vp = int((max_wh - h) / 2)
    return TF.pad(image, [hp, vp, hp, vp], 0, "constant")


def _reference_target_pad(ratio):
    def pad(image):
        w, h = image.size
        if max(w, h) / min(w, h) < ratio:
            return image
        scaled_max_wh = max(w, h) / ratio
        hp = max(int((scaled_max_wh - w) / 2), 0)
        vp = max(int((scaled_max_wh - h) / 2), 0)
        return TF.pad(image, [hp, vp, hp, vp], 0, "constant")
    return pad


def reference_transform(kind: str, dim: int, ratio: float = 1.25):
    first = {"squarepad": [_reference_square_pad], "targetpad": [_reference_target_pad(ratio)], "clip": []}[kind]
    return Compose(first + [
        Resize(dim, interpolation=Image.BICUBIC),
        CenterCrop(dim),
        lambda image: image.convert("RGB"),
        ToTensor(),
        Normalize(_MEAN, _STD),
    ])


def mode_image(mode: str, w: int, h: int, seed: int) -> Image.Image:
    """Random pixels in `mode` (P: a random palette; RGBA / LA: random alpha)."""
    rng = np.random.default_rng(seed)
    bands = {"RGB": 3, "L": 1, "P": 1, "RGBA": 4, "LA": 2, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, size=(h, w, bands), dtype=np.uint8)
    if mode in ("L", "P"):
        image = Image.fromarray(pixels[..., 0], mode="L")
        if mode == "P":
            image = image.convert("P")  # keeps the values as indices; give it a random palette
            image.putpalette(rng.integers(0, 256, size=768, dtype=np.uint8).tolist())
        return image
    if mode == "LA":
        return Image.merge("LA", [Image.fromarray(pixels[..., i], mode="L") for i in range(2)])
    if mode == "CMYK":
        return Image.merge("CMYK", [Image.fromarray(pixels[..., i], mode="L") for i in range(4)])
    return Image.fromarray(pixels, mode=mode)


MODES = ["RGB", "L", "P", "RGBA", "LA", "CMYK"]
# (w, h): square, below 1.25, exactly 1.25, just above, tall, wide, odd sizes
SHAPES = [(40, 40), (50, 60), (48, 60), (47, 60), (40, 90), (120, 50), (37, 101)]


def _save(image: Image.Image, path) -> None:
    image.save(path, format="TIFF" if image.mode == "CMYK" else "PNG")  # both lossless


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", PREPROCESS_KINDS)
def test_bit_exact_with_the_original_pipeline_in_every_mode(tmp_path, mode, kind):
    transform = make_transform(PreprocessConfig(kind, image_size=24))
    reference = reference_transform(kind, 24)
    for i, (w, h) in enumerate(SHAPES):
        path = tmp_path / f"{mode}_{w}x{h}.{'tif' if mode == 'CMYK' else 'png'}"
        _save(mode_image(mode, w, h, seed=i), path)
        with Image.open(path) as opened:
            assert opened.mode == mode
            expected = reference(opened)
        got = ImageDataset([path], transform, "test")[0]  # the kit's reader + transform
        assert got.dtype == expected.dtype and got.shape == (3, 24, 24)
        assert torch.equal(got, expected), f"{mode} {w}x{h} {kind}"


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "CMYK"])
def test_converting_to_rgb_first_would_differ(tmp_path, mode):
    """Why the order matters: RGB first gives other pixels for these modes (padded images)."""
    image = mode_image(mode, 40, 90, seed=7)
    reference = reference_transform("targetpad", 24)(image)
    rgb_first = make_transform(PreprocessConfig("targetpad", image_size=24))(image.convert("RGB"))
    assert not torch.equal(rgb_first, reference)
    assert torch.equal(make_transform(PreprocessConfig("targetpad", image_size=24))(image), reference)
