"""Image preprocessing: the three pipelines of CLIP4Cir ("clip", "squarepad", "targetpad").

Every pipeline ends the way CLIP's own does: bicubic resize of the short side to the model's input
size, center crop, RGB, ToTensor, normalize with the CLIP mean / std. "squarepad" first pads the
image to a square; "targetpad" pads only images whose long side / short side is at least `ratio`,
and only up to that ratio (zeros, centered). The padding arithmetic (integer truncation, the same
amount on both sides) follows the original code.

As in the original, the pipeline takes the image in the file's own mode (`images.open_image` keeps
it) and converts it to RGB last, after padding, resizing and cropping. For RGB and greyscale files
the order does not matter; for the others it does, and the output is the original's bit for bit:
palette ("P") files are padded with palette index 0 and resized with nearest-neighbour (Pillow's
rule for palette images), RGBA / LA files with transparent black, CMYK files with CMYK 0 (white).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as F

from cir_lib.constants import CLIP_MEAN, CLIP_STD, PREPROCESS_KINDS, TARGETPAD_RATIO
from cir_lib.errors import ConfigError


@dataclass(frozen=True)
class PreprocessConfig:
    """How images become model inputs. `key()` names it in feature caches."""

    kind: str = "targetpad"  # one of PREPROCESS_KINDS: "clip", "squarepad", "targetpad"
    image_size: int = 224  # model input size (square), e.g. backbone.image_size
    ratio: float = TARGETPAD_RATIO  # targetpad only: pad images whose long/short side >= ratio to it

    def __post_init__(self):
        _validate(self)

    def key(self) -> str:
        """A stable short string for cache keys, e.g. "targetpad1.25-224" or "clip-224"."""
        if self.kind == "targetpad":
            return f"targetpad{float(self.ratio):g}-{int(self.image_size)}"
        return f"{self.kind}-{int(self.image_size)}"


def _validate(cfg) -> None:
    if cfg.kind not in PREPROCESS_KINDS:
        raise ConfigError(
            f"unknown preprocessing kind {cfg.kind!r}; valid kinds: {', '.join(PREPROCESS_KINDS)}"
        )
    try:
        size = operator.index(cfg.image_size)
    except TypeError:
        size = 0
    if isinstance(cfg.image_size, bool) or size < 1:
        raise ConfigError(f"preprocessing image_size must be a positive integer, got {cfg.image_size!r}")
    if cfg.kind == "targetpad" and not (float(cfg.ratio) >= 1.0):
        raise ConfigError(f"targetpad ratio must be >= 1 (long side / short side), got {cfg.ratio!r}")


def square_pad(image: Image.Image) -> Image.Image:
    """Pad with zeros (centered) to a square, as the original SquarePad.

    Example: a 100x60 (w x h) image gets 20 rows above and below -> 100x100.
    """
    w, h = image.size
    max_wh = max(w, h)
    hp = int((max_wh - w) / 2)
    vp = int((max_wh - h) / 2)
    return F.pad(image, [hp, vp, hp, vp], fill=0, padding_mode="constant")


def target_pad(image: Image.Image, ratio: float = TARGETPAD_RATIO) -> Image.Image:
    """Pad with zeros (centered) so that long side / short side == ratio; images already below the
    ratio are returned unchanged. Same arithmetic as the original TargetPad.

    Example: ratio 1.25, a 100x200 (w x h) image gets 30 columns left and right -> 160x200.
    """
    w, h = image.size
    if max(w, h) / min(w, h) < ratio:
        return image
    scaled_max_wh = max(w, h) / ratio
    hp = max(int((scaled_max_wh - w) / 2), 0)
    vp = max(int((scaled_max_wh - h) / 2), 0)
    return F.pad(image, [hp, vp, hp, vp], fill=0, padding_mode="constant")


class ImageTransform:
    """PIL image (any mode, as opened) -> normalized float tensor [3, S, S]. Picklable (DataLoader workers)."""

    def __init__(self, cfg: PreprocessConfig):
        self.cfg = cfg
        self._mean = list(CLIP_MEAN)
        self._std = list(CLIP_STD)

    def pad(self, image: Image.Image) -> Image.Image:
        """The padding step alone (identity for "clip")."""
        if self.cfg.kind == "squarepad":
            return square_pad(image)
        if self.cfg.kind == "targetpad":
            return target_pad(image, self.cfg.ratio)
        return image

    def __call__(self, image: Image.Image) -> torch.Tensor:
        # Pad, resize and crop in the image's own mode; RGB last (the original's order, see above).
        size = self.cfg.image_size
        image = self.pad(image)
        image = F.resize(image, size, interpolation=InterpolationMode.BICUBIC)
        image = F.center_crop(image, [size, size])
        image = image.convert("RGB")
        tensor = F.to_tensor(image)
        return F.normalize(tensor, self._mean, self._std)

    def __repr__(self) -> str:
        return f"ImageTransform({self.cfg})"


def make_transform(cfg: PreprocessConfig) -> ImageTransform:
    """Build the preprocessing pipeline of `cfg`.

    Args:
        cfg: the PreprocessConfig (kind, image_size, ratio).
    Returns:
        A callable mapping a PIL image to a float tensor [3, image_size, image_size].
    Raises:
        ConfigError: unknown kind (the message lists the valid ones) or a bad size / ratio.

    Example:
        >>> t = make_transform(PreprocessConfig("targetpad", image_size=64))
        >>> t(Image.new("RGB", (80, 120))).shape
        torch.Size([3, 64, 64])
    """
    _validate(cfg)
    return ImageTransform(cfg)
