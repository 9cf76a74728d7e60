"""Image files of a split: opening them as the original code does, telling why one is unusable, and
the Dataset a DataLoader reads.

    verify_image(path) -> None or why the image is unusable (MISSING, FOLDER, empty, not an image,
                     truncated or corrupt, too large (a decompression bomb), a symbolic-link loop)
    image_status(paths, verify) -> {path: None or why}   (threads decode; no decoding with verify=False)
    open_image(path, split_label) -> the PIL image, fully decoded, in the file's own mode; ImageError
                     naming the file and the split when missing/unreadable
    ImageDataset(paths, transform, split_label)  -> item i = transformed image tensor;
                     ImageDataset.from_split(split, transform) for a split's index images

The annotation readers (`load_split`, `Split`) are in `cir_lib.data`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from PIL import Image, UnidentifiedImageError

from cir_lib.errors import ImageError
from cir_lib.storage import link_problem
from cir_lib.progress import progress_bar

if TYPE_CHECKING:  # annotations only: cir_lib.data imports this module
    from cir_lib.data import Split

# How each entry point spells skip_missing (named in the errors about missing images).
SKIP_MISSING_CLI = ("cir-lib evaluate: --skip-missing; finetune / train-combiner / reproduce: "
                    "--set skip_missing=true; notebooks: the skip_missing parameter")

MISSING = "missing"  # verify_image's answer for an absent file
# PIL refuses images of more than 2 x Image.MAX_IMAGE_PIXELS pixels (a decompression bomb: a small file
# declaring a huge image). The kit keeps PIL's limit; CIR_LIB_MAX_IMAGE_PIXELS raises it for genuinely
# huge images (every entry point: command line, notebooks, `cir-lib reproduce`'s kernels).
MAX_PIXELS_ENV = "CIR_LIB_MAX_IMAGE_PIXELS"
FOLDER = "a folder, not an image file"  # verify_image's answer for a folder where an image should be
VERIFY_WORKERS = min(8, 2 * (os.cpu_count() or 1))  # threads decoding images (PIL releases the GIL)


def apply_pixel_limit() -> int:
    """Set PIL's decompression-bomb limit from CIR_LIB_MAX_IMAGE_PIXELS when it is set; return the
    number of pixels above which an image is refused (twice PIL's MAX_IMAGE_PIXELS)."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if value:
        try:
            limit = int(value.replace("_", "").replace(",", ""))
        except ValueError:
            limit = 0
        if limit <= 0:
            raise ImageError(f"{MAX_PIXELS_ENV}={value!r} is not a positive number of pixels")
        Image.MAX_IMAGE_PIXELS = limit // 2  # PIL refuses above twice this (and warns above it)
    return 2 * int(Image.MAX_IMAGE_PIXELS or 0)


def bomb_reason(err: Exception) -> str:
    """Why an image was refused as a decompression bomb, with PIL's limit and how to raise it."""
    return (f"too large to decode safely ({str(err).rstrip('.')}; PIL's limit against decompression bombs "
            f"is {2 * int(Image.MAX_IMAGE_PIXELS or 0):,} pixels: for a genuinely huge image, set "
            f"{MAX_PIXELS_ENV} to a larger number of pixels)")


def verify_image(path) -> str | None:
    """Whether an image file is usable: None if it decodes fully, else why not.

    Returns:
        None (usable); MISSING ("missing") when absent; FOLDER when the path is a folder; otherwise the
        reason it is unreadable ("empty file (0 bytes)", "not an image: ...", "truncated or corrupt:
        ..."). JPEGs are decoded at 1/8 scale (`draft`): the whole stream is still read, so truncation
        is caught, at a fraction of the cost.

    Example:
        >>> verify_image("data/fashionIQ_dataset/images/B0084Y8XIU.jpg") is None
        True
    """
    apply_pixel_limit()
    if os.path.isdir(path):
        return FOLDER
    link = link_problem(path)
    if link:
        return link
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
    except FileNotFoundError:
        return MISSING
    except OSError as err:
        return f"unreadable: {err.strerror or err}"
    try:
        with Image.open(path) as im:
            im.verify()  # structure and checksums (PNG CRCs)
    except FileNotFoundError:
        return MISSING
    except UnidentifiedImageError:
        return "not an image (no image format recognizes its content)"
    except Image.DecompressionBombError as err:
        return bomb_reason(err)
    except OSError as err:
        if err.errno is not None:  # the file system refused (permission, I/O error), not the decoder
            return f"unreadable: {err.strerror or err}"
        return f"truncated or corrupt: {type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - any decoder failure means "unreadable"
        return f"truncated or corrupt: {type(err).__name__}: {err}"
    try:
        with Image.open(path) as im:
            im.draft("RGB", (1, 1))  # JPEG: DCT-scaled decode, still reads the whole stream
            im.load()  # catches truncated files that verify() lets through
    except Exception as err:  # noqa: BLE001
        return f"truncated or corrupt: {type(err).__name__}: {err}"
    return None


def image_status(paths: Sequence, verify: bool = True, workers: int | None = None,
                 progress: bool = True) -> dict:
    """Check many image files at once.

    Args:
        paths: image paths (duplicates allowed).
        verify: decode every present file (`verify_image`); False only tells absent files and folders
            from present files (no decoding: fast).
        workers: decoding threads (default VERIFY_WORKERS).
        progress: show a tqdm bar while decoding.

    Returns:
        {path: None (usable) / MISSING / FOLDER / reason unreadable}.
    """
    status: dict = {}
    present = []
    for p in dict.fromkeys(paths):
        if os.path.isfile(p):
            present.append(p)
            status[p] = None
        else:  # a symbolic-link loop or a dangling link is there, but unreadable: not "missing"
            status[p] = FOLDER if os.path.isdir(p) else (link_problem(p) or MISSING)
    if verify and present:
        with ThreadPoolExecutor(max_workers=workers or VERIFY_WORKERS) as pool:
            results = pool.map(verify_image, present)
            for p, res in progress_bar(zip(present, results), total=len(present), desc="verifying images",
                                       unit="img", disable=not progress, leave=False):
                status[p] = res
    return status


def open_image(path, split_label: str = "") -> Image.Image:
    """Open an image fully decoded, in the file's own mode (palette, greyscale, RGBA, CMYK, ...);
    missing / unreadable -> ImageError naming file and split.

    The mode is kept on purpose: the original code pads and resizes the image as opened and converts
    it to RGB last (`cir_lib.transform`); converting here first would change palette, transparent
    and CMYK files.
    """
    where = f" (split {split_label})" if split_label else ""
    apply_pixel_limit()
    link = link_problem(path)
    if link:
        raise ImageError(f"image file {path}{where} is unreadable ({link}); replace it with the image, or "
                         f"load the split with skip_missing=True ({SKIP_MISSING_CLI}) to drop the queries that use it")
    if os.path.isdir(path):
        raise ImageError(
            f"image path {path}{where} is {FOLDER}; put the image file there, or load the split with "
            f"skip_missing=True ({SKIP_MISSING_CLI}) to drop the queries that use it"
        )
    try:
        with Image.open(path) as im:
            im.load()  # force a full decode here: truncated files fail now, not later
            return im
    except FileNotFoundError:
        raise ImageError(
            f"image file {path}{where} is missing; restore it, or load the split with "
            f"skip_missing=True ({SKIP_MISSING_CLI}) to drop the queries that use it"
        ) from None
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"image file {path}{where} is {bomb_reason(err)}; or load the split with skip_missing=True "
            f"({SKIP_MISSING_CLI}) to drop the queries that use it"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(
            f"image file {path}{where} is unreadable ({err}); re-download it, or delete it and use "
            f"skip_missing=True ({SKIP_MISSING_CLI})"
        ) from None


class ImageDataset(torch.utils.data.Dataset):
    """Images for a DataLoader: item i = transform(image at paths[i], in the file's own mode).

    Never returns None: a missing or unreadable file raises ImageError naming it and the split.

    Example:
        >>> ds = ImageDataset(split.image_paths, make_transform(PreprocessConfig()), split.label)
        >>> ds[0].shape
        torch.Size([3, 224, 224])
    """

    def __init__(self, paths: Sequence, transform: Callable | None = None, split_label: str = ""):
        self.paths = [Path(p) for p in paths]
        self.transform = transform
        self.split_label = split_label

    @classmethod
    def from_split(cls, split: Split, transform: Callable | None = None) -> "ImageDataset":
        """The index images of a split."""
        return cls(split.image_paths, transform, split.label)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image = open_image(self.paths[i], self.split_label)
        return self.transform(image) if self.transform is not None else image
