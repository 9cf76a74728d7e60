"""Named recipes: registry, overrides from notebooks and from `--set`, and their checks."""

from __future__ import annotations

import dataclasses

import pytest

from cir_lib.errors import ConfigError
from cir_lib.recipes import (
    RECIPES,
    CombinerTrainConfig,
    FinetuneConfig,
    combiner_dims,
    config_from_dict,
    get_recipe,
    list_recipes,
    parse_overrides,
    resolve_pretrained,
)

PAPER = ["paper-rn50-fashioniq", "paper-rn50-cirr", "paper-rn50x4-fashioniq", "paper-rn50x4-cirr"]
JOURNAL = ["journal-rn50x4-fashioniq", "journal-rn50x4-cirr"]


def test_registry_holds_the_paper_journal_mini_and_smoke_recipes():
    assert set(PAPER + JOURNAL + ["mini", "smoke"]) <= set(RECIPES)
    assert set(list_recipes()) == set(RECIPES)


@pytest.mark.parametrize("name", PAPER)
def test_workshop_recipes_follow_the_documented_settings(name):
    s1 = get_recipe(name)
    assert isinstance(s1, FinetuneConfig)
    assert s1.encoders == "text"
    assert (s1.lr, tuple(s1.betas), s1.eps) == (2e-6, (0.9, 0.999), 1e-7)
    # text-only: the training script's argparse defaults (the larger batch of CLIP4Cir issue #5)
    assert s1.batch_size == 512 and s1.epochs == 300
    assert s1.amp == "fp16" and s1.selection == "arithmetic"
    assert s1.pretrained == "openai"
    assert s1.backbone == ("RN50x4" if "rn50x4" in name else "RN50")
    assert s1.dataset == name.rsplit("-", 1)[1]
    assert (s1.preprocess, s1.preprocess_ratio) == ("targetpad", 1.25)
    s2 = get_recipe(name, stage="combiner")
    assert isinstance(s2, CombinerTrainConfig)
    assert (s2.lr, s2.batch_size, s2.epochs) == (2e-5, 4096, 300)
    assert s2.dropout == 0.5 and s2.backbone == s1.backbone
    # the original code's Combiner is 640*4 / 640*8 for every backbone, RN50 (d = 1024) included
    dim = 640 if s1.backbone == "RN50x4" else 1024
    assert combiner_dims(s2, dim) == (2560, 5120)


@pytest.mark.parametrize("name", JOURNAL)
def test_journal_recipes_train_both_encoders(name):
    cfg = get_recipe(name, grad_checkpointing=True)
    assert cfg.encoders == "both" and cfg.backbone == "RN50x4"
    assert cfg.batch_size == 128 and cfg.epochs == 100  # the README's command
    assert cfg.amp == "fp16" and cfg.grad_checkpointing is True
    assert combiner_dims(get_recipe(name, stage="combiner"), 640) == (2560, 5120)


def test_paper_amp_can_be_switched_to_bf16_and_bad_values_are_refused():
    assert get_recipe("paper-rn50-cirr", **parse_overrides(["amp=bf16"])).amp == "bf16"
    with pytest.raises(ConfigError, match="amp"):
        get_recipe("paper-rn50-cirr", amp="fp8")


def test_combiner_dims_explicit_or_by_multiplier():
    mini = get_recipe("mini", stage="combiner")
    assert (mini.proj_dim, mini.hidden_dim) == (None, None)
    assert combiner_dims(mini, 128) == (2 * 128, 4 * 128)  # the mini recipe keeps its multipliers
    assert combiner_dims(get_recipe("mini", stage="combiner", proj_dim="96"), 128) == (96, 512)
    assert combiner_dims(get_recipe("paper-rn50-cirr", stage="combiner", proj_dim="none",
                                    hidden_dim="none"), 1024) == (4096, 8192)
    with pytest.raises(ConfigError, match="proj_dim"):
        get_recipe("mini", stage="combiner", proj_dim=0)


@pytest.mark.parametrize("stage", ["finetune", "combiner"])
def test_selection_is_a_checked_recipe_field(stage):
    assert get_recipe("paper-rn50x4-cirr", stage=stage, selection="harmonic").selection == "harmonic"
    with pytest.raises(ConfigError, match="arithmetic"):
        get_recipe("paper-rn50x4-cirr", stage=stage, selection="median")


def test_every_paper_value_carries_its_provenance():
    """Each setting of the paper recipes names where it comes from (a trailing comment)."""
    import inspect

    import cir_lib.recipes as recipes

    source = inspect.getsource(recipes._paper)
    body = source[source.index("finetune=FinetuneConfig("):]
    lines = [ln for ln in body.splitlines() if "=" in ln and not ln.strip().startswith(("#", ")"))]
    sources = ("paper", "README command", "argparse default", "official code", "issue #5")
    unexplained = [ln for ln in lines if "#" not in ln and not ln.strip().startswith(("dataset=", "finetune=",
                                                                                     "combiner="))]
    assert not unexplained, unexplained
    assert all(any(src in ln.split("#", 1)[1] for src in sources) for ln in lines if "#" in ln)


def test_mini_recipe_uses_the_pretrained_mini_checkpoint():
    cfg = get_recipe("mini", dataset="cirr")
    assert cfg.backbone == "cir-mini"
    assert resolve_pretrained(cfg.pretrained, "/data/mini") == "/data/mini/cir-mini.pt"
    assert get_recipe("mini", stage="combiner").backbone == "cir-mini"


def test_overrides_from_the_cli_are_parsed_by_field_type():
    raw = parse_overrides(["lr=1e-5", "epochs=3", "grad_checkpointing=true", "betas=0.8,0.99",
                           "cache_dir=none", "encoders=both", "dataset=cirr"])
    cfg = get_recipe("paper-rn50-cirr", **raw)
    assert cfg.lr == 1e-5 and isinstance(cfg.lr, float)
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.grad_checkpointing is True
    assert cfg.betas == (0.8, 0.99)
    assert cfg.cache_dir is None
    assert cfg.encoders == "both"


def test_overrides_from_a_notebook_take_python_values_and_leave_the_registry_alone():
    before = dataclasses.asdict(RECIPES["mini"].finetune)
    cfg = get_recipe("mini", epochs=1, lr=3e-4, seed=7)
    assert (cfg.epochs, cfg.lr, cfg.seed) == (1, 3e-4, 7)
    assert dataclasses.asdict(RECIPES["mini"].finetune) == before


@pytest.mark.parametrize("kwargs, words", [
    ({"learning_rate": 1.0}, "no field 'learning_rate'"),
    ({"epochs": "three"}, "bad value 'three' for 'epochs'"),
    ({"epochs": 2.5}, "bad value"),
    ({"grad_checkpointing": "maybe"}, "bad value"),
    ({"encoders": "audio"}, "encoders must be one of"),
    ({"dataset": "coco"}, "dataset must be one of"),
    ({"batch_size": 1}, "batch_size must be >= 2"),
    ({"amp": "fp8"}, "amp must be one of"),
    ({"preprocess": "crop"}, "preprocess must be one of"),
])
def test_bad_overrides_raise_config_errors_naming_the_field(kwargs, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        get_recipe("mini", **kwargs)


def test_unknown_recipe_and_stage_and_malformed_set():
    with pytest.raises(ConfigError, match="unknown recipe 'paper-rn101'.*mini"):
        get_recipe("paper-rn101")
    with pytest.raises(ConfigError, match="unknown stage"):
        get_recipe("mini", stage="stage3")
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["epochs"])


def test_config_round_trips_through_a_dict():
    cfg = get_recipe("journal-rn50x4-cirr", lr=1e-6)
    again = config_from_dict(FinetuneConfig, dataclasses.asdict(cfg))
    assert again == cfg
    with pytest.raises(ConfigError, match="no fields"):
        config_from_dict(FinetuneConfig, {**dataclasses.asdict(cfg), "bogus": 1})
