"""One configuration path: any recipe field by its dotted name (`combiner.lr`), from a notebook knob
(`recipe_overrides`), from `cir-lib reproduce --set` and from the stage commands' `--set`, resolved
and checked once, reaching the optimizer; the profile carried as the resolved object."""

from __future__ import annotations

import pytest

from cir_lib import notebook, recipes, tables
from cir_lib import reproduce as runner
from cir_lib.cli import main
from cir_lib.errors import ConfigError
from cir_lib.profiles import PROFILES
from cir_lib.recipes import parse_overrides, split_overrides, stage_overrides
from cir_lib.settings import KNOBS, resolve, setup


def test_dotted_overrides_are_split_by_stage_and_parsed_by_the_fields_type():
    parsed = split_overrides(parse_overrides(["combiner.lr=2e-4", "finetune.batch_size=64",
                                              "combiner.proj_dim=none", "finetune.betas=0.8,0.99"]))
    assert parsed == {"combiner": {"lr": 2e-4, "proj_dim": None}, "finetune": {"batch_size": 64, "betas": (0.8, 0.99)}}
    assert isinstance(parsed["combiner"]["lr"], float) and isinstance(parsed["finetune"]["batch_size"], int)
    assert split_overrides(None) == {} and split_overrides({}) == {}


@pytest.mark.parametrize("overrides, words", [
    ({"lr": 1e-4}, ["unknown recipe setting 'lr'", "did you mean 'finetune.lr' or 'combiner.lr'"]),
    ({"combinr.lr": 1e-4}, ["unknown recipe setting 'combinr.lr'", "did you mean 'combiner.lr'"]),
    ({"combiner.lrr": 1e-4}, ["no field 'combiner.lrr'", "did you mean 'combiner.lr'", "fields: "]),
    ({"finetune.encoders": 3}, ["bad value 3 for 'finetune.encoders'"]),
    ({"combiner.epochs": "many"}, ["bad value 'many' for 'combiner.epochs'"]),
    ({"pretrain.lr": 1e-4}, ["unknown recipe setting 'pretrain.lr'", "finetune, combiner"]),
])
def test_unknown_names_and_bad_values_are_refused_naming_the_valid_ones(overrides, words):
    with pytest.raises(ConfigError) as err:
        split_overrides(overrides)
    for word in words:
        assert word in str(err.value)


def test_a_stage_command_takes_plain_and_its_own_dotted_names_only():
    assert stage_overrides({"lr": "1e-5", "finetune.epochs": "3"}, "finetune") == {"lr": "1e-5", "epochs": "3"}
    with pytest.raises(ConfigError, match="'combiner.lr' is a setting of the combiner stage"):
        stage_overrides({"combiner.lr": "1e-5"}, "finetune")
    with pytest.raises(ConfigError, match="set twice"):
        stage_overrides({"lr": "1e-5", "combiner.lr": "2e-5"}, "combiner")
    with pytest.raises(ConfigError, match="unknown stage 'combinr'.*did you mean 'combiner.lr'"):
        stage_overrides({"combinr.lr": "1e-5"}, "combiner")


def test_the_notebook_knob_reaches_each_runs_config_and_only_its_stage():
    plain = setup("smoke", None)
    settings = setup("smoke", None, recipe_overrides={"combiner.lr": "2e-4", "finetune.batch_size": 8})
    assert settings.recipe_overrides == {"combiner": {"lr": 2e-4}, "finetune": {"batch_size": 8}}
    combiner = notebook.training_config(settings, "combiner", "cirr")
    assert combiner.lr == 2e-4 != notebook.training_config(plain, "combiner", "cirr").lr
    assert combiner.batch_size == notebook.training_config(plain, "combiner", "cirr").batch_size
    assert notebook.training_config(settings, "finetune", "fashioniq").batch_size == 8
    assert notebook.training_config(settings, "finetune", "cirr").lr == notebook.training_config(plain, "finetune", "cirr").lr
    # the override beats the profile's value, and the knobs the series sets are not overridden twice
    assert notebook.training_config(setup("smoke", None, recipe_overrides={"finetune.epochs": 5}), "finetune",
                                    "cirr").epochs == 5 != plain.stage1_epochs
    with pytest.raises(ConfigError, match="contradicts the stage1_epochs knob"):
        setup("smoke", None, stage1_epochs=3, recipe_overrides={"finetune.epochs": 5})
    with pytest.raises(ConfigError, match="seeds knob"):
        setup("smoke", None, recipe_overrides={"combiner.seed": 1})
    with pytest.raises(ConfigError, match="did you mean 'combiner.lr'"):
        setup("smoke", None, recipe_overrides={"combiner.lrr": 1})
    assert "recipe_overrides" in KNOBS


def test_the_profile_is_carried_as_the_resolved_object():
    settings = resolve("smoke")
    assert settings.profile_spec is PROFILES["smoke"] and "profile_spec" not in repr(settings)
    assert resolve(PROFILES["mini"]).profile_spec is PROFILES["mini"]  # a resolved profile is taken as it is
    rows = {m: dict.fromkeys(tables.CIRR_COLUMNS, v)
            for m, v in (("zero-shot sum", 1.0), ("stage 1 sum", 2.0), ("stage 1 + Combiner", 3.0))}
    assert "too small" in notebook.ordering_line(settings, rows, "cirr")
    assert any("synthetic" in n for n in notebook.table_notes(settings, "cirr"))


def _injected(monkeypatch, tmp_path, parameters):
    calls = {}
    monkeypatch.setattr(runner, "run_notebook", lambda name, output, parameters, **kw: calls.setdefault(name, dict(parameters)) and 0.0)
    monkeypatch.setattr(runner, "_write_summary", lambda summary: None)
    runner.reproduce("smoke", results_dir=tmp_path, parameters=parameters, progress=False, log_output=False)
    return calls


def test_reproduce_set_combiner_lr_reaches_the_combiners_optimizer(monkeypatch, tmp_path, smoke_root):
    import cir_lib.train_combiner

    calls = _injected(monkeypatch, tmp_path, parse_overrides(["combiner.lr=2e-4"], json_values=True))
    injected = calls["02_combiner_training"]
    assert injected["recipe_overrides"] == {"combiner.lr": 2e-4}
    assert "recipe_overrides" not in calls["03_evaluation"]  # only where a notebook declares it
    settings = setup(**{k: v for k, v in injected.items() if k in KNOBS or k == "profile"})  # as 02's cell does
    config = notebook.training_config(settings, "combiner", "cirr")

    class Reached(Exception):
        pass

    def optimizer(cls, params, **kw):  # the Combiner's optimizer is built with the config's lr
        raise Reached(kw["lr"])

    monkeypatch.setattr(cir_lib.train_combiner, "make_optimizer", optimizer)
    with pytest.raises(Reached) as reached:
        cir_lib.train_combiner.train_combiner(smoke_root, recipes.apply_overrides(config, {"cache_dir": None, "pretrained": "none"}),
                                              "zero-shot", tmp_path / "run")
    assert reached.value.args == (2e-4,)


@pytest.mark.parametrize("parameters, words", [
    ({"lr": 2e-4}, ["unknown notebook parameter(s) ['lr']", "did you mean 'finetune.lr' or 'combiner.lr'"]),
    ({"combiner.lrr": 2e-4}, ["did you mean 'combiner.lr'"]),
    ({"combiner.lr": -1.0}, ["lr must be > 0"]),
    ({"finetune.batch_size": 1}, ["batch_size must be >= 2"]),
    ({"combiner.lr": 1e-3, "recipe_overrides": {"combiner.lr": 2e-4}}, ["set each once"]),
])
def test_reproduce_refuses_a_bad_recipe_setting_before_any_notebook_runs(monkeypatch, tmp_path, parameters, words):
    ran = []
    monkeypatch.setattr(runner, "run_notebook", lambda name, *a, **kw: ran.append(name) or 0.0)
    with pytest.raises(ConfigError) as err:
        runner.reproduce("smoke", results_dir=tmp_path, parameters=parameters, progress=False, log_output=False)
    assert not ran and not (tmp_path / "smoke").exists()
    for word in words:
        assert word in str(err.value)


def test_check_config_runs_once_per_resolution(monkeypatch, tmp_path, smoke_root):
    import cir_lib.run_policy

    checked = []
    original = recipes.check_config
    monkeypatch.setattr(recipes, "check_config", lambda config: checked.append(type(config).__name__) or original(config))
    notebook.training_config(setup("smoke", None, recipe_overrides={"combiner.lr": 2e-4}), "combiner", "cirr")
    assert checked == ["CombinerTrainConfig"]

    checked.clear()
    seen = []

    def no_training(stage, data_root, config, run_dir, **kw):
        seen.append(config)
        raise ConfigError("stopped before training")

    monkeypatch.setattr(cir_lib.run_policy, "train_or_reuse", no_training)
    code = main(["finetune", "--data-root", str(smoke_root), "--recipe", "smoke", "--dataset", "cirr",
                 "--out", str(tmp_path / "r"), "--set", "finetune.lr=3e-4", "--set", "epochs=1"])
    assert code == 1 and checked == ["FinetuneConfig"] and (seen[0].lr, seen[0].epochs) == (3e-4, 1)
