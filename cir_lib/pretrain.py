"""Pretraining the tiny `cir-mini` CLIP from scratch on the mini pool's absolute captions.

It stands in for OpenAI's pretraining in the embedded mini benchmark: one model for both domains
(garments and scenes), trained with the standard CLIP contrastive loss (symmetric cross-entropy over
in-batch image-text pairs, learnable logit scale, as open_clip's ClipLoss). CPU-sized: all captions
are tokenized once and all pool images are decoded and preprocessed once into a uint8 tensor.

CLI: `cir-lib pretrain-mini --data-root DIR [--out FILE] [--epochs N] [--seed N]`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F

from cir_lib.backbone import CHECKPOINT_FORMAT as BACKBONE_FORMAT
from cir_lib.backbone import load_backbone, save_backbone_checkpoint
from cir_lib.constants import CLIP_MEAN, CLIP_STD, MINI_CHECKPOINT, MINI_POOL_DIR
from cir_lib.errors import AnnotationError, ConfigError, TrainingError
from cir_lib.losses import clip_loss
from cir_lib.mini import check_generator_version
from cir_lib.progress import progress_bar
from cir_lib.recipes import PretrainConfig, check_config
from cir_lib.runs import check_output_file
from cir_lib.serialization import KIT_FILE_KINDS, kit_file_kind, load_file
from cir_lib.images import open_image
from cir_lib.transform import PreprocessConfig, make_transform

logger = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_NAME = MINI_CHECKPOINT  # written in the data root unless `out` is given


def _read_pool(data_root: Path) -> tuple:
    pool = data_root / MINI_POOL_DIR
    file = pool / "captions.json"
    if not file.is_file():
        raise AnnotationError(
            f"{file} not found: pretrain-mini needs the mini pool; create it with "
            f"`cir-lib make-mini --out {data_root}` (or pass the --data-root that holds {MINI_POOL_DIR}/)"
        )
    try:
        entries = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{file} is not valid JSON ({err}); regenerate it with cir-lib make-mini") from err
    if not isinstance(entries, list) or not entries:
        raise AnnotationError(f"{file} must be a non-empty JSON list of {{image, caption, domain}} entries")
    images, captions = [], []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str) or not isinstance(
            entry.get("caption"), str
        ):
            raise AnnotationError(f"{file} entry {i} needs string fields 'image' and 'caption': {entry!r}")
        images.append(pool / entry["image"])
        captions.append(entry["caption"])
    return images, captions


def _preload_images(paths: list, kind: str, image_size: int) -> torch.Tensor:
    """Decode and preprocess every image once -> uint8 [N, 3, S, S] (lossless: PIL resizes in uint8)."""
    transform = make_transform(PreprocessConfig(kind, image_size=image_size))
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    out = torch.empty(len(paths), 3, image_size, image_size, dtype=torch.uint8)
    for i, path in enumerate(progress_bar(paths, desc="load pool images", unit="img", leave=False)):
        pixels = transform(open_image(path, "mini_pool")) * std + mean
        out[i] = (pixels * 255).round().clamp(0, 255).to(torch.uint8)
    return out


def _normalize(batch_u8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (batch_u8.float() / 255 - mean) / std


def random_shift(batch_u8: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation of each image by up to max_shift pixels (zero fill, like the padding)."""
    if max_shift <= 0:
        return batch_u8
    n, _, s, _ = batch_u8.shape
    padded = F.pad(batch_u8, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    return torch.stack([padded[i, :, y : y + s, x : x + s] for i, (y, x) in enumerate(offsets.tolist())])


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def _lr_at(step: int, total: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def _recalibrate_batchnorm(model: torch.nn.Module, images_u8: torch.Tensor, batch_size: int) -> None:
    """Set BatchNorm running statistics to the exact averages over the pool under the final weights.

    Training leaves exponential averages of statistics from earlier weights; stage 1, stage 2 and
    evaluation run the model in eval mode, so they would see mismatched normalization otherwise.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    for i in range(0, len(images_u8), batch_size):
        model.encode_image(_normalize(images_u8[i : i + batch_size]))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def _check_replaceable(out: Path) -> None:
    """An existing `out` is replaced only when it is a backbone checkpoint the kit wrote (an earlier
    pretraining): any other file is the user's, and is refused before any work."""
    if not out.exists():
        return
    try:
        kind = kit_file_kind(load_file(out, "existing file"))
    except ConfigError:  # unreadable or unsafe: not ours either
        kind = None
    if kind is None or kind != KIT_FILE_KINDS[BACKBONE_FORMAT.split("/")[0] + "/"]:
        raise ConfigError(f"--out {out} exists and is not a backbone checkpoint written by the kit; pretraining "
                          "would replace it: choose another path (e.g. DATA_ROOT/cir-mini.pt), or delete it first")
    logger.info("replacing %s, written by an earlier pretraining", out)


def pretrain_mini(
    data_root: Union[str, Path], out: Union[str, Path, None] = None, config: Optional[PretrainConfig] = None
) -> Path:
    """Pretrain `cir-mini` from scratch on `data_root/mini_pool/captions.json` and save it.

    Args:
        data_root: folder holding mini_pool/ (written by `cir-lib make-mini`).
        out: checkpoint path; default `data_root/cir-mini.pt`.
        config: hyperparameters (PretrainConfig()).

    Returns:
        The checkpoint path; load it with `load_backbone("cir-mini", str(path))`.

    Raises:
        AnnotationError / ImageError: missing or malformed pool files (named).
        TrainingError: a non-finite loss (names the epoch and step; nothing is written).

    Example:
        >>> path = pretrain_mini("data/mini", config=PretrainConfig(epochs=6, seed=0))
        >>> backbone = load_backbone("cir-mini", str(path))
    """
    config = config or PretrainConfig()
    check_config(config)
    data_root = Path(data_root)
    out = check_output_file(Path(out) if out is not None else data_root / DEFAULT_CHECKPOINT_NAME)
    _check_replaceable(out)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    check_generator_version(data_root)  # a pool of another generator version is refused, never mixed
    start = time.perf_counter()
    paths, captions = _read_pool(data_root)
    backbone = load_backbone(config.model, "none")
    images = _preload_images(paths, config.preprocess, backbone.image_size)
    tokens = backbone.tokenize(captions)  # once: tokenizing per batch dominates CPU time otherwise
    logger.info("pool: %d image-caption pairs loaded in %.1fs", len(paths), time.perf_counter() - start)

    model = backbone.model
    model.train()
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98),
                                  eps=1e-6)
    n = len(paths)
    batch_size = min(config.batch_size, n)
    steps_per_epoch = n // batch_size  # drop the last partial batch: fewer in-batch negatives
    total = steps_per_epoch * config.epochs
    history = []
    step = 0
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        running, seen = 0.0, 0
        bar = progress_bar(range(steps_per_epoch), desc=f"pretrain {epoch + 1}/{config.epochs}", unit="step", leave=False)
        for i in bar:
            idx = order[i * batch_size : (i + 1) * batch_size]
            batch = _normalize(random_shift(images[idx], config.max_shift, generator))
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total, config)
            image_features = F.normalize(model.encode_image(batch), dim=-1)
            text_features = F.normalize(model.encode_text(tokens[idx]), dim=-1)
            loss = clip_loss(image_features, text_features, model.logit_scale.exp())
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"pretraining loss became {loss.item()} at epoch {epoch + 1}, step {i + 1}; nothing was "
                    f"saved. Lower the learning rate (--lr) or change the seed"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))  # as open_clip
            running += loss.item() * len(idx)
            seen += len(idx)
            step += 1
            bar.set_postfix(loss=f"{running / seen:.3f}")
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "loss": running / max(seen, 1), "seconds": round(seconds, 2),
                        "logit_scale": round(float(model.logit_scale.detach().exp()), 3)})
        logger.info("pretrain epoch %d/%d: loss %.4f, %.1fs", epoch + 1, config.epochs, history[-1]["loss"],
                    seconds)

    _recalibrate_batchnorm(model, images, 256)
    model.eval()
    extra = {
        "pretrain_config": asdict(config),
        "history": history,
        "pool": str(data_root / MINI_POOL_DIR / "captions.json"),
        "pairs": n,
        "seconds": round(time.perf_counter() - start, 1),
    }
    save_backbone_checkpoint(backbone, out, extra=extra)
    logger.info("saved %s (%.0fs in all)", out, extra["seconds"])
    return out
