"""The two training stages of CLIP4Cir, and their commands (`cir-lib finetune`, `train-combiner`).

Stage 1 (`finetune`): fine-tune CLIP's text encoder (workshop), image encoder or both (journal) with
the element-wise-sum contrastive loss: logits = 100 * normalize(ref + text) @ normalize(target).T,
cross-entropy against the diagonal (in-batch negatives). AdamW, CLIP kept in eval() mode. FashionIQ
pools the three categories and draws one of the four caption variants per triplet (p = 1/4 each);
CIRR captions are used as they are. Every caption variant is tokenized once per run. When only the
text encoder trains, image features never change: they come from the feature cache instead of being
re-encoded at each step.

Stage 2 (`train_combiner`): the Combiner, from scratch, on frozen features of the stage-1 encoders
(or of the recipe's pretrained backbone: "zero-shot"). Every image and every caption variant is
encoded once per run; an epoch only runs the Combiner. Adam.

Both write a run folder (`cir_lib.runs`): config.json, history.csv, best.pt, last.pt. Validation
(every `validate_every` epochs and after the last) uses the benchmark's protocol on the val split;
best.pt is chosen by the paper's validation score (FashionIQ: (mean R@10 + mean R@50) / 2; CIRR: mean of the
seven recalls). `resume=True` continues from last.pt and gives the numbers of an uninterrupted run.

Under `torchrun` (WORLD_SIZE > 1), stage 1 uses DistributedDataParallel; each process encodes a
slice of every batch and the features are gathered so that every process sees all in-batch
negatives (the local slice keeps its gradient). The numbers equal a single-process run's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from cir_lib import runs
from cir_lib.constants import FASHIONIQ_CATEGORIES, LOGIT_SCALE
from cir_lib.errors import ConfigError, TrainingError
from cir_lib.features import encode_text
from cir_lib.recipes import (
    CombinerTrainConfig,
    FinetuneConfig,
    check_config,
    config_from_dict,
    get_recipe,
    list_recipes,
    parse_overrides,
    resolve_pretrained,
)

logger = logging.getLogger(__name__)

ZERO_SHOT = "zero-shot"  # clip_run value: the recipe's pretrained backbone, not fine-tuned
RUN_CHECKPOINT_FORMAT = "cir_lib.run/1"  # marks last.pt files


@dataclass
class RunResult:
    """What a training call returns (everything is also in the run folder)."""

    run_dir: Path  # the run folder
    best_epoch: int  # epoch of best.pt (1-based)
    best_score: float  # its selection score (FashionIQ: (R@10 + R@50) / 2 averages; CIRR: mean of 7)
    best_metrics: dict  # its validation metrics (flat: "average_recall@10", "recall_subset@1", ...)
    history: list  # one dict per epoch (the rows of history.csv)
    seconds: float  # wall time of this call
    config: object = field(repr=False, default=None)  # the resolved config


# ============================================================================ shared helpers

@dataclass
class _Dist:
    """Process-group facts; world_size 1 when not launched by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def _init_distributed(device_setting: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_setting != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def _set_threads(config) -> None:
    if config.threads:
        torch.set_num_threads(config.threads)
        logger.info("using %d torch CPU threads", config.threads)


def _pick_device(setting: str, dist_info: _Dist) -> torch.device:
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {setting!r} asked for but CUDA is not available; use --set device=cpu")
        if dist_info.enabled and setting == "cuda":
            setting = f"cuda:{dist_info.local_rank}"
        torch.cuda.set_device(torch.device(setting))
    return torch.device(setting)


def _load_backbone(name: str, pretrained: str, data_root, device):
    from cir_lib.backbone import load_backbone

    pretrained = resolve_pretrained(pretrained, data_root)
    if pretrained.endswith("cir-mini.pt") and not Path(pretrained).is_file():
        raise ConfigError(
            f"pretrained weights {pretrained} not found: run `cir-lib pretrain-mini --data-root "
            f"{data_root}` first (or override with --set pretrained=none for random weights)")
    return load_backbone(name, pretrained, device=device)


def preprocess_for(config, backbone):
    """The image preprocessing a run config trains (and is evaluated) with, for this backbone."""
    from cir_lib.transform import PreprocessConfig

    return PreprocessConfig(kind=config.preprocess, image_size=backbone.image_size, ratio=config.preprocess_ratio)


def _resolve_dataset(config) -> str:
    if config.dataset is None:
        raise ConfigError("no dataset chosen: pass --dataset fashioniq|cirr (or dataset=... in a notebook)")
    return config.dataset


def load_train_split(data_root, dataset: str, skip_missing: bool = False):
    """The training triplets: FashionIQ's three categories pooled, or CIRR's train split."""
    from cir_lib.data import load_split

    return load_split(data_root, dataset, "train", None, skip_missing=skip_missing)


def load_val_splits(data_root, dataset: str, skip_missing: bool = False) -> dict:
    """{label: Split} of the validation protocol: FashionIQ's three categories, or CIRR's val."""
    from cir_lib.data import load_split

    if dataset == "fashioniq":
        return {c: load_split(data_root, dataset, "val", c, skip_missing=skip_missing)
                for c in FASHIONIQ_CATEGORIES}
    return {"cirr": load_split(data_root, dataset, "val", None, skip_missing=skip_missing)}


def training_captions(split) -> list:
    """Per query, the caption variants drawn from in training (FashionIQ: 4, CIRR: 1)."""
    from cir_lib.data import cirr_caption, fashioniq_caption_variants

    if split.dataset == "fashioniq":
        return [list(fashioniq_caption_variants(*q.captions)) for q in split.queries]
    return [[cirr_caption(q.captions[0])] for q in split.queries]


def tokenize_variants(backbone, variants: list) -> torch.Tensor:
    """Token ids [Q, V, L] of every caption variant, tokenized once (not per batch)."""
    n_var = len(variants[0]) if variants else 1
    flat = [c for row in variants for c in row]
    if not flat:
        return torch.empty(0, n_var, backbone.context_length, dtype=torch.long)
    tokens = backbone.tokenize(flat)
    return tokens.view(len(variants), n_var, tokens.shape[-1])


def epoch_batches(n_queries: int, n_variants: int, batch_size: int, generator: torch.Generator) -> list:
    """One epoch's batches: a seeded shuffle of the queries and one caption variant per query.

    Each variant is drawn uniformly (FashionIQ: p = 1/4 each). Batches have `batch_size` triplets
    (the last, incomplete batch is dropped, as in the original; a dataset smaller than a batch is
    one batch).

    Returns:
        A list of (query_indices LongTensor [B], variant_indices LongTensor [B]).
    """
    perm = torch.randperm(n_queries, generator=generator)
    variant = torch.randint(n_variants, (n_queries,), generator=generator)
    bs = min(batch_size, n_queries)
    n_batches = n_queries // bs if bs else 0
    return [(perm[i * bs:(i + 1) * bs], variant[i * bs:(i + 1) * bs]) for i in range(n_batches)]


def contrastive_loss(query_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over 100 * normalize(query) @ normalize(target).T, label i for row i.

    `query_features` may already be the normalized sum / Combiner output (normalizing twice is a no-op).
    """
    q = F.normalize(query_features.float(), dim=-1)
    t = F.normalize(target_features.float(), dim=-1)
    logits = LOGIT_SCALE * q @ t.T
    labels = torch.arange(len(q), device=logits.device)
    return F.cross_entropy(logits, labels)


def selection_score(dataset: str, metrics: dict) -> float:
    """The paper's model-selection number from flat validation metrics.

    FashionIQ: (average R@10 + average R@50) / 2 over the three categories; CIRR: the arithmetic
    mean of R@1, R@5, R@10, R@50, Rsubset@1, @2, @3.
    """
    if dataset == "fashioniq":
        return (metrics["average_recall@10"] + metrics["average_recall@50"]) / 2
    keys = ["recall@1", "recall@5", "recall@10", "recall@50",
            "recall_subset@1", "recall_subset@2", "recall_subset@3"]
    return sum(metrics[k] for k in keys) / len(keys)


def _flat_fashioniq(per_category: dict) -> dict:
    out = {}
    for cat, m in per_category.items():
        for k, v in m.items():
            out[f"{cat}_{k}"] = v
    for k in next(iter(per_category.values())):
        out[f"average_{k}"] = sum(m[k] for m in per_category.values()) / len(per_category)
    return out


@dataclass
class _ValSet:
    """One validation split, with what stays fixed across epochs."""

    split: object  # data.Split
    tokens: torch.Tensor  # [Q, L] evaluation captions
    reference: torch.Tensor  # [Q]
    target: torch.Tensor  # [Q]
    members: Optional[torch.Tensor]  # [Q, 6] (CIRR)
    index_features: Optional[torch.Tensor] = None  # [N, d] raw, when the image encoder is frozen
    text_features: Optional[torch.Tensor] = None  # [Q, d] raw, when the text encoder is frozen


def _make_val_sets(splits: dict, backbone) -> dict:
    from cir_lib.data import eval_captions

    out = {}
    for label, split in splits.items():
        out[label] = _ValSet(
            split=split,
            tokens=backbone.tokenize(eval_captions(split)),
            reference=split.reference_indices,
            target=split.target_indices,
            members=split.member_indices if split.dataset == "cirr" else None,
        )
    return out


def _text_features(backbone, tokens: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    """Frozen text features on `device`, through the same encoder (and precision) as evaluation."""
    from cir_lib.features import text_features

    return text_features(backbone, tokens, batch_size=batch_size, device=device)


def _image_features(backbone, split, preprocess, cache_dir, batch_size, device, num_workers=0):
    """Image features of a split on `device` (through the on-disk cache when `cache_dir` is set)."""
    from cir_lib.features import image_features

    return image_features(backbone, split, preprocess, cache_dir=cache_dir, batch_size=batch_size,
                          device=device, split_label=split.label, num_workers=num_workers).to(device)


def _metrics_for(dataset: str, val_sets: dict, compose, index_features: dict, text_features: dict) -> dict:
    """Flat validation metrics: compose(reference_features, text_features) -> query features."""
    from cir_lib.metrics import cirr_recall, fashioniq_recall

    per = {}
    for label, vs in val_sets.items():
        index = index_features[label]
        query = compose(index[vs.reference], text_features[label])
        if dataset == "fashioniq":
            per[label] = fashioniq_recall(query, index, vs.target)
        else:
            per[label] = cirr_recall(query, index, vs.reference, vs.target, vs.members)
    if dataset == "fashioniq":
        return _flat_fashioniq(per)
    return dict(per["cirr"])


def _fmt_metrics(metrics: dict) -> str:
    keys = [k for k in metrics if k.startswith("average_") or k in ("recall@1", "recall@10", "recall_subset@1")]
    return ", ".join(f"{k} {metrics[k]:.2f}" for k in keys)


def _autocast_factory(device: torch.device, amp: str):
    if device.type == "cuda" and amp != "none":
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return functools.partial(torch.autocast, device_type="cuda", dtype=dtype)
    return contextlib.nullcontext


def _check_finite(loss: float, epoch: int, step: int, run, last_epoch: int) -> None:
    if math.isfinite(loss):
        return
    if last_epoch > 0:
        kept = f"the last good checkpoint {run.last_path} (epoch {last_epoch}) stays"
    else:
        kept = "no checkpoint was written yet"
    raise TrainingError(
        f"the training loss became {loss} at epoch {epoch}, step {step} (run {run.path}); "
        f"training stopped and {kept}. Lower the learning rate (--set lr=...), or on CUDA try "
        f"--set amp=bf16 / amp=none")


def _optimizer(cls, params, **kw):
    """The fused implementation where torch has it (CPU and CUDA): one kernel over all parameters.
    On the CPU it makes a cir-mini text-encoder step ~5x faster (the 6M-entry token embedding)."""
    params = list(params)
    try:
        return cls(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, **kw)


def _due(epoch: int, config) -> bool:
    return epoch % config.validate_every == 0 or epoch == config.epochs


# ============================================================================ stage 1

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
    from torch.utils.checkpoint import checkpoint

    if torch.is_grad_enabled():
        return checkpoint(plain_forward, x, use_reentrant=False)
    return plain_forward(x)


class _Stage1Encoder(nn.Module):
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


class _TripletImages(torch.utils.data.Dataset):
    """Item q = (reference image tensor, target image tensor) of training query q."""

    def __init__(self, images, reference: torch.Tensor, target: torch.Tensor):
        self.images, self.reference, self.target = images, reference, target

    def __len__(self):
        return len(self.reference)

    def __getitem__(self, q):
        return self.images[int(self.reference[q])], self.images[int(self.target[q])]


def _gather(x: torch.Tensor, dist_info: _Dist) -> torch.Tensor:
    """All processes' rows, in rank order; the local rows keep their gradient."""
    if not dist_info.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(dist_info.world_size)]
    torch.distributed.all_gather(parts, x.detach().contiguous())
    parts[dist_info.rank] = x
    return torch.cat(parts)


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
        >>> result = finetune("data/mini", cfg, "runs/mini-fiq-stage1")
        >>> result.best_metrics["average_recall@10"]
    """
    from cir_lib.backbone import save_backbone_checkpoint
    from cir_lib.data import ImageDataset
    from cir_lib.transform import make_transform

    t_start = time.perf_counter()
    check_config(config)
    dataset = _resolve_dataset(config)
    _set_threads(config)
    dist_info = _init_distributed(config.device)
    device = _pick_device(config.device, dist_info)
    torch.manual_seed(config.seed)

    # Data first: a missing split fails before anything heavy.
    train_split = load_train_split(data_root, dataset, config.skip_missing)
    val_splits = load_val_splits(data_root, dataset, config.skip_missing)
    if len(train_split.queries) < 2:
        raise ConfigError(f"{train_split.label} has {len(train_split.queries)} usable triplets; need at least 2")

    backbone = _load_backbone(config.backbone, config.pretrained, data_root, device)
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
    val_sets = _make_val_sets(val_splits, backbone)
    autocast = _autocast_factory(device, config.amp)

    # Fixed features: images when the image encoder is frozen (exact: preprocessing is deterministic).
    def fixed_features(split):
        return _image_features(backbone, split, preprocess, config.cache_dir, config.encode_batch_size,
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
            vs.text_features = _text_features(backbone, vs.tokens, config.encode_batch_size, device)

    params = freeze_for_stage1(model, config.encoders)
    if config.grad_checkpointing:
        enable_grad_checkpointing(model)
    encoder = _Stage1Encoder(model, train_image)
    wrapped = encoder
    if dist_info.enabled:
        wrapped = nn.parallel.DistributedDataParallel(
            encoder, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    optimizer = _optimizer(torch.optim.AdamW, params, lr=config.lr, betas=tuple(config.betas), eps=config.eps,
                           weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and config.amp == "fp16" else None

    images = None
    if not use_cache:
        images = _TripletImages(ImageDataset.from_split(train_split, make_transform(preprocess)),
                                reference, target)

    generator = torch.Generator().manual_seed(config.seed)
    state = {"epoch": 0, "history": [], "best_score": -math.inf, "best_epoch": 0, "best_metrics": {}}
    last = run.load_last() if resume else None
    if last is not None:
        _check_last(last, "finetune", run)
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        if scaler is not None and last.get("scaler"):
            scaler.load_state_dict(last["scaler"])
        runs.set_rng_state(generator, last["rng"])
        state = {k: last[k] for k in state}
        logger.info("resuming %s from epoch %d", run.path, state["epoch"])
    elif resume:
        logger.info("nothing to resume in %s: starting from epoch 1", run.path)

    n_var = tokens.shape[1]
    bs_global = min(config.batch_size, len(train_split.queries))
    if bs_global % dist_info.world_size:
        bs_global -= bs_global % dist_info.world_size
        logger.warning("batch size rounded down to %d (a multiple of %d processes)", bs_global, dist_info.world_size)
    local = bs_global // dist_info.world_size

    epochs_bar = tqdm(range(state["epoch"] + 1, config.epochs + 1), desc=f"stage 1 {dataset}", unit="epoch",
                      initial=state["epoch"], total=config.epochs, disable=not dist_info.is_main)
    for epoch in epochs_bar:
        t0 = time.perf_counter()
        batches = epoch_batches(len(train_split.queries), n_var, bs_global, generator)
        loader = None
        if images is not None:
            slices = [q[dist_info.rank * local:(dist_info.rank + 1) * local].tolist() for q, _ in batches]
            loader = iter(torch.utils.data.DataLoader(images, batch_sampler=slices, num_workers=config.num_workers,
                                                      pin_memory=device.type == "cuda"))
        total, steps = 0.0, 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", leave=False, disable=not dist_info.is_main)
        for step, (q_idx, v_idx) in enumerate(bar, start=1):
            mine = slice(dist_info.rank * local, (dist_info.rank + 1) * local)
            q_loc, v_loc = q_idx[mine], v_idx[mine]
            tok = tokens[q_loc, v_loc].to(device, non_blocking=True)
            with autocast():
                if loader is not None:
                    ref_img, tgt_img = next(loader)
                    both = torch.cat([ref_img, tgt_img]).to(device, non_blocking=True)
                    text_f, image_f = wrapped(tok, both)
                    ref_f, tgt_f = image_f[:len(q_loc)], image_f[len(q_loc):]
                else:
                    text_f, _ = wrapped(tok)
                    ref_f, tgt_f = train_features[reference[q_loc]], train_features[target[q_loc]]
            query = _gather(F.normalize(ref_f.float() + text_f.float(), dim=-1), dist_info)
            tgt_all = _gather(tgt_f.float(), dist_info)
            loss = contrastive_loss(query, tgt_all)
            value = loss.item()  # the step's one host sync: checked before any weight changes
            _check_finite(value, epoch, step, run, state["epoch"])
            optimizer.zero_grad(set_to_none=True)
            # DDP averages gradients over processes; each holds the gradient of the full-batch loss
            # through its own rows only, so scaling by world_size makes the sum exact.
            scaled = loss * dist_info.world_size
            if scaler is not None:
                scaler.scale(scaled).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                scaled.backward()
                optimizer.step()
            total += value
            steps += 1
            bar.set_postfix(loss=f"{value:.4f}")
        bar.close()
        row = {"epoch": epoch, "loss": total / max(steps, 1), "steps": steps}

        metrics = None
        if _due(epoch, config) and dist_info.is_main:
            metrics = _validate_stage1(val_sets, dataset, backbone, preprocess, config, device)
        _finish_epoch(
            run, state, row, metrics, t0, dataset, config, epochs_bar,
            save_best=lambda extra: save_backbone_checkpoint(backbone, run.best_path, extra={
                "kind": "finetune", **extra, "encoders": config.encoders}),
            last={"kind": "finetune", "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "scaler": scaler.state_dict() if scaler is not None else None,
                  "rng": runs.rng_state(generator)})
        dist_info.barrier()
    epochs_bar.close()
    return RunResult(run.path, state["best_epoch"], state["best_score"], state["best_metrics"],
                     state["history"], time.perf_counter() - t_start, config)


def _finish_epoch(run, state: dict, row: dict, metrics: Optional[dict], t0: float, dataset: str, config,
                  epochs_bar, *, save_best, last: dict) -> None:
    """The end of an epoch, shared by both stages: score the row, record it, keep the best, checkpoint.

    `save_best(extra)` writes best.pt (the writing process only) given the epoch's record; `last` is the
    stage's part of last.pt (models, optimizer, RNG), to which the config and `state` are added.
    """
    epoch = row["epoch"]
    if metrics is not None:
        row.update(metrics)
        row["score"] = selection_score(dataset, metrics)
    row["seconds"] = time.perf_counter() - t0
    state["history"].append(row)
    state["epoch"] = epoch
    if metrics is not None and row["score"] > state["best_score"]:
        state.update(best_score=row["score"], best_epoch=epoch, best_metrics=metrics)
        if run.writer:
            save_best({"epoch": epoch, "score": row["score"], "metrics": metrics, "dataset": dataset,
                       "run_config": dataclasses.asdict(config)})
    run.save_last({"format": RUN_CHECKPOINT_FORMAT, "config": dataclasses.asdict(config), **last, **state})
    run.write_history(state["history"])
    if run.writer:
        msg = f"epoch {epoch}/{config.epochs} loss {row['loss']:.4f}"
        if metrics is not None:
            msg += f" score {row['score']:.2f} ({_fmt_metrics(metrics)})"
        logger.info("%s [%.1fs]", msg, row["seconds"])
        epochs_bar.set_postfix(loss=f"{row['loss']:.4f}", best=f"{state['best_score']:.2f}")


def _check_last(last: dict, kind: str, run) -> None:
    if not isinstance(last, dict) or last.get("format") != RUN_CHECKPOINT_FORMAT or last.get("kind") != kind:
        raise ConfigError(f"{run.last_path} is not a {kind} run checkpoint of this kit; start a new run folder")


@torch.no_grad()
def _validate_stage1(val_sets, dataset, backbone, preprocess, config, device) -> dict:
    """Validation metrics of the sum; features of a frozen encoder were computed once (set on the
    val sets), those of a training encoder are computed again (no on-disk cache of passing weights)."""
    index, text = {}, {}
    for label, vs in val_sets.items():
        index[label] = vs.index_features if vs.index_features is not None else _image_features(
            backbone, vs.split, preprocess, None, config.encode_batch_size, device, config.num_workers)
        text[label] = vs.text_features if vs.text_features is not None else _text_features(
            backbone, vs.tokens, config.encode_batch_size, device)
    from cir_lib.combiner import ElementwiseSum

    return _metrics_for(dataset, val_sets, ElementwiseSum(backbone.embed_dim), index, text)


# ============================================================================ stage 2

def _clip_for_combiner(clip_run, config: CombinerTrainConfig, data_root, device):
    """The frozen backbone of stage 2 and a JSON record of where it came from."""
    from cir_lib.backbone import load_backbone

    if str(clip_run) == ZERO_SHOT:
        pretrained = resolve_pretrained(config.pretrained, data_root)
        backbone = _load_backbone(config.backbone, config.pretrained, data_root, device)
        record = {"run": ZERO_SHOT, "checkpoint": None}
    else:
        clip_dir = Path(clip_run)
        info = runs.read_run_config(clip_dir)
        if info.get("kind") != "finetune":
            raise ConfigError(f"--clip-run {clip_dir} is a {info.get('kind')!r} run; pass a stage-1 "
                              f"(finetune) run folder or {ZERO_SHOT!r}")
        best = clip_dir / runs.BEST_FILE
        if not best.is_file():
            raise ConfigError(f"stage-1 run {clip_dir} has no {runs.BEST_FILE} yet; let it validate at least once")
        name = info["config"]["backbone"]
        if name != config.backbone:
            raise ConfigError(
                f"the Combiner recipe is for backbone {config.backbone!r} but stage-1 run {clip_dir} "
                f"fine-tuned {name!r}; use a recipe of {name} (or --set backbone={name})")
        pretrained = str(best.resolve())
        backbone = load_backbone(name, pretrained, device=device)
        record = {"run": str(clip_dir.resolve()), "checkpoint": pretrained}
        if info.get("dataset") and config.dataset and info["dataset"] != config.dataset:
            logger.warning("stage-1 run %s was trained on %s; this Combiner trains on %s",
                           clip_dir, info["dataset"], config.dataset)
    backbone.model.eval()
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    record.update(backbone=backbone.name, pretrained=pretrained, weights_key=backbone.weights_key,
                  embed_dim=backbone.embed_dim)
    return backbone, record


def train_combiner(data_root, config: CombinerTrainConfig, clip_run, out_dir, resume: bool = False) -> RunResult:
    """Stage 2: train the Combiner on frozen CLIP features.

    Args:
        data_root: folder holding fashionIQ_dataset/ and cirr_dataset/.
        config: a `CombinerTrainConfig` (e.g. `get_recipe("mini", stage="combiner", dataset="cirr")`).
        clip_run: a stage-1 run folder (its best.pt is the frozen backbone) or "zero-shot" (the
            recipe's pretrained backbone, for ablations).
        out_dir: the run folder.
        resume: continue from out_dir/last.pt.

    Returns:
        RunResult. best.pt is a Combiner checkpoint (`load_combiner_checkpoint`) that names its
        backbone; `load_run(out_dir)` rebuilds both.

    Example:
        >>> cfg = get_recipe("mini", stage="combiner", dataset="fashioniq")
        >>> train_combiner("data/mini", cfg, "runs/mini-fiq-stage1", "runs/mini-fiq-combiner")
    """
    from cir_lib.combiner import Combiner, save_combiner_checkpoint

    t_start = time.perf_counter()
    check_config(config)
    dataset = _resolve_dataset(config)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("train-combiner runs in one process (an epoch on cached features takes seconds); "
                          "launch it without torchrun")
    _set_threads(config)
    device = _pick_device(config.device, _Dist())
    torch.manual_seed(config.seed)

    train_split = load_train_split(data_root, dataset, config.skip_missing)
    val_splits = load_val_splits(data_root, dataset, config.skip_missing)
    if len(train_split.queries) < 2:
        raise ConfigError(f"{train_split.label} has {len(train_split.queries)} usable triplets; need at least 2")
    backbone, clip_record = _clip_for_combiner(clip_run, config, data_root, device)

    same_clip = {"clip": {k: clip_record[k] for k in ("backbone", "weights_key")}}
    run = runs.RunFolder.open(out_dir, "combiner", config, resume, device=str(device), must_match=same_clip, extra={
        "data_root": str(Path(data_root).resolve()), "dataset": dataset, "clip": clip_record,
        "skipped": {"train": train_split.skipped.to_dict(),
                    **{k: s.skipped.to_dict() for k, s in val_splits.items()}}})

    preprocess = preprocess_for(config, backbone)
    # Every image and every caption variant is encoded once per run (the encoders are frozen).
    logger.info("encoding the training images and captions once (%s)", train_split.label)
    image_f = _image_features(backbone, train_split, preprocess, config.cache_dir, config.encode_batch_size,
                              device)
    tokens = tokenize_variants(backbone, training_captions(train_split))
    q_count, n_var, ctx = tokens.shape
    text_f = _text_features(backbone, tokens.view(-1, ctx), config.encode_batch_size, device)
    text_f = text_f.view(q_count, n_var, -1)
    reference, target = train_split.reference_indices.to(device), train_split.target_indices.to(device)
    val_sets = _make_val_sets(val_splits, backbone)
    for vs in val_sets.values():
        vs.index_features = _image_features(backbone, vs.split, preprocess, config.cache_dir,
                                            config.encode_batch_size, device)
        vs.text_features = _text_features(backbone, vs.tokens, config.encode_batch_size, device)

    dim = backbone.embed_dim
    torch.manual_seed(config.seed)
    combiner = Combiner(dim, proj_dim=config.proj_multiplier * dim, hidden_dim=config.hidden_multiplier * dim,
                        dropout=config.dropout).to(device)
    optimizer = _optimizer(torch.optim.Adam, combiner.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    state = {"epoch": 0, "history": [], "best_score": -math.inf, "best_epoch": 0, "best_metrics": {}}
    last = run.load_last() if resume else None
    if last is not None:
        _check_last(last, "combiner", run)
        combiner.load_state_dict(last["combiner"])
        optimizer.load_state_dict(last["optimizer"])
        runs.set_rng_state(generator, last["rng"])
        state = {k: last[k] for k in state}
        logger.info("resuming %s from epoch %d", run.path, state["epoch"])

    epochs_bar = tqdm(range(state["epoch"] + 1, config.epochs + 1), desc=f"Combiner {dataset}", unit="epoch",
                      initial=state["epoch"], total=config.epochs)
    for epoch in epochs_bar:
        t0 = time.perf_counter()
        combiner.train()
        batches = epoch_batches(q_count, n_var, config.batch_size, generator)
        total, steps = 0.0, 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", leave=False)
        for step, (q_idx, v_idx) in enumerate(bar, start=1):
            q_idx, v_idx = q_idx.to(device), v_idx.to(device)
            query = combiner(image_f[reference[q_idx]], text_f[q_idx, v_idx])
            loss = contrastive_loss(query, image_f[target[q_idx]])
            value = loss.item()  # the step's one host sync: checked before any weight changes
            _check_finite(value, epoch, step, run, state["epoch"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += value
            steps += 1
            bar.set_postfix(loss=f"{value:.4f}")
        bar.close()
        row = {"epoch": epoch, "loss": total / max(steps, 1), "steps": steps}
        metrics = None
        if _due(epoch, config):
            combiner.eval()
            with torch.no_grad():
                metrics = _metrics_for(dataset, val_sets, combiner,
                                       {k: vs.index_features for k, vs in val_sets.items()},
                                       {k: vs.text_features for k, vs in val_sets.items()})
        _finish_epoch(
            run, state, row, metrics, t0, dataset, config, epochs_bar,
            save_best=lambda extra: save_combiner_checkpoint(combiner, run.best_path, extra={
                "kind": "combiner", **extra, "clip": clip_record}),
            last={"kind": "combiner", "combiner": combiner.state_dict(), "optimizer": optimizer.state_dict(),
                  "rng": runs.rng_state(generator), "clip": clip_record})
    epochs_bar.close()
    combiner.eval()
    return RunResult(run.path, state["best_epoch"], state["best_score"], state["best_metrics"],
                     state["history"], time.perf_counter() - t_start, config)


# ============================================================================ loading runs

def run_config(run_dir, info: Optional[dict] = None):
    """A run's FinetuneConfig / CombinerTrainConfig, from its config.json alone (no weights loaded)."""
    info = info if info is not None else runs.read_run_config(run_dir)
    classes = {"finetune": FinetuneConfig, "combiner": CombinerTrainConfig}
    if info.get("kind") not in classes:
        raise ConfigError(f"{Path(run_dir) / runs.CONFIG_FILE} is not a finetune or combiner run "
                          f"(kind {info.get('kind')!r})")
    return config_from_dict(classes[info["kind"]], info["config"])


def load_run(run_dir, device="cpu", which: str = "best"):
    """Rebuild a run's models from its folder alone.

    Args:
        run_dir: a stage-1 (finetune) or stage-2 (combiner) run folder.
        device: where the models go.
        which: "best" (best.pt) or "last" (last.pt).

    Returns:
        (backbone, combiner, config): for a stage-1 run the fine-tuned backbone and the element-wise
        sum; for a Combiner run its frozen stage-1 backbone (or the zero-shot one) and the trained
        Combiner; config is the run's FinetuneConfig / CombinerTrainConfig.

    Example:
        >>> backbone, combiner, cfg = load_run("runs/mini-fiq-combiner")
    """
    from cir_lib.backbone import load_backbone
    from cir_lib.combiner import ElementwiseSum, load_combiner_checkpoint

    run_dir = Path(run_dir)
    info = runs.read_run_config(run_dir)
    kind = info.get("kind")
    if which not in ("best", "last"):
        raise ConfigError(f"which must be 'best' or 'last', got {which!r}")
    config = run_config(run_dir, info)
    if kind == "finetune":
        if which == "best":
            path = run_dir / runs.BEST_FILE
            if not path.is_file():
                raise ConfigError(f"{run_dir} has no {runs.BEST_FILE}: the run has not validated yet")
            backbone = load_backbone(config.backbone, str(path), device=device)
        else:
            last = runs.load_checkpoint(run_dir / runs.LAST_FILE)
            backbone = load_backbone(config.backbone, info["backbone"]["pretrained"], device=device)
            backbone.model.load_state_dict(last["model"])
        backbone.model.eval()
        return backbone, ElementwiseSum(backbone.embed_dim), config
    clip = info["clip"]  # a combiner run (run_config accepts no other kind)
    if clip["run"] == ZERO_SHOT:
        backbone = load_backbone(clip["backbone"], clip["pretrained"], device=device)
    else:
        clip_dir = Path(clip["run"])
        if not (clip_dir / runs.CONFIG_FILE).is_file():
            raise ConfigError(f"Combiner run {run_dir} was trained on stage-1 run {clip_dir}, which is "
                              "no longer there; restore it (the Combiner needs its encoders)")
        backbone, _, _ = load_run(clip_dir, device=device)
    if backbone.name != clip["backbone"] or backbone.weights_key != clip["weights_key"]:
        raise ConfigError(
            f"Combiner run {run_dir} was trained on {clip['backbone']} weights {clip['weights_key']} "
            f"from {clip['run']}, but that now gives {backbone.name} weights {backbone.weights_key} "
            "(was the stage-1 run continued or replaced?); retrain the Combiner on it")
    if which == "best":
        combiner = load_combiner_checkpoint(run_dir / runs.BEST_FILE, dim=backbone.embed_dim,
                                            map_location=device)
    else:
        from cir_lib.combiner import Combiner

        last = runs.load_checkpoint(run_dir / runs.LAST_FILE)
        d = backbone.embed_dim
        combiner = Combiner(d, config.proj_multiplier * d, config.hidden_multiplier * d, config.dropout)
        combiner.load_state_dict(last["combiner"])
    return backbone, combiner.to(device).eval(), config


# ============================================================================ evaluate / submit-cirr hooks
# `cir-lib evaluate` and `cir-lib submit-cirr` (cir_lib.evaluate) call these three to accept trained
# runs (--run) and the checkpoints released with the original code (--clip-checkpoint,
# --combiner-checkpoint) besides --backbone / --pretrained.

def add_trained_model_arguments(parser) -> None:
    """Add --run, --clip-checkpoint and --combiner-checkpoint to an evaluate-style parser."""
    g = parser.add_argument_group("trained models (instead of --pretrained)")
    g.add_argument("--run", metavar="RUN",
                   help="a run folder: a `finetune` run is evaluated with the element-wise sum, a "
                        "`train-combiner` run with its Combiner over its stage-1 encoders")
    g.add_argument("--clip-checkpoint", metavar="FILE",
                   help="a fine-tuned CLIP: the original code's {'CLIP': state_dict} (with --backbone RN50 / "
                        "RN50x4), a kit backbone checkpoint (e.g. a run's best.pt) or an open_clip state dict")
    g.add_argument("--combiner-checkpoint", metavar="FILE",
                   help="a Combiner: the original code's {'Combiner': state_dict} or a kit Combiner checkpoint "
                        "(without it: the element-wise sum)")


def resolve_trained_models(args):
    """(backbone, combiner) from --run / --clip-checkpoint / --combiner-checkpoint, or None when
    none of them is given (the caller then uses --backbone / --pretrained)."""
    from cir_lib.backbone import load_backbone
    from cir_lib.combiner import ElementwiseSum, load_combiner_checkpoint

    run = getattr(args, "run", None)
    clip = getattr(args, "clip_checkpoint", None)
    comb = getattr(args, "combiner_checkpoint", None)
    if not (run or clip or comb):
        return None
    device = getattr(args, "device", None) or "cpu"
    if run:
        if clip or comb or args.pretrained:
            raise ConfigError("--run brings its own weights: drop --pretrained, --clip-checkpoint and "
                              "--combiner-checkpoint")
        backbone, combiner, _ = load_run(run, device=device)
        if args.backbone and args.backbone != backbone.name:
            raise ConfigError(f"--backbone {args.backbone} contradicts run {run}, which holds a {backbone.name}")
        return backbone, combiner.to(device)
    if clip:
        if args.pretrained:
            raise ConfigError("give either --pretrained or --clip-checkpoint, not both")
        backbone = load_backbone(args.backbone or None, clip, device=device)  # kit files name their model
    else:
        if not args.backbone or args.pretrained is None:
            raise ConfigError("--combiner-checkpoint needs the CLIP it was trained on: give --clip-checkpoint "
                              "FILE (with --backbone), or --backbone NAME --pretrained P")
        backbone = load_backbone(args.backbone, args.pretrained, device=device)
    combiner = (load_combiner_checkpoint(comb, dim=backbone.embed_dim, map_location=device) if comb
                else ElementwiseSum(backbone.embed_dim))
    return backbone, combiner.to(device).eval()


def run_preprocess(args, backbone):
    """The preprocessing a --run was trained with (None without --run); an explicit, different
    --preprocess wins, with a warning."""
    from cir_lib.transform import PreprocessConfig

    run = getattr(args, "run", None)
    if not run:
        return None
    cfg = run_config(run)
    chosen = getattr(args, "preprocess", None)
    if chosen and chosen != cfg.preprocess:
        logger.warning("run %s was trained with %s preprocessing; evaluating with %s as asked",
                       run, cfg.preprocess, chosen)
        return PreprocessConfig(chosen, image_size=backbone.image_size)
    return preprocess_for(cfg, backbone)


# ============================================================================ CLI

def _config_for_cli(args, stage: str):
    overrides = parse_overrides(args.set)
    if args.dataset:
        if "dataset" in overrides and overrides["dataset"] != args.dataset:
            raise ConfigError(f"--dataset {args.dataset} contradicts --set dataset={overrides['dataset']}")
        base = get_recipe(args.recipe, stage)
        if base.dataset is not None and base.dataset != args.dataset:
            raise ConfigError(
                f"recipe {args.recipe!r} is for {base.dataset}, not {args.dataset}: pick the {args.dataset} "
                f"recipe (see `cir-lib finetune --list-recipes`) or drop --dataset")
        overrides["dataset"] = args.dataset
    config = get_recipe(args.recipe, stage, **overrides)
    _resolve_dataset(config)
    return config


def _print_recipes() -> int:
    for name, description in list_recipes().items():
        print(f"{name:28s} {description}")
    return 0


def _run_finetune(args) -> int:
    if args.list_recipes:
        return _print_recipes()
    _require(args, "data_root", "recipe", "out")
    config = _config_for_cli(args, "finetune")
    result = finetune(args.data_root, config, args.out, resume=args.resume)
    print(f"stage 1 done: best epoch {result.best_epoch}, score {result.best_score:.2f} "
          f"({_fmt_metrics(result.best_metrics)}); run folder {result.run_dir}")
    return 0


def _run_train_combiner(args) -> int:
    if args.list_recipes:
        return _print_recipes()
    _require(args, "data_root", "recipe", "out", "clip_run")
    config = _config_for_cli(args, "combiner")
    result = train_combiner(args.data_root, config, args.clip_run, args.out, resume=args.resume)
    print(f"Combiner done: best epoch {result.best_epoch}, score {result.best_score:.2f} "
          f"({_fmt_metrics(result.best_metrics)}); run folder {result.run_dir}")
    return 0


def _require(args, *names) -> None:
    missing = ["--" + n.replace("_", "-") for n in names if not getattr(args, n, None)]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}")


def _common(p) -> None:
    p.add_argument("--data-root", help="folder holding fashionIQ_dataset/ and cirr_dataset/")
    p.add_argument("--dataset", choices=("fashioniq", "cirr"), help="benchmark to train on")
    p.add_argument("--recipe", help="named recipe (see --list-recipes), e.g. mini, paper-rn50x4-fashioniq")
    p.add_argument("--out", help="run folder to write (config.json, history.csv, best.pt, last.pt)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe field, e.g. --set epochs=5 --set lr=1e-5 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--list-recipes", action="store_true", help="list the recipes and exit")


def add_commands(subparsers) -> None:
    """Add `finetune` and `train-combiner` to the `cir-lib` command line."""
    p = subparsers.add_parser(
        "finetune", help="stage 1: fine-tune CLIP with the element-wise-sum contrastive loss",
        description="Stage 1 of CLIP4Cir. Under torchrun (WORLD_SIZE > 1) it trains with "
                    "DistributedDataParallel, gathering in-batch negatives across processes.")
    _common(p)
    p.set_defaults(func=_run_finetune)
    p = subparsers.add_parser(
        "train-combiner", help="stage 2: train the Combiner on frozen features of a stage-1 run",
        description="Stage 2 of CLIP4Cir: the Combiner on cached features of the stage-1 encoders.")
    _common(p)
    p.add_argument("--clip-run", help=f"stage-1 run folder, or {ZERO_SHOT!r} for the recipe's pretrained backbone")
    p.set_defaults(func=_run_train_combiner)
