"""Stage 1 of CLIP4Cir (`cir-lib finetune`): fine-tune CLIP with the element-wise-sum contrastive loss.

CLIP's text encoder (workshop), image encoder or both (journal) are trained with
logits = 100 * normalize(ref + text) @ normalize(target).T, cross-entropy against the diagonal
(in-batch negatives). AdamW, CLIP kept in eval() mode. Every caption variant is tokenized once per
run. When only the text encoder trains, image features never change: they come from the feature
cache instead of being re-encoded at each step.

The run folder (`cir_lib.runs`) receives config.json, history.csv, best.pt (a backbone checkpoint)
and last.pt; validation, model selection and resuming are shared with stage 2 (`cir_lib.training`).

Under `torchrun` (WORLD_SIZE > 1), stage 1 uses DistributedDataParallel; each process encodes a
slice of every batch and the features are gathered so that every process sees all in-batch
negatives (the local slice keeps its gradient). The numbers equal a single-process run's.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from cir_lib import runs
from cir_lib.data import annotation_fingerprint
from cir_lib.devices import pick_device, set_threads
from cir_lib.distributed import DistInfo, gather, init_distributed
from cir_lib.errors import ConfigError
from cir_lib.features import encode_text
from cir_lib.locks import locked_folder
from cir_lib.losses import contrastive_loss
from cir_lib.recipes import FinetuneConfig, check_config, resolve_pretrained
from cir_lib.rebuild import load_pretrained_backbone, preprocess_for
from cir_lib.training import (RunResult, autocast_factory, make_optimizer, optimizer_step, resume_state,
                              train_epochs)
from cir_lib.training_data import (load_train_split, load_val_splits, resolve_dataset,
                                   tokenize_variants, training_captions)
from cir_lib.training_validation import image_features_for, make_val_sets, metrics_for, text_features_for
from cir_lib.backbone import save_backbone_checkpoint
from cir_lib.composers import ElementwiseSum
from cir_lib.images import ImageDataset
from cir_lib.transform import make_transform

logger = logging.getLogger(__name__)


def trainable_parameters(model: nn.Module, encoders: str) -> list:
    """The parameters stage 1 trains: text = token/positional embeddings, transformer, ln_final,
    text_projection; image = model.visual; both = the union. Everything else is frozen."""
    if hasattr(model, "text") and isinstance(getattr(model, "text"), nn.Module):  # CustomTextCLIP
        text_modules = [model.text]
    else:
        text_modules = [model.token_embedding, model.transformer, model.ln_final]
    params = []
    if encoders in ("text", "both"):
        for m in text_modules:
            params.extend(m.parameters())
        for name in ("positional_embedding", "text_projection"):
            p = getattr(model, name, None)
            if isinstance(p, nn.Parameter):
                params.append(p)
            elif isinstance(p, nn.Module):
                params.extend(p.parameters())
    if encoders in ("image", "both"):
        params.extend(model.visual.parameters())
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def freeze_for_stage1(model: nn.Module, encoders: str) -> list:
    """Set requires_grad on the chosen encoders only; return those parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = trainable_parameters(model, encoders)
    for p in params:
        p.requires_grad_(True)
    return params


def enable_grad_checkpointing(model: nn.Module) -> None:
    """Recompute activations in backward: open_clip's switch (text transformer, ViT towers), plus the
    ModifiedResNet bottleneck blocks, which open_clip leaves out (RN50 / RN50x4 image towers).

    Safe in eval() mode: BatchNorm uses its frozen statistics, so recomputation is exact.
    """
    if hasattr(model, "set_grad_checkpointing"):
        model.set_grad_checkpointing(True)
    visual = getattr(model, "visual", None)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        layer = getattr(visual, name, None)
        if not isinstance(layer, nn.Sequential):
            continue
        for block in layer:
            if not getattr(block, "_cir_checkpointed", False):
                block.forward = functools.partial(_checkpointed_forward, block.forward)
                block._cir_checkpointed = True


def _checkpointed_forward(plain_forward, x):
    if torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(plain_forward, x, use_reentrant=False)
    return plain_forward(x)


class Stage1Encoder(nn.Module):
    """What DDP wraps: encodes captions (and images when they go through the model)."""

    def __init__(self, model: nn.Module, train_image: bool):
        super().__init__()
        self.model = model
        self.train_image = train_image

    def forward(self, tokens: torch.Tensor, images: Optional[torch.Tensor] = None):
        text = encode_text(self.model, tokens)
        image = None
        if images is not None:
            if self.train_image:
                image = self.model.encode_image(images)
            else:
                with torch.no_grad():
                    image = self.model.encode_image(images)
        return text, image


class TripletImages(torch.utils.data.Dataset):
    """Item q = (reference image tensor, target image tensor) of training query q."""

    def __init__(self, images, reference: torch.Tensor, target: torch.Tensor):
        self.images, self.reference, self.target = images, reference, target

    def __len__(self):
        return len(self.reference)

    def __getitem__(self, q):
        return self.images[int(self.reference[q])], self.images[int(self.target[q])]



@locked_folder("out_dir")  # one writer per run folder: a second process is refused at once
def finetune(data_root, config: FinetuneConfig, out_dir, resume: bool = False) -> RunResult:
    """Stage 1: fine-tune CLIP with the element-wise-sum contrastive loss.

    Args:
        data_root: folder holding fashionIQ_dataset/ and cirr_dataset/.
        config: a `FinetuneConfig` (e.g. `get_recipe("mini", dataset="fashioniq")`).
        out_dir: the run folder (created; refused if it already holds checkpoints, unless resume).
        resume: continue from out_dir/last.pt (same config; `epochs` may grow).

    Returns:
        RunResult (best epoch, score and metrics, history). The folder holds best.pt (a backbone
        checkpoint: `load_backbone(name, best.pt)` / `cir-lib evaluate --run`), last.pt,
        history.csv and config.json.

    Example:
        >>> cfg = get_recipe("mini", dataset="fashioniq")
        >>> result = finetune("data/mini", cfg, "runs/mini-fiq-finetune")
        >>> result.best_metrics["average_recall@10"]
    """
    t_start = time.perf_counter()
    check_config(config)
    dataset = resolve_dataset(config)
    runs.check_run_folder(out_dir, "finetune", resume)  # before any work: a file, read-only, a used run
    if config.cache_dir:
        runs.check_output_folder(config.cache_dir, "cache_dir")
    set_threads(config.threads)
    dist_info = init_distributed(config.device)
    device = pick_device(config.device, dist_info.local_rank if dist_info.enabled else None)
    torch.manual_seed(config.seed)

    # Data first: a missing split fails before anything heavy.
    train_split = load_train_split(data_root, dataset, config.skip_missing, config.max_queries)
    val_splits = load_val_splits(data_root, dataset, config.skip_missing, config.max_queries)
    if len(train_split.queries) < 2:
        raise ConfigError(f"{train_split.label} has {len(train_split.queries)} usable triplets; need at least 2")

    backbone = load_pretrained_backbone(config.backbone, config.pretrained, data_root, device)
    model = backbone.model
    model.eval()  # BatchNorm statistics stay frozen; no dropout in CLIP
    preprocess = preprocess_for(config, backbone)
    train_image = config.encoders in ("image", "both")
    train_text = config.encoders in ("text", "both")
    use_cache = not train_image and config.cache_image_features

    run = runs.RunFolder.open(out_dir, "finetune", config, resume, device=str(device),
                              writer=dist_info.is_main, extra={
                                  "data_root": str(Path(data_root).resolve()),
                                  "dataset": dataset,
                                  "annotations": annotation_fingerprint(data_root, dataset),
                                  "backbone": {"name": backbone.name,
                                               "pretrained": resolve_pretrained(config.pretrained, data_root),
                                               "initial_weights_key": backbone.weights_key},
                                  "world_size": dist_info.world_size,
                                  "skipped": {"train": train_split.skipped.to_dict(),
                                              **{k: s.skipped.to_dict() for k, s in val_splits.items()}},
                              })

    # Captions: every variant tokenized once.
    variants = training_captions(train_split)
    tokens = tokenize_variants(backbone, variants)
    reference, target = train_split.reference_indices, train_split.target_indices
    val_sets = make_val_sets(val_splits, backbone)
    autocast = autocast_factory(device, config.amp)

    # Fixed features: images when the image encoder is frozen (exact: preprocessing is deterministic).
    def fixed_features(split):
        return image_features_for(backbone, split, preprocess, config.cache_dir, config.encode_batch_size,
                               device, config.num_workers)

    train_features = None
    if not train_image:
        if dist_info.enabled and not dist_info.is_main:
            dist_info.barrier()  # rank 0 fills the on-disk cache first
        if use_cache:
            train_features = fixed_features(train_split)
        if dist_info.is_main:
            for vs in val_sets.values():
                vs.index_features = fixed_features(vs.split)
        if dist_info.enabled and dist_info.is_main:
            dist_info.barrier()
    if not train_text and dist_info.is_main:
        for vs in val_sets.values():
            vs.text_features = text_features_for(backbone, vs.tokens, config.encode_batch_size, device)

    params = freeze_for_stage1(model, config.encoders)
    if config.grad_checkpointing:
        enable_grad_checkpointing(model)
    encoder = Stage1Encoder(model, train_image)
    wrapped = encoder
    if dist_info.enabled:
        wrapped = nn.parallel.DistributedDataParallel(
            encoder, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    optimizer = make_optimizer(torch.optim.AdamW, params, lr=config.lr, betas=tuple(config.betas), eps=config.eps,
                           weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and config.amp == "fp16" else None

    images = None
    if not use_cache:
        images = TripletImages(ImageDataset.from_split(train_split, make_transform(preprocess)),
                                reference, target)

    generator = torch.Generator().manual_seed(config.seed)
    def load_into(last: dict) -> None:
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        if scaler is not None and last.get("scaler"):
            scaler.load_state_dict(last["scaler"])

    state = resume_state(run, "finetune", resume, generator, load_into)

    n_var = tokens.shape[1]
    bs_global = min(config.batch_size, len(train_split.queries))
    if bs_global % dist_info.world_size:
        bs_global -= bs_global % dist_info.world_size
        logger.warning("batch size rounded down to %d (a multiple of %d processes)", bs_global, dist_info.world_size)
    local = bs_global // dist_info.world_size

    def start_epoch(epoch, batches):
        loader = None
        if images is not None:
            slices = [q[dist_info.rank * local:(dist_info.rank + 1) * local].tolist() for q, _ in batches]
            loader = iter(torch.utils.data.DataLoader(images, batch_sampler=slices, num_workers=config.num_workers,
                                                      pin_memory=device.type == "cuda"))

        def step(q_idx, v_idx, check):
            mine = slice(dist_info.rank * local, (dist_info.rank + 1) * local)
            q_loc, v_loc = q_idx[mine], v_idx[mine]
            tok = tokens[q_loc, v_loc].to(device, non_blocking=True)
            if loader is not None:
                ref_img, tgt_img = next(loader)
                batch = {"images": torch.cat([ref_img, tgt_img]).to(device, non_blocking=True)}
            else:
                batch = {"reference_features": train_features[reference[q_loc]],
                         "target_features": train_features[target[q_loc]]}
            value = stage1_step(wrapped, tok, optimizer, autocast, scaler, dist_info=dist_info, check=check,
                                logits_autocast=config.precision == "official", **batch)
            return value, bs_global
        return step

    def validate(epoch, monitor):
        if not dist_info.is_main:
            return None, None
        return validate_stage1(val_sets, dataset, backbone, preprocess, config, device), None

    train_epochs(
        run, config, dataset, state, generator, optimizer, num_queries=len(train_split.queries), num_variants=n_var,
        batch_size=bs_global, start_epoch=start_epoch, validate=validate, desc=f"stage 1 {dataset}",
        save_best=lambda extra, path: save_backbone_checkpoint(backbone, path, extra={
            "kind": "finetune", **extra, "encoders": config.encoders}),
        last_state=lambda: {"kind": "finetune", "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scaler": scaler.state_dict() if scaler is not None else None,
                            "rng": runs.rng_state(generator)},
        is_main=dist_info.is_main, end_epoch=dist_info.barrier)
    return RunResult(run.path, state["best_epoch"], state["best_score"], state["best_metrics"],
                     state["history"], time.perf_counter() - t_start, config)


def stage1_loss(encoder, tokens: torch.Tensor, autocast, *, images: Optional[torch.Tensor] = None,
                reference_features: Optional[torch.Tensor] = None, target_features: Optional[torch.Tensor] = None,
                dist_info: DistInfo = DistInfo(), logits_autocast: bool = False) -> torch.Tensor:
    """The stage-1 loss of one batch: contrastive loss of normalize(reference + caption) against the
    targets, over every process's rows (in-batch negatives).

    Args:
        encoder: a `Stage1Encoder` (or its DDP wrapper).
        tokens: [B, L] caption tokens of this process's rows.
        autocast: the training-step autocast (`training.autocast_factory`).
        images: [2B, 3, H, W] reference then target images, when images go through the model; else
        reference_features, target_features: [B, d] cached image features.
        dist_info: torchrun's process group (one process: nothing gathered).
        logits_autocast: compute the logits and the cross-entropy under `autocast` too, as the
            original code does (`precision="official"`); by default they are fp32.
    """
    with autocast():
        if images is not None:
            text_f, image_f = encoder(tokens, images)
            ref_f, tgt_f = image_f[:len(tokens)], image_f[len(tokens):]
        else:
            text_f, _ = encoder(tokens)
            ref_f, tgt_f = reference_features, target_features
    query = gather(F.normalize(ref_f.float() + text_f.float(), dim=-1), dist_info)
    tgt_all = gather(tgt_f.float(), dist_info)
    if logits_autocast:
        with autocast():
            return contrastive_loss(query, tgt_all)
    return contrastive_loss(query, tgt_all)


def stage1_step(encoder, tokens: torch.Tensor, optimizer, autocast, scaler=None, *,
                dist_info: DistInfo = DistInfo(), check=None, logits_autocast: bool = False, **batch) -> float:
    """One stage-1 training step (the loss of `stage1_loss`, then `training.optimizer_step`); what
    `finetune` runs for every batch and `benchmarks/bench_gpu.py` times.

    Args:
        encoder, tokens, autocast, dist_info, logits_autocast: as `stage1_loss`; `batch`: its images
            or cached features.
        optimizer, scaler, check: as `training.optimizer_step`.

    Returns:
        The loss value.

    Example:
        >>> stage1_step(Stage1Encoder(model, False), tokens, optimizer, contextlib.nullcontext,
        ...             reference_features=ref, target_features=tgt)
    """
    loss = stage1_loss(encoder, tokens, autocast, dist_info=dist_info, logits_autocast=logits_autocast, **batch)
    # DDP averages gradients over processes; each holds the gradient of the full-batch loss through
    # its own rows only, so scaling by world_size makes the sum exact.
    return optimizer_step(loss, optimizer, scaler, check=check, grad_scale=dist_info.world_size)


@torch.no_grad()
def validate_stage1(val_sets, dataset, backbone, preprocess, config, device) -> dict:
    """Validation metrics of the sum; features of a frozen encoder were computed once (set on the
    val sets), those of a training encoder are computed again (no on-disk cache of passing weights)."""
    index, text = {}, {}
    for label, vs in val_sets.items():
        index[label] = vs.index_features if vs.index_features is not None else image_features_for(
            backbone, vs.split, preprocess, None, config.encode_batch_size, device, config.num_workers)
        text[label] = vs.text_features if vs.text_features is not None else text_features_for(
            backbone, vs.tokens, config.encode_batch_size, device)

    return metrics_for(dataset, val_sets, ElementwiseSum(backbone.embed_dim), index, text)


