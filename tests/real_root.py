"""Test helpers (not a test file): a data root in the real layout with the real annotation files and
placeholder images for exactly what capped loads need, and a random RN50 in OpenAI's weight format.

The real annotation files (no images) live in ../shared/real_annotations beside the project, or in
$CIR_LIB_SHARED/real_annotations; `shared_annotations()` is None when they are absent (skip then).
They are copied into a tmp data root, never into the project.

    >>> root = build_dry_run_root(tmp_path, max_queries=8)      # annotations + placeholders
    >>> weights = write_random_openai_rn50(tmp_path / "RN50.pt")  # OpenAI key layout, random values
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CIR_LIB_SHARED", PROJECT_ROOT.parent / "shared"))
REAL_ANNOTATIONS = SHARED / "real_annotations"

PLACEHOLDER_SIZE = (32, 40)  # (width, height) of every placeholder image
SYNTHETIC_CIRR_TRAIN = 64  # entries of the stand-in cap.rc2.train.json (the shared folder lacks the real one)
SYNTHETIC_CAPTION = "placeholder training caption {i} (not CIRR's)"

# (dataset, split, category) of every split a dry run reads: training (pooled / CIRR train), validation
# and evaluation (FashionIQ val per category, CIRR val), and the CIRR test1 submission.
DRY_RUN_SPLITS = (
    ("fashioniq", "train", None),
    *(("fashioniq", "val", c) for c in ("dress", "shirt", "toptee")),
    ("cirr", "train", None),
    ("cirr", "val", None),
    ("cirr", "test1", None),
)


def shared_annotations() -> Optional[Path]:
    """The folder holding fashionIQ/ and cirr/ real annotation files, or None when absent."""
    if (REAL_ANNOTATIONS / "fashionIQ").is_dir() and (REAL_ANNOTATIONS / "cirr").is_dir():
        return REAL_ANNOTATIONS
    return None


def copy_annotations(root: Path, annotations: Path) -> Path:
    """Copy the annotation files into `root` in the real layout; return root.

    fashionIQ/{captions,image_splits} -> root/fashionIQ_dataset/..., cirr/{captions,image_splits} ->
    root/cirr_dataset/cirr/.... When CIRR's training captions are absent (the shared folder holds
    only val and test1 captions), a stand-in cap.rc2.train.json is written (`write_cirr_train_captions`).
    """
    root = Path(root)
    for src, dst in ((annotations / "fashionIQ", root / "fashionIQ_dataset"),
                     (annotations / "cirr", root / "cirr_dataset" / "cirr")):
        for sub in ("captions", "image_splits"):
            shutil.copytree(src / sub, dst / sub)
            for f in (dst / sub).iterdir():  # the shared files are read-only; the copies need not be
                f.chmod(0o644)
    train_captions = root / "cirr_dataset" / "cirr" / "captions" / "cap.rc2.train.json"
    if not train_captions.is_file():
        write_cirr_train_captions(root)
    return root


def write_cirr_train_captions(root: Path, n: int = SYNTHETIC_CIRR_TRAIN) -> Path:
    """A stand-in cap.rc2.train.json over the real split.rc2.train.json names.

    Entry i: the img_set is the split file's names 6i..6i+5, the reference its first, the target its
    second, pairid i, a placeholder caption. Only the format is CIRR's: enough for code paths, not
    for numbers.
    """
    base = Path(root) / "cirr_dataset" / "cirr"
    names = list(json.loads((base / "image_splits" / "split.rc2.train.json").read_text()))
    entries = []
    for i in range(min(n, len(names) // 6)):
        members = names[6 * i:6 * i + 6]
        entries.append({"pairid": i, "reference": members[0], "target_hard": members[1],
                        "target_soft": {members[1]: 1.0}, "caption": SYNTHETIC_CAPTION.format(i=i),
                        "img_set": {"id": i, "members": members}})
    path = base / "captions" / "cap.rc2.train.json"
    path.write_text(json.dumps(entries))
    return path


def placeholder_colour(name: str) -> tuple:
    """A deterministic RGB colour per file name (distinct images get distinct features)."""
    digest = hashlib.sha256(name.encode()).digest()
    return digest[0], digest[1], digest[2]


def write_placeholder(path: Path) -> None:
    """A small solid-colour image at `path` (JPEG or PNG by suffix), the same bytes every time."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", PLACEHOLDER_SIZE, placeholder_colour(path.name))
    image.save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")


def write_placeholders(root: Path, max_queries: int, splits=DRY_RUN_SPLITS) -> list:
    """Placeholder images for exactly the files capped loads of `splits` need; returns their paths."""
    from cir_lib.data import capped_image_files

    written = {}
    for dataset, split, category in splits:
        for path in capped_image_files(root, dataset, split, category, max_queries):
            if path not in written:
                write_placeholder(path)
                written[path] = True
    return list(written)


def build_dry_run_root(root: Path, max_queries: int, annotations: Optional[Path] = None) -> Path:
    """A data root with the real annotation files and placeholders for capped loads of every dry-run split.

    Args:
        root: an empty (or absent) folder.
        max_queries: the cap the placeholders serve (`load_split(..., max_queries=...)`).
        annotations: the real annotation folder (default: `shared_annotations()`).
    Returns:
        root.
    """
    annotations = annotations or shared_annotations()
    if annotations is None:
        raise FileNotFoundError(f"real annotation files not found at {REAL_ANNOTATIONS}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    copy_annotations(root, annotations)
    write_placeholders(root, max_queries)
    return root


def write_random_openai_rn50(path: Path, seed: int = 0) -> Path:
    """An RN50 weights file in OpenAI's layout with random values, written with torch.save.

    The state dict of OpenAI's RN50.pt (a TorchScript archive) as a plain dict: keys "visual.layer1.0.
    conv1.weight", "transformer.resblocks.0....", "text_projection", "logit_scale", ... in fp16, plus
    the int tensors "input_resolution", "context_length", "vocab_size" by which the kit recognises
    OpenAI's format (QuickGELU). open_clip's random init under a fixed seed; no network. About 200 MB.
    """
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model("RN50", pretrained=None, force_quick_gelu=True)
    state = {k: v.detach().half() if v.is_floating_point() else v.detach()
             for k, v in model.state_dict().items()}
    state["input_resolution"] = torch.tensor(model.visual.image_size if isinstance(model.visual.image_size, int)
                                             else model.visual.image_size[0])
    state["context_length"] = torch.tensor(model.context_length)
    state["vocab_size"] = torch.tensor(model.vocab_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
