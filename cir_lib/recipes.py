"""Named training recipes: the paper's settings and CPU-sized ones, as dataclass configs.

A recipe pairs a stage-1 config (`FinetuneConfig`, CLIP fine-tuning with the element-wise sum)
with a stage-2 config (`CombinerTrainConfig`, the Combiner on frozen features). Pick one by name
through `get_recipe`, overriding any field from a notebook (keyword arguments) or from the command
line (`--set key=value`, parsed by the field's type):

    >>> cfg = get_recipe("mini", dataset="fashioniq", epochs=3)
    >>> cfg = get_recipe("paper-rn50x4-cirr", stage="combiner", **parse_overrides(["batch_size=1024"]))

A field of either stage is named `<stage>.<field>` where one setting reaches both stages (the
notebooks' `recipe_overrides` knob, `cir-lib reproduce --set combiner.lr=2e-4`); `split_overrides`
checks the names and parses the values once:

    >>> split_overrides({"combiner.lr": "2e-4", "finetune.batch_size": 64})
    {'finetune': {'batch_size': 64}, 'combiner': {'lr': 0.0002}}
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Union

from cir_lib.constants import DATASETS, EVAL_IMAGE_BATCH, EVAL_TEXT_BATCH, MINI_NAME, PREPROCESS_KINDS, STAGES, TARGETPAD_RATIO
from cir_lib.errors import ConfigError
from cir_lib.selection import SELECTION_CHOICES

ENCODER_CHOICES = ("text", "image", "both")
AMP_CHOICES = ("bf16", "fp16", "none")
PRECISION_CHOICES = ("fp32", "official")  # the kit's fp32, or the original code's path (cir_lib.precision)
DATA_ROOT_PLACEHOLDER = "{data_root}"  # in `pretrained`: replaced by the data root at run time


@dataclass
class FinetuneConfig:
    """Stage 1: fine-tune CLIP's text and/or image encoder with the element-wise-sum contrastive loss."""

    backbone: str = "RN50"  # open_clip model name, or "cir-mini"
    pretrained: str = "openai"  # "none", an open_clip tag, or a checkpoint path ("{data_root}/..." allowed)
    dataset: Optional[str] = None  # "fashioniq" | "cirr"; None = given at run time (CLI --dataset)
    encoders: str = "text"  # which encoders train: "text" (workshop) | "image" | "both" (journal)
    lr: float = 2e-6  # AdamW learning rate, no schedule
    betas: tuple = (0.9, 0.999)  # AdamW betas
    eps: float = 1e-7  # AdamW epsilon
    weight_decay: float = 0.01  # AdamW weight decay (torch's default, as the original code used)
    batch_size: int = 128  # triplets per step (global, over all processes under torchrun)
    epochs: int = 100  # passes over the training triplets
    validate_every: int = 1  # validate every N epochs (and always after the last one)
    preprocess: str = "targetpad"  # "targetpad" | "squarepad" | "clip"
    preprocess_ratio: float = TARGETPAD_RATIO  # target-pad ratio (long side / short side)
    amp: str = "fp16"  # training-step autocast on CUDA: "fp16" (+ GradScaler, as the original) | "bf16" |
    # "none"; CPU always fp32; features for validation / evaluation are fp32 whatever this says
    grad_checkpointing: bool = False  # recompute activations in backward (saves memory, "both")
    cache_image_features: bool = True  # text-only: use cached image features instead of re-encoding
    seed: int = 0  # seeds shuffling, caption augmentation and torch
    num_workers: int = 0  # image-loading worker processes (image / both encoders)
    encode_batch_size: int = 64  # batch size when encoding images / texts for caches and validation
    cache_dir: Optional[str] = None  # feature cache folder (None = no on-disk cache)
    skip_missing: bool = False  # skip queries whose images are missing (reported), else fail
    selection: str = "arithmetic"  # CIRR best checkpoint by the "arithmetic" | "harmonic" | "geometric"
    # mean of the seven metrics (cir_lib.selection); FashionIQ always uses (avg R@10 + avg R@50) / 2
    device: str = "auto"  # "auto" (CUDA when available) | "cpu" | "cuda" | "cuda:N"
    threads: Optional[int] = None  # torch CPU threads for the process (None: torch's choice); 1 can be
    # several times faster on a CPU shared with other jobs
    max_steps_per_epoch: Optional[int] = None  # dry runs: stop each epoch after N steps (None: all batches)
    max_queries: Optional[int] = None  # dry runs: first N queries of each split read (train, val; FashionIQ
    # per category) and only the images they name (data.load_split); None: the whole splits
    tensorboard: bool = True  # TensorBoard event files in the run folder (when the package is installed)
    precision: str = "fp32"  # "fp32" | "official": the original code's logits under the step's autocast
    # (CUDA), and evaluation on fp16-rounded weights (cir_lib.precision)


@dataclass
class CombinerTrainConfig:
    """Stage 2: train the Combiner from scratch on frozen (stage-1) CLIP features."""

    backbone: str = "RN50"  # must match the stage-1 run's backbone; used as-is for "zero-shot"
    pretrained: str = "openai"  # weights for a "zero-shot" clip run ("{data_root}/..." allowed)
    dataset: Optional[str] = None  # "fashioniq" | "cirr"; None = given at run time (CLI --dataset)
    lr: float = 2e-5  # Adam learning rate, no schedule
    batch_size: int = 4096  # triplets per step
    epochs: int = 300  # passes over the training triplets
    validate_every: int = 1  # validate every N epochs (and always after the last one)
    proj_multiplier: int = 4  # projection dim p = proj_multiplier * d (used when proj_dim is None)
    hidden_multiplier: int = 8  # hidden dim h = hidden_multiplier * d (used when hidden_dim is None)
    proj_dim: Optional[int] = None  # explicit projection dim p (the original: 2560 for every backbone)
    hidden_dim: Optional[int] = None  # explicit hidden dim h (the original: 5120 for every backbone)
    dropout: float = 0.5  # dropout in the Combiner's branches
    preprocess: str = "targetpad"  # "targetpad" | "squarepad" | "clip"
    preprocess_ratio: float = TARGETPAD_RATIO  # target-pad ratio (long side / short side)
    seed: int = 0  # seeds shuffling, caption augmentation, dropout and the Combiner's init
    encode_batch_size: int = 64  # batch size when encoding images / texts for the feature caches
    cache_dir: Optional[str] = None  # feature cache folder (None = no on-disk cache)
    skip_missing: bool = False  # skip queries whose images are missing (reported), else fail
    selection: str = "arithmetic"  # CIRR best checkpoint: "arithmetic" | "harmonic" | "geometric" mean
    device: str = "auto"  # "auto" (CUDA when available) | "cpu" | "cuda" | "cuda:N"
    threads: Optional[int] = None  # torch CPU threads for the process (None: torch's choice)
    max_steps_per_epoch: Optional[int] = None  # dry runs: stop each epoch after N steps (None: all batches)
    max_queries: Optional[int] = None  # dry runs: first N queries of each split read (as FinetuneConfig's)
    tensorboard: bool = True  # TensorBoard event files in the run folder (when the package is installed)
    precision: str = "fp32"  # "fp32" | "official": the original code's fp16-rounded stage-1 weights, fp16
    # features, the Combiner under fp16 autocast + GradScaler on CUDA (cir_lib.precision)


@dataclass
class PretrainConfig:
    """Hyperparameters of `pretrain_mini` (stored in the checkpoint it writes)."""

    model: str = MINI_NAME  # open_clip model name to train from scratch
    epochs: int = 4  # passes over the pool (6 until the 8-minute budget; the zero-shot checks of
    # docs/mini-calibration.md pass and fail alike at 4 and 6: tools/zero_shot_profile.py --pretrain-epochs)
    batch_size: int = 128  # image-caption pairs per step (in-batch negatives)
    lr: float = 2e-3  # AdamW peak learning rate
    weight_decay: float = 0.1  # AdamW weight decay (not on gains, biases, logit scale)
    warmup_steps: int = 50  # linear warmup, then cosine decay to 0
    preprocess: str = "targetpad"  # cir_lib.transform kind used to prepare pool images
    max_shift: int = 0  # augmentation: random translation of up to this many pixels (0: none)
    seed: int = 0  # seeds init, shuffling and augmentation
    threads: Optional[int] = None  # torch CPU threads (None: leave torch's setting)


@dataclass
class EvalConfig:
    """How to evaluate (`cir-lib evaluate`, `submit-cirr`, the explorer and the notebooks).

    The preprocessing is not here: it belongs to the model (a run's own, or targetpad at the
    backbone's input size) and is passed beside this config.
    """

    split: str = "val"  # the split to encode ("val" for metrics; "test1" for CIRR submissions)
    cache_dir: Optional[str] = None  # image-feature cache folder (None: no cache)
    skip_missing: bool = False  # drop missing or unreadable images and the queries using them (counted)
    batch_size: int = EVAL_IMAGE_BATCH  # images per forward pass
    text_batch_size: int = EVAL_TEXT_BATCH  # captions per forward pass
    device: Optional[str] = None  # where to encode: None = the backbone's device; "auto" | "cpu" | "cuda"
    num_workers: int = 0  # DataLoader workers decoding images
    max_queries: Optional[int] = None  # dry runs: first N queries (per FashionIQ category) and only the
    # images they name (data.load_split); the numbers are not the benchmark's. None: the whole split


# The configs a dotted override names by stage ("combiner.lr"): the stages' training configs.
STAGE_CONFIGS = {"finetune": FinetuneConfig, "combiner": CombinerTrainConfig}


def combiner_dims(config: CombinerTrainConfig, dim: int) -> tuple:
    """The Combiner's (projection dim p, hidden dim h) for features of size `dim`.

    Explicit `proj_dim` / `hidden_dim` win; otherwise p = proj_multiplier * dim, h = hidden_multiplier * dim.

    Example:
        >>> combiner_dims(get_recipe("paper-rn50-cirr", stage="combiner"), 1024)
        (2560, 5120)
    """
    p = config.proj_dim if config.proj_dim is not None else config.proj_multiplier * int(dim)
    h = config.hidden_dim if config.hidden_dim is not None else config.hidden_multiplier * int(dim)
    return int(p), int(h)


@dataclass(frozen=True)
class Recipe:
    """A named pair of stage configs."""

    description: str  # one line shown by `list_recipes`
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # stage 1
    combiner: CombinerTrainConfig = field(default_factory=CombinerTrainConfig)  # stage 2


def _paper(backbone: str, dataset: str, encoders: str) -> Recipe:
    """The published settings; where the papers are silent, the official code's (see docs/recipes.md).

    Stage 1 batch / epochs: the journal (both encoders) runs use the README's command, batch 128 for
    100 epochs. The workshop (text encoder only) runs use the training script's argparse defaults,
    batch 512 for 300 epochs: the first author wrote (CLIP4Cir issue #5) that the text-only runs of
    the published papers used a much larger batch than the both-encoder ones (a small batch hurts
    the contrastive loss), and the argparse defaults are the only text-only setting the code states;
    the epochs go with that batch (with the best epoch kept, 300 epochs contain the first 100).
    """
    text_only = encoders == "text"
    version = "workshop (text encoder)" if text_only else "journal (both encoders)"
    if text_only:
        batch_size = 512  # argparse default (clip_fine_tune.py); author's statement in CLIP4Cir issue #5
        epochs = 300  # argparse default (clip_fine_tune.py), the batch's companion
    else:
        batch_size = 128  # README command (journal, both encoders)
        epochs = 100  # README command
    return Recipe(
        description=f"{backbone} on {dataset}, {version}, released hyperparameters",
        finetune=FinetuneConfig(
            backbone=backbone,  # paper
            pretrained="openai",  # paper (OpenAI CLIP weights)
            dataset=dataset,
            encoders=encoders,  # paper: text (workshop) | both (journal)
            lr=2e-6,  # paper; argparse default and README command
            betas=(0.9, 0.999),  # official code (clip_fine_tune.py optimizer)
            eps=1e-7,  # official code (clip_fine_tune.py optimizer)
            batch_size=batch_size,  # argparse default (text) / README command (both), above
            epochs=epochs,  # argparse default (text) / README command (both), above
            validate_every=1,  # argparse default and README command
            preprocess="targetpad",  # argparse default and README command
            preprocess_ratio=TARGETPAD_RATIO,  # argparse default and README command (1.25)
            amp="fp16",  # official code: torch.cuda.amp.autocast + GradScaler
            selection="arithmetic",  # paper (the original also kept harmonic / geometric bests)
        ),
        combiner=CombinerTrainConfig(
            backbone=backbone,  # paper
            pretrained="openai",  # paper
            dataset=dataset,
            lr=2e-5,  # paper; argparse default and README command
            batch_size=4096,  # README command
            epochs=300,  # README command
            validate_every=1,  # README command
            proj_dim=2560,  # official code: 640 * 4 for every backbone (README command for RN50x4)
            hidden_dim=5120,  # official code: 640 * 8 for every backbone (README command for RN50x4)
            dropout=0.5,  # paper
            preprocess="targetpad",  # README command
            preprocess_ratio=TARGETPAD_RATIO,  # README command (1.25)
            selection="arithmetic",  # paper
        ),
    )


RECIPES: dict = {
    "paper-rn50-fashioniq": _paper("RN50", "fashioniq", "text"),
    "paper-rn50-cirr": _paper("RN50", "cirr", "text"),
    "paper-rn50x4-fashioniq": _paper("RN50x4", "fashioniq", "text"),
    "paper-rn50x4-cirr": _paper("RN50x4", "cirr", "text"),
    "journal-rn50x4-fashioniq": _paper("RN50x4", "fashioniq", "both"),
    "journal-rn50x4-cirr": _paper("RN50x4", "cirr", "both"),
    # The embedded mini benchmark on 2 CPU cores: cir-mini pretrained by `cir-lib pretrain-mini`.
    "mini": Recipe(
        description="cir-mini (from pretrain-mini) on the mini benchmark, CPU-sized (1-3 min a stage)",
        # lr scaled up for a tiny model trained from scratch (2e-6 suits OpenAI's CLIP, not cir-mini);
        # the Combiner at p = 2d, h = 4d: a quarter of the paper's width, the same architecture.
        # On a 2-core CPU shared with other jobs, --set threads=1 ran 3-5x faster than torch's default
        # (OpenMP contention); on an idle 2-core machine 1 thread cost 1.4x (stage 1 101 s vs 72 s for
        # both datasets, Combiner 62 s vs 46 s), so the default stays.
        finetune=FinetuneConfig(backbone="cir-mini", pretrained="{data_root}/cir-mini.pt",
                                encoders="text", lr=1e-3, weight_decay=0.01, batch_size=128,
                                epochs=6, validate_every=2, amp="none", encode_batch_size=128),
        # Combiner lr 2e-4: at 1e-3 the first epoch pushed the dynamic scalar's logit past 20 on
        # FashionIQ (stage-1 text features ~6x longer than the image features), a saturated sigmoid
        # (lambda 1.00 on every query); at 2e-4 lambda moves down from ~0.96 and the selection score
        # is ~3 points higher; the paper's 2e-5 needs more than 400 epochs here (benchmarks/lambda_study.py).
        # 40 epochs (100 before the poster's other rows; stage 1 6, was 8): twelve stage-2 runs (three
        # composers over two encoders, two datasets) in the 8-minute `make reproduce`; at 5e-4 x 30 epochs lambda
        # saturated again (0.999 on FashionIQ-like val). Every composer trains with these numbers.
        combiner=CombinerTrainConfig(backbone="cir-mini", pretrained="{data_root}/cir-mini.pt",
                                     lr=2e-4, batch_size=256, epochs=40, validate_every=5,
                                     proj_multiplier=2, hidden_multiplier=4, encode_batch_size=128),
    ),
    # Seconds: checks that the whole path runs (tests, `reproduce --profile smoke`).
    "smoke": Recipe(
        description="random-init cir-mini, a couple of tiny epochs (seconds; tests only)",
        finetune=FinetuneConfig(backbone="cir-mini", pretrained="none", encoders="text", lr=1e-4,
                                batch_size=16, epochs=2, validate_every=1, amp="none",
                                encode_batch_size=64, device="cpu"),
        combiner=CombinerTrainConfig(backbone="cir-mini", pretrained="none", lr=1e-3,
                                     batch_size=32, epochs=2, validate_every=1,
                                     proj_multiplier=2, hidden_multiplier=2,
                                     encode_batch_size=64, device="cpu"),
    ),
}


def list_recipes() -> dict:
    """Return {name: description} of the registered recipes."""
    return {name: recipe.description for name, recipe in RECIPES.items()}


def get_recipe(name: str, stage: str = "finetune", **overrides: Any):
    """Return a fresh copy of a named recipe's config for one stage, with fields overridden.

    Args:
        name: a key of `RECIPES` ("paper-rn50-fashioniq", "mini", "smoke", ...).
        stage: "finetune" (stage 1, `FinetuneConfig`) or "combiner" (stage 2, `CombinerTrainConfig`).
        **overrides: field values; strings are parsed by the field's type (as `--set` does).

    Returns:
        A `FinetuneConfig` or `CombinerTrainConfig`, checked by `check_config`.

    Example:
        >>> get_recipe("smoke", dataset="cirr", epochs=1).epochs
        1
    """
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}")
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose 'finetune' or 'combiner'")
    base = getattr(RECIPES[name], stage)
    config = apply_overrides(dataclasses.replace(base), overrides)
    check_config(config)
    return config


def parse_overrides(items: Optional[Iterable[str]], json_values: bool = False) -> dict:
    """Turn ["key=value", ...] (every command's repeated `--set`) into a dict.

    Args:
        items: the `--set` values.
        json_values: parse each value as JSON where it is JSON (`reproduce`, whose notebook
            parameters include lists and dicts); otherwise values stay raw strings, parsed later by
            the config field's type.

    Example:
        >>> parse_overrides(["lr=1e-5", "encoders=both"])
        {'lr': '1e-5', 'encoders': 'both'}
    """
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        value = value.strip()
        if json_values:
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key.strip()] = value
    return out


def parse_field(cls, key: str, value: Any, prefix: str = "") -> Any:
    """`value` parsed by the type of the field `key` of the config class `cls`.

    Args:
        cls: a config dataclass (`FinetuneConfig`, `CombinerTrainConfig`, ...).
        key: the field's name.
        value: the value (a string from `--set` is parsed: "2e-4" -> 0.0002, "none" -> None).
        prefix: how the user's name starts ("combiner."), for messages.

    Raises:
        ConfigError: no such field (naming the fields and the closest one), or a value of another type.
    """
    names = [f.name for f in dataclasses.fields(cls)]
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
        raise ConfigError(f"{cls.__name__} has no field {prefix + key!r}{hint}; fields: {', '.join(sorted(names))}")
    return _coerce(prefix + key, value, typing.get_type_hints(cls)[key])


def apply_overrides(config, overrides: dict):
    """Return a copy of `config` with fields replaced; string values are parsed by field type."""
    changes = {key: parse_field(type(config), key, value) for key, value in overrides.items()}
    return dataclasses.replace(config, **changes)


def split_overrides(overrides: Optional[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Dotted recipe overrides by stage, each name checked and each value parsed by its field's type.

    What the notebooks' `recipe_overrides` knob and `cir-lib reproduce --set <stage>.<field>=...`
    hold; `cir_lib.settings.setup` resolves them once.

    Args:
        overrides: {"<stage>.<field>": value}, stage one of `STAGE_CONFIGS` ("finetune", "combiner").

    Returns:
        {stage: {field: parsed value}} of the stages named (none: {}).

    Raises:
        ConfigError: a name without a stage, an unknown stage or field (with the closest name), or a
            value of another type.

    Example:
        >>> split_overrides({"combiner.lr": "2e-4"})
        {'combiner': {'lr': 0.0002}}
    """
    out: dict[str, dict[str, Any]] = {}
    if overrides is None:
        return out
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"recipe overrides must be a mapping such as {{\"combiner.lr\": 2e-4}}, got {overrides!r}")
    for key, value in overrides.items():
        stage, dot, name = str(key).partition(".")
        if not dot or stage not in STAGE_CONFIGS:
            raise ConfigError(f"unknown recipe setting {key!r}{recipe_setting_hint(str(key))}: name it "
                              f"<stage>.<field> with a stage of {', '.join(STAGE_CONFIGS)} (e.g. combiner.lr=2e-4); "
                              "the fields are the recipes' (cir_lib/recipes.py)")
        out.setdefault(stage, {})[name] = parse_field(STAGE_CONFIGS[stage], name, value, prefix=f"{stage}.")
    return out


def recipe_setting_hint(key: str) -> str:
    """" (did you mean 'finetune.lr' or 'combiner.lr'?)" for a name close to a dotted recipe setting
    (a bare field name included), else ""."""
    stages = [stage for stage, cls in STAGE_CONFIGS.items() if key in {f.name for f in dataclasses.fields(cls)}]
    if stages:
        return " (did you mean " + " or ".join(repr(f"{stage}.{key}") for stage in stages) + "?)"
    dotted = [f"{stage}.{f.name}" for stage, cls in STAGE_CONFIGS.items() for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, dotted, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def stage_overrides(overrides: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """The overrides of one stage's command (`cir-lib finetune --set ...`): plain field names
    ("lr") and the stage's dotted names ("finetune.lr") alike; another stage's names are refused.

    Example:
        >>> stage_overrides({"lr": "1e-5", "finetune.epochs": "3"}, "finetune")
        {'lr': '1e-5', 'epochs': '3'}
    """
    if stage not in STAGE_CONFIGS:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGE_CONFIGS)}")
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        prefix, dot, name = str(key).partition(".")
        if dot:
            if prefix not in STAGE_CONFIGS:
                raise ConfigError(f"unknown stage {prefix!r} in {key!r}{recipe_setting_hint(str(key))}; the stages "
                                  f"are {', '.join(STAGE_CONFIGS)}")
            if prefix != stage:
                raise ConfigError(f"{key!r} is a setting of the {prefix} stage, but this command trains the "
                                  f"{stage} stage: set {stage}.{name} (or just {name}) here")
            key = name
        if key in out:
            raise ConfigError(f"{stage}.{key} is set twice ({key}= and {stage}.{key}=): set it once")
        out[key] = value
    return out


def config_from_dict(cls, values: dict):
    """Rebuild a config dataclass from `dataclasses.asdict` output (e.g. a run's config.json)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{cls.__name__} has no fields {sorted(unknown)} (written by another version?)")
    return apply_overrides(cls(), values)


def _check_numbers(config, bad) -> None:
    """Every number of a config is finite (NaN and infinity are refused by field name)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                bad(f"{f.name} must be a finite number, got {value!r}")


def _check_pretrain(config: PretrainConfig, bad) -> None:
    if config.epochs < 1:
        bad(f"epochs must be >= 1, got {config.epochs}")
    if config.batch_size < 2:
        bad(f"batch_size must be >= 2 (in-batch negatives), got {config.batch_size}")
    if config.lr <= 0:
        bad(f"lr must be > 0, got {config.lr}")
    if config.weight_decay < 0:
        bad(f"weight_decay must be >= 0, got {config.weight_decay}")
    if config.warmup_steps < 0 or config.max_shift < 0:
        bad(f"warmup_steps and max_shift must be >= 0, got {config.warmup_steps}, {config.max_shift}")
    if config.preprocess not in PREPROCESS_KINDS:
        bad(f"preprocess must be one of {PREPROCESS_KINDS}, got {config.preprocess!r}")
    if config.threads is not None and config.threads < 1:
        bad(f"threads must be >= 1 (or none), got {config.threads}")


def _check_eval(config: EvalConfig, bad) -> None:
    for name in ("batch_size", "text_batch_size"):
        if getattr(config, name) < 1:
            bad(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.num_workers < 0:
        bad(f"num_workers must be >= 0, got {config.num_workers}")


def check_config(config) -> None:
    """Raise ConfigError when a config's values are inconsistent, not finite or out of range.

    Args:
        config: a `FinetuneConfig`, `CombinerTrainConfig`, `PretrainConfig` or `EvalConfig`.

    Raises:
        ConfigError: naming the config, the field and the accepted range.
    """
    def bad(msg):
        raise ConfigError(f"{type(config).__name__}: {msg}")

    _check_numbers(config, bad)
    if isinstance(config, PretrainConfig):
        return _check_pretrain(config, bad)
    if isinstance(config, EvalConfig):
        return _check_eval(config, bad)
    if config.dataset is not None and config.dataset not in DATASETS:
        bad(f"dataset must be one of {DATASETS}, got {config.dataset!r}")
    if config.preprocess not in PREPROCESS_KINDS:
        bad(f"preprocess must be one of {PREPROCESS_KINDS}, got {config.preprocess!r}")
    if config.preprocess_ratio < 1:
        bad(f"preprocess_ratio must be >= 1, got {config.preprocess_ratio}")
    if config.lr <= 0:
        bad(f"lr must be > 0, got {config.lr}")
    if config.batch_size < 2:
        bad(f"batch_size must be >= 2 (in-batch negatives), got {config.batch_size}")
    if config.epochs < 1:
        bad(f"epochs must be >= 1, got {config.epochs}")
    if config.threads is not None and config.threads < 1:
        bad(f"threads must be >= 1 (or none), got {config.threads}")
    if config.validate_every < 1:
        bad(f"validate_every must be >= 1, got {config.validate_every}")
    if config.max_steps_per_epoch is not None and config.max_steps_per_epoch < 1:
        bad(f"max_steps_per_epoch must be >= 1 (or none for every batch), got {config.max_steps_per_epoch}")
    if config.max_queries is not None and config.max_queries < 2:
        bad(f"max_queries must be >= 2 (in-batch negatives; or none for the whole splits), got {config.max_queries}")
    if config.encode_batch_size < 1:
        bad(f"encode_batch_size must be >= 1, got {config.encode_batch_size}")
    if config.seed < 0:
        bad(f"seed must be >= 0, got {config.seed}")
    if not (config.device == "auto" or config.device == "cpu" or config.device.startswith("cuda")):
        bad(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {config.device!r}")
    if isinstance(config, FinetuneConfig):
        if config.encoders not in ENCODER_CHOICES:
            bad(f"encoders must be one of {ENCODER_CHOICES}, got {config.encoders!r}")
        if config.amp not in AMP_CHOICES:
            bad(f"amp must be one of {AMP_CHOICES}, got {config.amp!r}")
        if len(config.betas) != 2 or not all(0 <= b < 1 for b in config.betas):
            bad(f"betas must be two numbers in [0, 1), got {config.betas!r}")
        if config.eps <= 0:
            bad(f"eps must be > 0, got {config.eps}")
        if config.weight_decay < 0:
            bad(f"weight_decay must be >= 0, got {config.weight_decay}")
        if config.num_workers < 0:
            bad(f"num_workers must be >= 0, got {config.num_workers}")
    if isinstance(config, CombinerTrainConfig):
        if not 0 <= config.dropout < 1:
            bad(f"dropout must be in [0, 1), got {config.dropout}")
        if config.proj_multiplier < 1 or config.hidden_multiplier < 1:
            bad("proj_multiplier and hidden_multiplier must be >= 1")
        for name in ("proj_dim", "hidden_dim"):
            value = getattr(config, name)
            if value is not None and value < 1:
                bad(f"{name} must be >= 1, or none for the multiplier rule; got {value}")
    if config.selection not in SELECTION_CHOICES:
        bad(f"selection must be one of {SELECTION_CHOICES}, got {config.selection!r}")
    if config.precision not in PRECISION_CHOICES:
        bad(f"precision must be one of {PRECISION_CHOICES}, got {config.precision!r}")


def resolve_pretrained(pretrained: str, data_root) -> str:
    """Replace "{data_root}" in a `pretrained` setting by the data root (a path string)."""
    if DATA_ROOT_PLACEHOLDER in pretrained:
        return pretrained.replace(DATA_ROOT_PLACEHOLDER, str(data_root))
    return pretrained


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(key: str, value: Any, hint) -> Any:
    """Parse/check one override value against a field's type hint."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union:  # Optional[X]
        inner = [a for a in args if a is not type(None)][0]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(key, value, inner)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
                return value.lower() in _TRUE
            raise ValueError("expected true/false")
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected an integer")
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if hint is tuple or origin is tuple:
            if isinstance(value, str):
                value = [v for v in value.strip("()[] ").split(",") if v.strip()]
            return tuple(float(v) for v in value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError("expected a string")
            return value
    except (TypeError, ValueError) as err:
        raise ConfigError(f"bad value {value!r} for {key!r}: {err}") from None
    return value


def recipe_backbones(recipes: Mapping[str, str], pretrained: Optional[str] = None) -> dict[str, tuple[str, str]]:
    """{dataset: (backbone, pretrained)} of the stage-1 configs of the given recipes."""
    out = {}
    for dataset, name in recipes.items():
        cfg = get_recipe(name, "finetune", dataset=dataset)
        out[dataset] = (cfg.backbone, pretrained or cfg.pretrained)
    return out
