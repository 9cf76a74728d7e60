"""The helpers the notebooks call: data and backbone preparation, stage configs, training or
reusing a run, evaluation of the tables' rows, and the records written beside tables.

Each takes the `Settings` a notebook's first code cell resolves with `cir_lib.settings.setup`
(the profile switch) or the folders of its `ResultPaths`:

    settings = setup(profile, "01_stage1_finetune", stage1_epochs=stage1_epochs, ...)
    config = notebook.training_config(settings, "finetune", "cirr")

Example:
    >>> settings = setup("smoke", "01_stage1_finetune", recipe_overrides={"finetune.lr": 3e-4})
    >>> config = training_config(settings, "finetune", "cirr")
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence
from urllib.parse import quote

import pandas as pd
from IPython.display import Markdown

from cir_lib.constants import MINI_CHECKPOINT, STAGES
from cir_lib.datasets import get_dataset
from cir_lib.methods import FULL_METHOD, method_of, methods_for, stage2_methods
from cir_lib.errors import ConfigError, PipelineError
from cir_lib.profiles import Profile
from cir_lib.project import portable
from cir_lib.recipes import EvalConfig, PretrainConfig, resolve_pretrained
from cir_lib.run_configs import (  # noqa: F401 - the notebooks call them as notebook.<name>
    DRY_RUN_BATCH, DRY_RUN_QUERIES, DRY_RUN_STEPS, dry_run_caps, stage_config, training_config)
from cir_lib.settings import ResultPaths, Settings, relative_to_root
from cir_lib.tables import (
    ABLATIONS,
    ALL_ROWS,
    METHODS,
    dataset_table,
    read_cirr_test_results,
    seed_table,
)
from cir_lib import evaluate, mini, run_policy
from cir_lib import runs as run_files
from cir_lib.backbone import load_backbone
from cir_lib.devices import pick_device
from cir_lib.evaluate import split_ranks
from cir_lib.explore import combiner_lambdas as lambdas_of
from cir_lib.mini import generator_version
from cir_lib.pretrain import pretrain_mini
from cir_lib.rebuild import ZERO_SHOT, load_run, preprocess_for, run_config
from cir_lib.runs import atomic_write_text, environment_info, jsonable
from cir_lib.selection import selection_score
from cir_lib.submit import write_cirr_submission
from cir_lib.table_formats import write_seed_table

logger = logging.getLogger(__name__)


def ensure_mini(data_root: str | os.PathLike, preset: str, seed: int = 0) -> dict:
    """Generate the mini benchmark into `data_root` unless the same one is already there.

    A folder holding the same preset and seed made by the same generator version is reused (its
    MINI_BENCHMARK.json is written last, so it marks a complete generation); one made by another
    generator version is refused (`mini.check_generator_version` says how to regenerate it).

    Returns:
        The benchmark's manifest (preset, seed, counts).
    """
    root = Path(data_root)
    manifest_path = root / mini.MANIFEST_NAME
    if manifest_path.is_file():
        mini.check_generator_version(root)
        manifest = json.loads(manifest_path.read_text())
        if (manifest.get("preset"), manifest.get("seed")) == (preset, seed):
            logger.info("reusing the %s mini benchmark in %s", preset, root)
            return manifest
        raise PipelineError(
            f"{root} holds the {manifest.get('preset')!r} mini benchmark (seed {manifest.get('seed')}), not "
            f"{preset!r} (seed {seed}); pass another data root, or delete {root} to regenerate it")
    return mini.make_mini(root, preset=preset, seed=seed)


def ensure_mini_backbone(data_root: str | os.PathLike, epochs: Optional[int] = None) -> Path:
    """Pretrain `cir-mini` on the data root's mini pool unless `<data_root>/cir-mini.pt` exists.

    It stands in for OpenAI's pretraining: the recipes "mini" start from "{data_root}/cir-mini.pt".

    Args:
        data_root: a mini benchmark's data root (holding mini_pool/).
        epochs: pretraining epochs (None: pretrain-mini's default).

    Returns:
        The checkpoint path.
    """
    path = Path(data_root) / MINI_CHECKPOINT
    if path.is_file():
        logger.info("reusing the pretrained cir-mini %s", path)
        return path
    config = PretrainConfig() if epochs is None else PretrainConfig(epochs=epochs)
    return Path(pretrain_mini(data_root, out=path, config=config))


def train_or_reuse(stage: str, data_root: str | os.PathLike, config, run_dir: str | os.PathLike, *,
                   clip_run: Optional[str | os.PathLike] = None, fresh: bool = False, check_resume: bool = False,
                   composer: str = "combiner"):
    """Train a stage into `run_dir`, keeping earlier work: what notebooks 01 and 02 call.

    The policy is the library's, shared with `cir-lib finetune` / `train-combiner`
    (`cir_lib.run_policy`): no run there: train; a finished run of the same config and inputs: reused
    as it is (nothing trained); an unfinished one (interrupted): resumed from its last.pt; a run of
    another config: refused, naming the difference (`fresh=True` deletes it first and trains again).

    Args:
        stage: "finetune" or "combiner".
        data_root: the data root.
        config: the stage's config (`training_config`).
        run_dir: the run folder (`paths.run(dataset, stage, seed)`).
        clip_run: the stage-1 run folder a stage-2 composer trains on, or "zero-shot"
            (`cir_lib.rebuild.ZERO_SHOT`: the recipe's pretrained backbone).
        fresh: start over.
        check_resume: (dry runs) train a new run's first epoch, then resume it from last.pt for the
            rest, so that the resume path is exercised too.
        composer: stage 2: the trained composer ("combiner", "tirg", "artemis").

    Returns:
        The `RunResult` (for a reused run: read from its history, `reused` True, seconds 0).
    """
    return run_policy.train_or_reuse(stage, data_root, config, run_dir, clip_run=clip_run, fresh=fresh,
                                     check_resume=check_resume, composer=composer)


def eval_config(paths: ResultPaths, *, split: str = "val", skip_missing: bool = False,
                device: Optional[str] = None, max_queries: Optional[int] = None) -> EvalConfig:
    """The notebooks' `EvalConfig`: the profile's shared feature cache, CUDA when available
    (`max_queries`: a dry run's cap on every split)."""
    return EvalConfig(split=split, cache_dir=str(paths.cache), skip_missing=skip_missing, device=device or "auto",
                      max_queries=max_queries)


def evaluate_methods(data_root: str | os.PathLike, dataset: str, paths: ResultPaths,
                     config: Optional[EvalConfig] = None, *, methods: Sequence[str] = METHODS + ABLATIONS,
                     encoded: Optional[dict] = None, seed: int = 0, backbone: str = "") -> dict:
    """Evaluate the rows of the tables on a split, through `cir_lib.evaluate`.

    - "zero-shot sum": the stage-1 run's starting weights (its config's backbone and pretrained),
      element-wise sum;
    - "stage 1 sum": the stage-1 run's best checkpoint, element-wise sum;
    - "stage 1 + Combiner": the Combiner run's best checkpoint over its stage-1 encoders;
    - the composer rows ("zero-shot + Combiner", "stage 1 + TIRG", "zero-shot + ARTEMIS", ...): each
      its own stage-2 run's best checkpoint over the encoders it was trained on
      (`paths.method_run`: runs/<dataset>-combiner-zeroshot, -tirg, ...);
    - the ablations "zero-shot image only" / "text only" and "stage 1 image only" / "text only":
      the query is the reference image's feature alone, or the caption's feature alone, with the
      zero-shot or the stage-1 encoders (with a text-only stage 1, "stage 1 image only" equals
      "zero-shot image only": the image encoder did not change).

    Args:
        data_root: the data root the runs were trained on.
        dataset: "fashioniq" or "cirr".
        paths: the profile's `ResultPaths` (runs/<dataset>-finetune and -combiner, cache/).
        config: an `EvalConfig` (default: `eval_config(paths)`, the val split).
        methods: which rows (default: the main rows and the ablations; `methods_for(composers)`
            adds the composer rows of the trained composers).
        encoded: a dict that receives {method: {group: EncodedSplit}}: the features, queries and
            lambdas behind the numbers (for the lambda figure, the explorer and the intervals).
        seed: the training seed whose runs are evaluated (`paths.run(dataset, stage, seed, backbone)`).
        backbone: one of the profile's backbones ("" when it has one series).

    Returns:
        {method: metrics dict as `evaluate_fashioniq` / `evaluate_cirr` return it}.
    """
    config = config or eval_config(paths)
    device = str(pick_device(config.device))
    config = dataclasses.replace(config, device=device)
    backbone_name = backbone
    stage1 = paths.run(dataset, "finetune", seed, backbone_name)
    out = {}
    known = ALL_ROWS
    for label in methods:
        method = method_of(label)  # a Method, or a label of one (ConfigError names the known ones)
        if method.label not in known:
            raise ConfigError(f"unknown method {method.label!r}; choose from {', '.join(known)}")
        spec = method.spec
        if spec.trained:  # the composer's own stage-2 run holds it, over the encoders it was trained on
            backbone, composer, run_cfg = load_run(paths.method_run(dataset, method, seed, backbone_name),
                                                   device=device)
        elif method.encoders == "zero-shot":
            run_cfg = run_config(stage1)  # the stage-1 run's starting weights: its config is enough
            backbone = load_backbone(run_cfg.backbone, resolve_pretrained(run_cfg.pretrained, data_root),
                                     device=device)
            composer = spec.build(backbone.embed_dim)
        else:  # the stage-1 encoders with an untrained composer
            backbone, _, run_cfg = load_run(stage1, device=device)
            composer = spec.build(backbone.embed_dim)
        method = method.label
        preprocess = preprocess_for(run_cfg, backbone)
        logger.debug("evaluating %s on %s %s", method, dataset, config.split)
        groups = {} if encoded is not None else None
        out[method] = evaluate.evaluate_dataset(dataset, data_root, backbone, composer, config, preprocess=preprocess,
                                                encoded=groups)
        logger.info("%s %s, %s: %s", dataset, config.split, method, _metrics_line(dataset, out[method]))
        if encoded is not None:
            encoded[method] = groups
    return out


def _metrics_line(dataset: str, metrics: Mapping[str, Any]) -> str:
    """The one log line of an evaluated row (the per-category lines are DEBUG: verbose logging)."""
    ds = get_dataset(dataset)
    flat = metrics.get("average", {}) if ds.categories else metrics
    keys = tuple(f"recall@{k}" for k in ds.ks) + tuple(f"recall_subset@{k}" for k in ds.subset_ks[:1])
    shown = ", ".join(f"{k} {float(flat[k]):.2f}" for k in keys if k in flat)
    return (f"average {shown}" if ds.categories and shown else shown) or "no metrics"


def ranks_of(encoded: Mapping[str, Mapping[str, Any]], dataset: str) -> dict:
    """Per-query target ranks of each evaluated row, in the form `tables.fashioniq_table` /
    `cirr_table` bootstrap their intervals from.

    Args:
        encoded: {method: {group: EncodedSplit}}, as `evaluate_methods(..., encoded=...)` fills it.
        dataset: "fashioniq" or "cirr".

    Returns:
        FashionIQ {method: {category: ranks}}; CIRR {method: {"ranks": .., "subset_ranks": ..}}.
    """
    ds = get_dataset(dataset)
    if ds.categories:
        return {m: {g: split_ranks(e)["ranks"] for g, e in groups.items()} for m, groups in encoded.items()}
    return {m: split_ranks(groups[ds.name]) for m, groups in encoded.items()}


def backbone_label(settings: "Settings", dataset: str, backbone: str) -> str:
    """The name a series' rows carry in the tables: the backbone ("RN50"), or for a one-series
    profile the stage-1 run's backbone ("cir-mini")."""
    return backbone or run_config(settings.paths.run(dataset, "finetune", settings.seeds[0])).backbone


def evaluate_series(settings: "Settings", config: EvalConfig, seed: Optional[int] = None) -> tuple[dict, dict]:
    """Evaluate every row of every backbone's runs (one seed): what notebook 03 tabulates.

    Returns:
        (rows, encoded): rows {dataset: {backbone: {method: metrics}}}; encoded the same with
        {group: EncodedSplit} per method (features, queries, lambdas, for ranks and figures).
    """
    seed = settings.seeds[0] if seed is None else seed
    rows: dict = {}
    encoded: dict = {}
    for dataset in settings.datasets:
        rows[dataset], encoded[dataset] = {}, {}
        for bb in settings.backbones:
            label = backbone_label(settings, dataset, bb)
            encoded[dataset][label] = {}
            rows[dataset][label] = evaluate_methods(settings.data_root, dataset, settings.paths, config,
                                                    methods=[m.label for m in methods_for(settings.composers)],
                                                    encoded=encoded[dataset][label], seed=seed, backbone=bb)
    return rows, encoded


def build_tables(settings: "Settings", rows: Mapping[str, Any], encoded: Mapping[str, Any]) -> dict:
    """{dataset: table} in the poster's layout: cited and published rows, then this run's rows per
    backbone with bootstrap intervals (and CIRR test1 rows from `settings.cirr_test_results`)."""
    test_results = read_cirr_test_results(settings.cirr_test_results) if settings.cirr_test_results else None
    tables = {}
    for dataset in settings.datasets:
        ranks = {label: ranks_of(enc, dataset) for label, enc in encoded[dataset].items()}
        tables[dataset] = dataset_table(dataset, rows[dataset], ranks=ranks, context=("cited", "published"),
                                        test_results=test_results if get_dataset(dataset).test_server else None)
    return tables


def combiner_lambdas(settings: "Settings", encoded: Mapping[str, Any]) -> dict:
    """{dataset (and backbone, when several): the Combiner's lambda on every val query}."""
    out = {}
    for dataset in settings.datasets:
        for label, enc in encoded[dataset].items():
            out[dataset if len(encoded[dataset]) == 1 else f"{dataset} {label}"] = lambdas_of(enc[FULL_METHOD.label])
    return out


def write_submissions(settings: "Settings", config: EvalConfig) -> list:
    """The CIRR test1 files of each backbone's stage-1 sum and of every trained composer's run (the
    Combiner, and those of `settings.composers` over both encoders) under `<results>/submissions/`,
    validated; what an author uploads to the CIRR server.

    Returns:
        The written paths (empty without CIRR).
    """
    served = [d for d in settings.datasets if get_dataset(d).test_server]  # CIRR: its writer below
    if not served:
        return []
    out_dir = settings.paths.root / "submissions"
    written = []
    test_config = dataclasses.replace(config, split="test1", skip_missing=False)
    for dataset, bb in ((d, bb) for d in served for bb in settings.backbones):
        label = backbone_label(settings, dataset, bb)
        runs = [(settings.paths.run(dataset, "finetune", settings.seeds[0], bb), "stage1-sum")]
        runs += [(run_dir, m.run_stage) for m, run_dir, _ in stage2_runs(settings, dataset, settings.seeds[0], bb)]
        for run, name in runs:
            backbone, composer, run_cfg = load_run(run, device=str(pick_device(config.device)))
            written += write_cirr_submission(settings.data_root, backbone, composer, out_dir, test_config,
                                             preprocess=preprocess_for(run_cfg, backbone),
                                             tag=f"{label.lower()}-{name}")
    return written


def table_title(settings: Settings, dataset: str) -> str:
    """A table's title: "FashionIQ val: Recall@K (profile mini)"."""
    ds = get_dataset(dataset)
    return f"{ds.title} val: {ds.metrics_title} (profile {settings.profile})"


def write_seed_tables(settings: Settings, config: EvalConfig, tables: Mapping[str, Any]) -> dict:
    """With several training seeds: evaluate every row of every other seed's runs (the main rows, the
    composer rows of `settings.composers`, the ablations) and write `tables/<dataset>_seeds.{csv,md}`
    (each seed's numbers, then mean ± std across seeds) with `<dataset>_seeds.meta.json` beside them
    (every run's config and environment, the generator version of a mini data root).

    Args:
        settings: the notebook's settings (its `seeds`).
        config: the `EvalConfig` of the main tables.
        tables: {dataset: the first seed's table} (as notebook 03 built them).

    Returns:
        {dataset: {"csv": path, "md": path}}; empty with a single seed.
    """
    if len(settings.seeds) < 2:
        return {}
    files = {}
    for dataset in settings.datasets:
        per_seed = {settings.seeds[0]: tables[dataset]}
        for seed in settings.seeds[1:]:
            rows = {backbone_label(settings, dataset, bb): evaluate_methods(
                settings.data_root, dataset, settings.paths, config, methods=methods_for(settings.composers),
                seed=seed, backbone=bb)
                for bb in settings.backbones}
            per_seed[seed] = dataset_table(dataset, rows, context=())
        name = f"{get_dataset(dataset).title} val"
        meta = table_meta(settings.paths, dataset, profile=settings.profile, data_root=settings.data_root)
        files[dataset] = write_seed_table(seed_table(per_seed), settings.paths.tables, dataset,
                                          title=f"{name} across training seeds {list(settings.seeds)} "
                                                f"(profile {settings.profile})",
                                          meta={**meta, "seeds": list(settings.seeds)})
    return files


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write `obj` as indented JSON (folders created; paths and numpy numbers converted)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(jsonable(obj), indent=2) + "\n")
    return path


def run_summary(results: Mapping[str, Any]) -> "Any":
    """A DataFrame of training results: dataset, run folder, best epoch, best score, epochs, and
    "training": this call's seconds ("52.1 s"), or "reused" for a finished run read back as it was.

    Args:
        results: {dataset: RunResult} as returned by `finetune` / `train_combiner` / `train_or_reuse`.
    """
    return pd.DataFrame([{"dataset": d, "run": relative_to_root(r.run_dir), "best_epoch": r.best_epoch,
                          "best_score": round(float(r.best_score), 2), "epochs": len(r.history),
                          "training": "reused" if getattr(r, "reused", False) else f"{float(r.seconds):.1f} s"}
                         for d, r in results.items()])


def run_dirs(settings: "Settings") -> dict:
    """{"stage 1": {label: run folder}, "Combiner": {...}, then one entry per other trained
    composer's method ("zero-shot + Combiner", "stage 1 + TIRG", ...)} of the first seed's runs, one
    label per dataset (and backbone, when the profile trains several), for
    `figures.plot_training_curves`."""
    out: dict = {"stage 1": {}, "Combiner": {}}
    for bb in settings.backbones:
        for d in settings.datasets:
            label = d if len(settings.backbones) == 1 else f"{d} {bb}"
            out["stage 1"][label] = settings.paths.run(d, "finetune", settings.seeds[0], bb)
            for method, run_dir, _ in stage2_runs(settings, d, settings.seeds[0], bb):
                panel = "Combiner" if method == FULL_METHOD else method.label
                out.setdefault(panel, {})[label] = run_dir
    return out


def explorer_runs(settings: "Settings", dataset: str) -> tuple:
    """(the Combiner run, {label: run} of the other trained composers over the same stage-1
    encoders) of the first backbone and seed, for `explore.Explorer(..., others=...)` (notebook 04)."""
    seed, backbone = settings.seeds[0], settings.backbones[0]
    others = {m.label: run for m, run, _ in stage2_runs(settings, dataset, seed, backbone)
              if m.encoders == FULL_METHOD.encoders and m != FULL_METHOD}
    return settings.paths.method_run(dataset, FULL_METHOD, seed, backbone), others


def stage2_runs(settings: "Settings", dataset: str, seed: int = 0, backbone: str = "") -> list:
    """What notebook 02 trains for one dataset, seed and backbone: [(method, run folder, clip run)]
    for the stage-1 Combiner, then every trained composer of `settings.composers` over the zero-shot
    and the stage-1 encoders (`cir_lib.methods.stage2_methods`). The clip run is the stage-1 run
    folder, or "zero-shot" (the recipe's pretrained backbone, as the zero-shot sum row loads it).

    Example:
        >>> [(m.label, p.name) for m, p, _ in stage2_runs(setup("smoke"), "cirr")][:2]
        [('stage 1 + Combiner', 'cirr-combiner'), ('zero-shot + Combiner', 'cirr-combiner-zeroshot')]
    """
    stage1 = settings.paths.run(dataset, "finetune", seed, backbone)
    return [(m, settings.paths.method_run(dataset, m, seed, backbone), stage1 if m.encoders == "finetune" else ZERO_SHOT)
            for m in stage2_methods(settings.composers)]


def table_notes(settings: "Settings | Profile", dataset: str, split: str = "val",
                rows: Optional[Mapping[str, Any]] = None) -> list[str]:
    """What the rows of a table are, whether the paper's rows are comparable, and what was skipped.

    Args:
        settings: the notebook's `Settings` (or a `profiles.Profile`).
        dataset: "fashioniq" or "cirr".
        split: the evaluated split.
        rows: the evaluation dicts ({method: metrics} or {backbone: {method: metrics}}); their
            "skipped" reports are summarised.
    """
    profile = settings if isinstance(settings, Profile) else settings.profile_spec
    notes = []
    if isinstance(settings, Settings) and settings.dry_run:
        notes.append(f"DRY RUN: {DRY_RUN_STEPS} training steps per epoch and {DRY_RUN_QUERIES} queries per split; "
                     "these numbers check the path, they are not results")
    notes.append(f"this run: profile {profile.name}, {dataset} {split} split")
    if profile.mini_preset is not None:
        notes.append("the mini benchmark is synthetic, not the paper's data: the paper's rows and the "
                     "differences to them are context, not a comparison")
    ds = get_dataset(dataset)
    if ds.test_server and split != ds.test_split:
        notes.append(f"this run's {ds.title} rows are on val unless marked {ds.test_split}; the paper's are on "
                     f"{ds.test_split} (evaluation server)")
    nested = rows or {}
    if nested and not all(m in ALL_ROWS for m in nested):
        nested = {f"{m} [{bb}]": v for bb, per in nested.items() for m, v in per.items()}
    for method, metrics in nested.items():
        skipped = metrics.get("skipped") if isinstance(metrics, Mapping) else None
        if skipped and (skipped.get("queries") or skipped.get("images")):
            notes.append(f"{method}: {skipped.get('queries', 0)} queries and {skipped.get('images', 0)} index "
                         "images skipped for missing or unreadable files (not the full protocol)")
    return notes


def table_meta(paths: ResultPaths, dataset: str, *, profile: str, data_root: str | os.PathLike,
               split: str = "val") -> dict:
    """The record written beside a table: each run's config and environment (its config.json) and
    the environment that evaluated them."""
    records = {}
    # every run folder of the dataset, stage 1 first: <dataset>-finetune[-...], then each stage-2 run
    # (<dataset>-combiner, -combiner-zeroshot, -tirg, ...)
    stage1 = f"{dataset}-{STAGES[0]}"
    for folder in sorted(paths.runs.glob(f"{dataset}-*"), key=lambda f: (not f.name.startswith(stage1), f.name)):
        if not (folder / "config.json").is_file():
            continue
        info = run_files.read_run_config(folder)
        # the run's own environment (the commit and machine that trained it) beside its config
        records[folder.name] = {"path": relative_to_root(folder), **info.get("config", {}),
                                **{k: info[k] for k in ("clip", "composer", "skipped", "environment") if k in info}}
    device = next((r.get("device") for r in records.values() if r.get("device") not in (None, "auto")), None)
    return portable({"profile": profile, "dataset": dataset, "split": split, "data_root": relative_to_root(data_root),
                     "generator_version": generator_version(data_root),  # None: real data
                     "runs": records, "environment": environment_info(device)})


def ordering(rows: Mapping[str, Mapping[str, Any]], dataset: str) -> dict:
    """Each method's selection score (FashionIQ: mean of average R@10 and R@50; CIRR: mean of the
    seven recalls) and whether zero-shot sum < stage 1 sum < stage 1 + Combiner holds."""
    table = dataset_table(dataset, rows, context=())
    scores = {r["method"]: float(selection_score(dataset, r)) for r in table.to_dict("records")}
    values = [scores[m] for m in METHODS if m in scores]
    return {"scores": scores, "ascending": all(a < b for a, b in zip(values, values[1:]))}



def ordering_line(settings: "Settings", rows: Mapping[str, Mapping[str, Any]], dataset: str) -> str:
    """One line for notebook 03: each row's selection score and whether they ascend.

    Profiles too small to show the ordering (smoke: `Profile.shows_ordering` False) say so instead of
    judging it.
    """
    check = ordering(rows, dataset)
    scores = ", ".join(f"{m} {s:.2f}" for m, s in check["scores"].items())
    if not settings.profile_spec.shows_ordering:
        return (f"{dataset}: {scores} -> profile {settings.profile} is too small to show the ordering "
                "(it checks that the series runs); the mini and paper profiles show it")
    return f"{dataset}: {scores} -> {'ascending' if check['ascending'] else 'NOT ascending'}"


def show_files(paths: Sequence[str | os.PathLike], title: str = "written"):
    """A Markdown list of links to files, named relative to the project root, that open in JupyterLab.

    The link text is the root-relative path; the target is relative to the kernel's working folder
    (the notebook's folder), which is how JupyterLab resolves a link in an output.

    Args:
        paths: the files.
        title: the list's heading.

    Returns:
        An `IPython.display.Markdown` to display.
    """
    items = []
    for p in paths:
        href = os.path.relpath(Path(p).resolve(), Path.cwd().resolve()).replace(os.sep, "/")
        items.append(f"- [{relative_to_root(p)}]({quote(href)})")
    return Markdown(f"**{title}:**\n\n" + "\n".join(items))
