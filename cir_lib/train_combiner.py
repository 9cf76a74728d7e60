"""Stage 2 of CLIP4Cir (`cir-lib train-combiner`): a trained composer, from scratch, on frozen features.

The composer is any registered one with weights of its own (`cir_lib.composers`: the Combiner by
default, TIRG, ARTEMIS), built by its `for_training(dim, config)` and trained with the same recipe
(`CombinerTrainConfig`: Adam, lr, batch, epochs, selection). The encoders are those of a stage-1 run
(or the recipe's pretrained backbone: "zero-shot"). Every image and every caption variant is encoded
once per run; an epoch only runs the composer. Query-vector composers train with the contrastive
loss of both stages; a "scores" composer with cross-entropy over its (B, B) score matrix times its
own `logit_scale()` (`cir_lib.losses`). Writes a run folder like stage 1 (config.json, with the
composer's name under "composer", history.csv, best.pt, last.pt).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

import torch

from cir_lib import runs
from cir_lib.data import annotation_fingerprint
from cir_lib.devices import pick_device, set_threads
from cir_lib.errors import ConfigError
from cir_lib.locks import locked_folder
from cir_lib.composers import composer_kind, get_composer, save_combiner_checkpoint, trained_composer_names
from cir_lib.losses import contrastive_loss, scores_loss
from cir_lib.precision import round_features_fp16, round_weights_fp16
from cir_lib.recipes import CombinerTrainConfig, check_config, resolve_pretrained
from cir_lib.rebuild import ZERO_SHOT, load_pretrained_backbone, preprocess_for
from cir_lib.training import (RunResult, autocast_factory, make_optimizer, optimizer_step, resume_state,
                              train_epochs)
from cir_lib.training_data import (load_train_split, load_val_splits, resolve_dataset,
                                   tokenize_variants, training_captions)
from cir_lib.training_validation import image_features_for, make_val_sets, metrics_for
from cir_lib.backbone import load_backbone
from cir_lib.features import memoized_text_features

logger = logging.getLogger(__name__)


def clip_for_combiner(clip_run, config: CombinerTrainConfig, data_root, device):
    """The frozen backbone of stage 2 and a JSON record of where it came from."""
    if str(clip_run) == ZERO_SHOT:
        pretrained = resolve_pretrained(config.pretrained, data_root)
        backbone = load_pretrained_backbone(config.backbone, config.pretrained, data_root, device)
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
    if config.precision == "official":  # the original loads the weights into an fp16 model
        round_weights_fp16(backbone.model)
    record.update(backbone=backbone.name, pretrained=pretrained, weights_key=backbone.weights_key,
                  embed_dim=backbone.embed_dim)
    return backbone, record


def official_amp(device: torch.device):
    """(autocast, GradScaler or None) of the official code's Combiner: fp16 autocast with a GradScaler on
    CUDA; on the CPU neither (fp32 arithmetic on the fp16-rounded features)."""
    if device.type == "cuda":
        return autocast_factory(device, "fp16"), torch.amp.GradScaler("cuda")
    return contextlib.nullcontext, None


def composer_loss(composer, reference_features: torch.Tensor, text_features: torch.Tensor,
                  target_features: torch.Tensor) -> torch.Tensor:
    """The stage-2 loss of a batch for any trained composer, over in-batch targets: the contrastive
    loss on its queries ("vector": the Combiner, TIRG), or cross-entropy over its score matrix
    against the batch's targets times its `logit_scale()` ("scores": ARTEMIS)."""
    if composer_kind(composer) == "scores":
        return scores_loss(composer.scores(reference_features, text_features, target_features),
                           composer.logit_scale())
    return contrastive_loss(composer(reference_features, text_features), target_features)


def combiner_step(combiner, reference_features: torch.Tensor, text_features: torch.Tensor,
                  target_features: torch.Tensor, optimizer, autocast=contextlib.nullcontext, scaler=None,
                  check=None) -> float:
    """One stage-2 training step: the composer's query (or scores) from (reference, caption)
    features, its loss against the targets (`composer_loss`), then `training.optimizer_step`; what
    `train_combiner` runs for every batch and `benchmarks/bench_gpu.py` times.

    Args:
        combiner: the composer (in train mode): the Combiner, TIRG or ARTEMIS.
        reference_features, text_features, target_features: [B, d] frozen features of the batch.
        optimizer, scaler, check: as `training.optimizer_step`.
        autocast: the Combiner's autocast (fp32 by default).

    Returns:
        The loss value.

    Example:
        >>> combiner_step(Combiner(640).train(), ref, text, tgt, torch.optim.Adam(...))
    """
    with autocast():
        loss = composer_loss(combiner, reference_features, text_features, target_features)
    return optimizer_step(loss, optimizer, scaler, check=check)


@locked_folder("out_dir")  # one writer per run folder: a second process is refused at once
def train_combiner(data_root, config: CombinerTrainConfig, clip_run, out_dir, resume: bool = False,
                   composer: str = "combiner") -> RunResult:
    """Stage 2: train the Combiner (or another trained composer) on frozen CLIP features.

    Args:
        data_root: folder holding fashionIQ_dataset/ and cirr_dataset/.
        config: a `CombinerTrainConfig` (e.g. `get_recipe("mini", stage="combiner", dataset="cirr")`).
        clip_run: a stage-1 run folder (its best.pt is the frozen backbone) or "zero-shot" (the
            recipe's pretrained backbone, for ablations).
        out_dir: the run folder.
        resume: continue from out_dir/last.pt.
        composer: a registered composer with trained weights ("combiner", "tirg", "artemis"),
            trained with the same recipe; recorded in config.json and the checkpoints.

    Returns:
        RunResult. best.pt is a composer checkpoint (`load_combiner_checkpoint`) that names its
        backbone; `load_run(out_dir)` rebuilds both.

    Example:
        >>> cfg = get_recipe("mini", stage="combiner", dataset="fashioniq")
        >>> train_combiner("data/mini", cfg, "runs/mini-fiq-finetune", "runs/mini-fiq-combiner")
        >>> train_combiner("data/mini", cfg, "zero-shot", "runs/mini-fiq-tirg-zeroshot", composer="tirg")
    """
    spec = get_composer(composer)  # ConfigError naming the known ones
    if not spec.trained:
        raise ConfigError(f"composer {composer!r} has no weights to train; stage 2 trains one of "
                          f"{', '.join(trained_composer_names())}")

    t_start = time.perf_counter()
    check_config(config)
    dataset = resolve_dataset(config)
    runs.check_run_folder(out_dir, "combiner", resume)  # before any work: a file, read-only, a used run
    if config.cache_dir:
        runs.check_output_folder(config.cache_dir, "cache_dir")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("train-combiner runs in one process (an epoch on cached features takes seconds); "
                          "launch it without torchrun")
    set_threads(config.threads)
    device = pick_device(config.device)
    torch.manual_seed(config.seed)

    train_split = load_train_split(data_root, dataset, config.skip_missing, config.max_queries)
    val_splits = load_val_splits(data_root, dataset, config.skip_missing, config.max_queries)
    if len(train_split.queries) < 2:
        raise ConfigError(f"{train_split.label} has {len(train_split.queries)} usable triplets; need at least 2")
    backbone, clip_record = clip_for_combiner(clip_run, config, data_root, device)
    if clip_record["run"] != ZERO_SHOT:  # linked by a relative path: a copied results folder still loads
        for key in ("run", "checkpoint", "pretrained"):
            clip_record[key] = os.path.relpath(clip_record[key], Path(out_dir).resolve())

    composer_record = {"name": spec.name, "kind": spec.kind}
    same_clip = {"clip": {k: clip_record[k] for k in ("backbone", "weights_key")}}
    if spec.name != "combiner":  # runs written before other composers existed hold no record: the Combiner
        same_clip["composer"] = composer_record
    run = runs.RunFolder.open(out_dir, "combiner", config, resume, device=str(device), must_match=same_clip, extra={
        "data_root": str(Path(data_root).resolve()), "dataset": dataset, "clip": clip_record,
        "composer": composer_record,
        "annotations": annotation_fingerprint(data_root, dataset),
        "skipped": {"train": train_split.skipped.to_dict(),
                    **{k: s.skipped.to_dict() for k, s in val_splits.items()}}})

    preprocess = preprocess_for(config, backbone)
    # Every image and every caption variant is encoded once per run (the encoders are frozen).
    logger.info("encoding the training images and captions once (%s)", train_split.label)
    image_f = image_features_for(backbone, train_split, preprocess, config.cache_dir, config.encode_batch_size,
                              device)
    tokens = tokenize_variants(backbone, training_captions(train_split))
    q_count, n_var, ctx = tokens.shape
    text_f = memoized_text_features(backbone, tokens.view(-1, ctx), config.encode_batch_size, device)  # shared by a series' runs
    text_f = text_f.view(q_count, n_var, -1)
    autocast, scaler = contextlib.nullcontext, None
    if config.precision == "official":  # the original's Combiner: fp16 features, fp16 autocast + GradScaler
        image_f, text_f = round_features_fp16(image_f), round_features_fp16(text_f)
        autocast, scaler = official_amp(device)
    reference, target = train_split.reference_indices.to(device), train_split.target_indices.to(device)
    val_sets = make_val_sets(val_splits, backbone)
    for vs in val_sets.values():
        vs.index_features = image_features_for(backbone, vs.split, preprocess, config.cache_dir,
                                            config.encode_batch_size, device)
        vs.text_features = memoized_text_features(backbone, vs.tokens, config.encode_batch_size, device)

    dim = backbone.embed_dim
    torch.manual_seed(config.seed)
    # the Combiner at the recipe's p / h (the paper recipes: 2560 / 5120, as the original); TIRG and
    # ARTEMIS at their papers' shapes for this d
    combiner = spec.for_training(dim, config).to(device)
    optimizer = make_optimizer(torch.optim.Adam, combiner.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    def load_into(last: dict) -> None:
        combiner.load_state_dict(last["combiner"])
        optimizer.load_state_dict(last["optimizer"])
        if scaler is not None and last.get("scaler"):
            scaler.load_state_dict(last["scaler"])

    state = resume_state(run, "combiner", resume, generator, load_into)

    def start_epoch(epoch, batches):
        combiner.train()

        def step(q_idx, v_idx, check):
            q_idx, v_idx = q_idx.to(device), v_idx.to(device)
            value = combiner_step(combiner, image_f[reference[q_idx]], text_f[q_idx, v_idx], image_f[target[q_idx]],
                                  optimizer, autocast, scaler, check=check)
            return value, len(q_idx)
        return step

    def validate(epoch, monitor):
        lambdas = None
        combiner.eval()
        with torch.no_grad():
            metrics = metrics_for(dataset, val_sets, combiner,
                                  {k: vs.index_features for k, vs in val_sets.items()},
                                  {k: vs.text_features for k, vs in val_sets.items()})
            if monitor.writer is not None and hasattr(combiner, "dynamic_scalar"):  # the Combiner's lambda
                # over the val queries, for TensorBoard's histogram
                lambdas = torch.cat([combiner(vs.index_features[vs.reference.to(device)], vs.text_features,
                                              return_lambda=True)[1] for vs in val_sets.values()])
        return metrics, lambdas

    train_epochs(
        run, config, dataset, state, generator, optimizer, num_queries=q_count, num_variants=n_var,
        batch_size=config.batch_size, start_epoch=start_epoch, validate=validate,
        desc=f"{spec.label.removeprefix('+ ')} {dataset}",
        save_best=lambda extra, path: save_combiner_checkpoint(combiner, path, extra={
            "kind": "combiner", **extra, "clip": clip_record, "composer": composer_record}),
        last_state=lambda: {"kind": "combiner", "composer": composer_record, "combiner": combiner.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                            "rng": runs.rng_state(generator), "clip": clip_record})
    combiner.eval()
    return RunResult(run.path, state["best_epoch"], state["best_score"], state["best_metrics"],
                     state["history"], time.perf_counter() - t_start, config)


