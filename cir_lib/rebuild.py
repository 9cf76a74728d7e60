"""Loading trained models and runs, for evaluation, the explorer, CIRR submissions and the
notebooks: a run folder's config and models, a recipe's starting backbone, the preprocessing a run
was trained with, and the checkpoints released with the original code.

Nothing here trains; `cir_lib.finetune` and `cir_lib.train_combiner` write what this reads.

Example:
    >>> backbone, composer, config = load_run("results/mini/runs/cirr-combiner")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from cir_lib import runs
from cir_lib.errors import ConfigError
from cir_lib.precision import round_weights_fp16
from cir_lib.project import resolve_recorded
from cir_lib.recipes import CombinerTrainConfig, FinetuneConfig, config_from_dict, resolve_pretrained
from cir_lib.datasets import get_dataset
from cir_lib.backbone import load_backbone
from cir_lib.composers import ElementwiseSum, get_composer, load_combiner_checkpoint
from cir_lib.selection import SELECTION_CHOICES
from cir_lib.transform import PreprocessConfig

logger = logging.getLogger(__name__)

ZERO_SHOT = "zero-shot"  # clip_run value: the recipe's pretrained backbone, not fine-tuned


def load_pretrained_backbone(name: str, pretrained: str, data_root, device):
    pretrained = resolve_pretrained(pretrained, data_root)
    if pretrained.endswith("cir-mini.pt") and not Path(pretrained).is_file():
        raise ConfigError(
            f"pretrained weights {pretrained} not found: run `cir-lib pretrain-mini --data-root "
            f"{data_root}` first (or override with --set pretrained=none for random weights)")
    return load_backbone(name, pretrained, device=device)


def preprocess_for(config, backbone):
    """The image preprocessing a run config trains (and is evaluated) with, for this backbone."""
    return PreprocessConfig(kind=config.preprocess, image_size=backbone.image_size, ratio=config.preprocess_ratio)


def run_config(run_dir, info: Optional[dict] = None):
    """A run's FinetuneConfig / CombinerTrainConfig, from its config.json alone (no weights loaded)."""
    info = info if info is not None else runs.read_run_config(run_dir)
    classes = {"finetune": FinetuneConfig, "combiner": CombinerTrainConfig}
    if info.get("kind") not in classes:
        raise ConfigError(f"{Path(run_dir) / runs.CONFIG_FILE} is not a finetune or combiner run "
                          f"(kind {info.get('kind')!r})")
    return config_from_dict(classes[info["kind"]], info["config"])


def load_run(run_dir, device="cpu", which: str = "best", precision: Optional[str] = None):
    """Rebuild a run's models from its folder alone.

    Args:
        run_dir: a stage-1 (finetune) or stage-2 (combiner) run folder.
        device: where the models go.
        which: "best" (best.pt, the best by the run's `selection`), "last" (last.pt), or, for a CIRR
            run, a mean ("arithmetic", "harmonic", "geometric"): that mean's best_<mean>.pt. For a
            Combiner run it names the Combiner's file; its encoders are the stage-1 run's best.pt.
        precision: None (the run's own `precision`) or "official": the encoders' weights rounded to
            fp16 as the original code loads them (`cir_lib.precision.round_weights_fp16`). A run trained
            with "official" is always evaluated so (its Combiner was trained on the rounded encoders).

    Returns:
        (backbone, combiner, config): for a stage-1 run the fine-tuned backbone and the element-wise
        sum; for a stage-2 run its frozen stage-1 backbone (or the zero-shot one) and the trained
        composer (the Combiner, TIRG or ARTEMIS, as its checkpoint says); config is the run's
        FinetuneConfig / CombinerTrainConfig.

    Example:
        >>> backbone, combiner, cfg = load_run("runs/mini-fiq-combiner")
    """
    run_dir = Path(run_dir)
    info = runs.read_run_config(run_dir)
    kind = info.get("kind")
    config = run_config(run_dir, info)
    own = getattr(config, "precision", "fp32")
    if precision not in (None, own, "official"):
        raise ConfigError(f"run {run_dir} was trained with precision {own!r}: its encoders are fp16-rounded; "
                          f"evaluate it with its own precision (drop --precision {precision})")
    rounded = (precision or own) == "official"
    best = best_checkpoint_path(run_dir, which, info) if which != "last" else None
    if kind == "finetune":
        if which != "last":
            path = best
            backbone = load_backbone(config.backbone, str(path), device=device)
        else:
            last = runs.load_checkpoint(run_dir / runs.LAST_FILE)
            backbone = load_backbone(config.backbone, resolve_recorded(info["backbone"]["pretrained"]), device=device)
            backbone.model.load_state_dict(last["model"])
        backbone.model.eval()
        if rounded:
            round_weights_fp16(backbone.model)
        return backbone, ElementwiseSum(backbone.embed_dim), config
    clip = info["clip"]  # a combiner run (run_config accepts no other kind)
    if clip["run"] == ZERO_SHOT:
        backbone = load_backbone(clip["backbone"], resolve_recorded(clip["pretrained"]), device=device)
    else:
        clip_dir = Path(clip["run"])
        if not clip_dir.is_absolute():  # relative to the Combiner's run folder (older runs: absolute)
            clip_dir = run_dir / clip_dir
        if not (clip_dir / runs.CONFIG_FILE).is_file():
            raise ConfigError(f"Combiner run {run_dir} was trained on stage-1 run {clip_dir}, which is "
                              "no longer there; restore it (the Combiner needs its encoders)")
        backbone, _, _ = load_run(clip_dir, device=device)
    if own == "official":  # as train_combiner loaded them: the recorded weights_key is the rounded one's
        round_weights_fp16(backbone.model)
    if backbone.name != clip["backbone"] or backbone.weights_key != clip["weights_key"]:
        raise ConfigError(
            f"Combiner run {run_dir} was trained on {clip['backbone']} weights {clip['weights_key']} "
            f"from {clip['run']}, but that now gives {backbone.name} weights {backbone.weights_key} "
            "(was the stage-1 run continued or replaced?); retrain the Combiner on it")
    if rounded:
        round_weights_fp16(backbone.model)
    if which != "last":
        combiner = load_combiner_checkpoint(best, dim=backbone.embed_dim,
                                            map_location=device)
    else:
        last = runs.load_checkpoint(run_dir / runs.LAST_FILE)
        combiner = get_composer(run_composer(info)).for_training(backbone.embed_dim, config)
        combiner.load_state_dict(last["combiner"])
    return backbone, combiner.to(device).eval(), config


def run_composer(info: dict) -> str:
    """The registered name of a stage-2 run's composer, from its config.json (runs written before
    other composers were trained hold no record: the Combiner)."""
    return (info.get("composer") or {}).get("name", "combiner")


def best_checkpoint_path(run_dir, which: str = "best", info: Optional[dict] = None) -> Path:
    """The file of a run's best checkpoint: best.pt ("best"), or on CIRR the best by one mean.

    Raises:
        ConfigError: an unknown `which`, a mean asked of a FashionIQ run, or a file not (yet) there.
    """
    run_dir = Path(run_dir)
    choices = ("best", "last") + SELECTION_CHOICES
    if which not in choices:
        raise ConfigError(f"unknown checkpoint {which!r}; choose one of {', '.join(choices)}")
    if which == "best":
        path = run_dir / runs.BEST_FILE
    else:
        info = info if info is not None else runs.read_run_config(run_dir)
        if info.get("dataset") is not None and not get_dataset(info["dataset"]).selection_means:
            raise ConfigError(f"run {run_dir} trained on {info.get('dataset')}: only CIRR runs keep a best "
                              f"checkpoint per mean; drop --best-by {which}")
        path = run_dir / runs.best_file(which)
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no {path.name}: the run has not validated yet"
                          + ("" if which == "best" else " (or was trained by a version that kept only best.pt)"))
    return path


def resolve_trained_models(*, run=None, clip_checkpoint=None, combiner_checkpoint=None,
                           backbone: Optional[str] = None, pretrained: Optional[str] = None, device="cpu",
                           best_by: Optional[str] = None, precision: Optional[str] = None):
    """(backbone, composer) from a run folder, a fine-tuned CLIP file and/or a Combiner file (the
    kit's or the original code's), or None when none of them is given (the caller then loads
    `backbone` / `pretrained`). Serves `evaluate --run / --clip-checkpoint / --combiner-checkpoint`.

    Args:
        run: a finetune run (element-wise sum) or a combiner run (its Combiner over its encoders).
        clip_checkpoint: a fine-tuned CLIP: {'CLIP': state_dict}, a kit backbone checkpoint, or an
            open_clip state dict.
        combiner_checkpoint: a Combiner: {'Combiner': state_dict} or a kit Combiner checkpoint.
        backbone, pretrained: the model name and its weights where the files need them.
        device: where the models go.
        best_by: with `run` on CIRR: the checkpoint kept for this mean ("arithmetic", "harmonic",
            "geometric") instead of best.pt (the run's `selection`).
        precision: "official": the CLIP weights rounded to fp16 as the original code loads them (its
            released checkpoints were evaluated so on CUDA); None / "fp32": as stored (a run: its own).
    """
    if best_by and not run:
        raise ConfigError("--best-by names a checkpoint of a run folder: give --run RUN")
    clip, comb = clip_checkpoint, combiner_checkpoint
    if not (run or clip or comb):
        return None
    device = device or "cpu"
    if run:
        if clip or comb or pretrained:
            raise ConfigError("--run brings its own weights: drop --pretrained, --clip-checkpoint and "
                              "--combiner-checkpoint")
        model, combiner, _ = load_run(run, device=device, which=best_by or "best", precision=precision)
        if backbone and backbone != model.name:
            raise ConfigError(f"--backbone {backbone} contradicts run {run}, which holds a {model.name}")
        return model, combiner.to(device)
    if clip:
        if pretrained:
            raise ConfigError("give either --pretrained or --clip-checkpoint, not both")
        model = load_backbone(backbone or None, clip, device=device)  # kit files name their model
    else:
        if not backbone or pretrained is None:
            raise ConfigError("--combiner-checkpoint needs the CLIP it was trained on: give --clip-checkpoint "
                              "FILE (with --backbone), or --backbone NAME --pretrained P")
        model = load_backbone(backbone, pretrained, device=device)
    if precision == "official":
        round_weights_fp16(model.model)
    combiner = (load_combiner_checkpoint(comb, dim=model.embed_dim, map_location=device) if comb
                else ElementwiseSum(model.embed_dim))
    return model, combiner.to(device).eval()


def run_preprocess(run, backbone, chosen: Optional[str] = None):
    """The preprocessing a run was trained with (None without a run); an explicit, different
    `chosen` preprocessing wins, with a warning."""
    if not run:
        return None
    cfg = run_config(run)
    if chosen and chosen != cfg.preprocess:
        logger.warning("run %s was trained with %s preprocessing; evaluating with %s as asked",
                       run, cfg.preprocess, chosen)
        return PreprocessConfig(chosen, image_size=backbone.image_size)
    return preprocess_for(cfg, backbone)


