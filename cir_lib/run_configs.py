"""The training configs of a series, resolved from its `Settings` alone: what notebooks 01 and 02
train and what `cir-lib reproduce` checks before any notebook runs.

Kept apart from `cir_lib.notebook` (which imports torch, open_clip and pandas) so that `reproduce`
checks every config in its own process without importing them: about 10 s of a `make reproduce`
that the five notebook kernels import anyway. `cir_lib.notebook` re-exports these names.

Example:
    >>> settings = setup("smoke", "01_stage1_finetune", recipe_overrides={"finetune.lr": 3e-4})
    >>> config = training_config(settings, "finetune", "cirr")
"""

from __future__ import annotations

import os
from typing import Any, Optional

from cir_lib.constants import STAGES
from cir_lib.errors import ConfigError
from cir_lib.recipes import get_recipe
from cir_lib.settings import Settings


DRY_RUN_STEPS = 2  # dry run: training steps per epoch
DRY_RUN_QUERIES = 24  # dry run: queries per split (training, validation, evaluation, test1)
DRY_RUN_BATCH = 8  # dry run: triplets per step


def dry_run_caps(settings: "Settings", evaluation: bool = False) -> dict:
    """The caps a dry run puts on a stage config (or, `evaluation=True`, on the EvalConfig): a few
    steps per epoch, small batches and capped splits; {} for a real run."""
    if not settings.dry_run:
        return {}
    if evaluation:
        return {"max_queries": DRY_RUN_QUERIES}
    return {"max_steps_per_epoch": DRY_RUN_STEPS, "max_queries": DRY_RUN_QUERIES, "batch_size": DRY_RUN_BATCH,
            "encode_batch_size": DRY_RUN_BATCH, "validate_every": 1}


def stage_config(recipe: str, stage: str, dataset: str, *, epochs: Optional[int] = None,
                 pretrained: Optional[str] = None, cache_dir: Optional[str | os.PathLike] = None,
                 **overrides: Any):
    """A recipe's config for one stage and dataset, with the notebooks' overrides applied.

    Args:
        recipe: a recipe name (`cir_lib.recipes.RECIPES`).
        stage: "finetune" (stage 1) or "combiner".
        dataset: "fashioniq" or "cirr".
        epochs, pretrained, cache_dir: overrides; None keeps the recipe's value.
        **overrides: any other field of the stage's config.

    Returns:
        A `FinetuneConfig` or `CombinerTrainConfig`.
    """
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    values = dict(overrides)
    for key, value in (("epochs", epochs), ("pretrained", pretrained), ("cache_dir", cache_dir)):
        if value is not None:
            values[key] = str(value) if key == "cache_dir" else value
    return get_recipe(recipe, stage, dataset=dataset, **values)


def training_config(settings: Settings, stage: str, dataset: str, *, backbone: str = "", seed: int = 0):
    """The config of one training run of the series, resolved from the settings alone and checked once:
    the recipe of `dataset` (and `backbone`), the profile's and the knobs' epochs, starting weights
    and skip_missing, the shared feature cache, the run's seed, a dry run's caps, then
    `settings.recipe_overrides` of the stage (the `recipe_overrides` knob, `reproduce --set
    combiner.lr=2e-4`). What notebooks 01 and 02 train and `cir-lib reproduce` checks before it starts.

    Args:
        settings: the notebook's `Settings`.
        stage: "finetune" (stage 1) or "combiner".
        dataset: a dataset of `settings.datasets`.
        backbone: one of `settings.backbones` ("": the recipes' own).
        seed: the training seed (one of `settings.seeds`).

    Returns:
        A `FinetuneConfig` or `CombinerTrainConfig`.

    Example:
        >>> settings = setup("smoke", None, recipe_overrides={"combiner.lr": 2e-4})
        >>> training_config(settings, "combiner", "cirr").lr
        0.0002
    """
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    epochs = {"finetune": settings.stage1_epochs, "combiner": settings.combiner_epochs}[stage]
    values = {"epochs": epochs, "pretrained": settings.pretrained, "cache_dir": settings.paths.folder("cache"),
              "skip_missing": settings.skip_missing, "seed": seed, **dry_run_caps(settings),
              **settings.recipe_overrides.get(stage, {})}
    return stage_config(settings.recipes_for(backbone)[dataset], stage, dataset, **values)
