"""The one switch of the notebook series: a notebook's parameters resolved against its profile.

A notebook's `parameters` cell holds `profile` and only the knobs that notebook uses, each `None`
("the profile's value"); its first code cell resolves them:

    settings = setup(profile, "01_stage1_finetune", stage1_epochs=stage1_epochs, ...)

`settings` (a `Settings`) holds the resolved values and the result folders (`ResultPaths`); `setup`
also routes the kit's log lines to the notebook and checks that the notebooks it depends on have
run, naming the one to run first (`require_earlier`). What a notebook prints is relative to the
project root (the JupyterLab server root of `make lab`): `settings.rel(path)`, `rel_text(obj)`.

Everything a profile's run writes goes under `<results>/<profile>/`: tables in `tables/`, figures in
`figures/`, training runs in `runs/`, metrics in `metrics/` (results/README.md lists which notebook
writes which file). The helpers the notebooks call with these settings are in `cir_lib.notebook`.

Example:
    >>> settings = setup("smoke", "01_stage1_finetune")
    >>> settings.recipes, settings.rel(settings.paths.runs)
    ({'fashioniq': 'smoke', 'cirr': 'smoke'}, 'results/smoke/runs')
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from cir_lib.constants import COMPOSERS, MINI_CHECKPOINT, STAGES
from cir_lib.errors import ConfigError, PipelineError
from cir_lib.profiles import Profile, get_profile, resolve_data_root
from cir_lib.project import chosen_profile, find_project_root, project_root, relative_to_project
from cir_lib.datasets import get_dataset
from cir_lib.recipes import split_overrides

logger = logging.getLogger(__name__)


KNOBS = ("data_root", "results_dir", "datasets", "recipes", "pretrain_epochs", "pretrained", "stage1_epochs",
         "combiner_epochs", "skip_missing", "n_examples", "top_k", "interactive", "seeds",
         "fresh", "backbones", "cirr_test_results", "dry_run", "recipe_overrides", "composers")  # what setup() resolves

# Recipe fields a notebook knob already sets, per stage: a dotted override of one is refused (set the
# knob), as is one of the fields the series sets itself for every run (`seeds`, `datasets`).
KNOB_FIELDS = {"finetune": {"epochs": "stage1_epochs", "pretrained": "pretrained", "skip_missing": "skip_missing"},
               "combiner": {"epochs": "combiner_epochs", "pretrained": "pretrained", "skip_missing": "skip_missing"}}
SERIES_FIELDS = {"seed": "seeds", "dataset": "datasets"}

# What a notebook reads that an earlier one wrote: "data" (00), or a stage's run folder (01, 02).
NEEDS = {
    "00_data_prep": (),
    "01_stage1_finetune": ("data",),
    "02_combiner_training": ("data", "finetune"),
    "03_evaluation": ("data", "finetune", "combiner"),
    "04_qualitative": ("data", "finetune", "combiner"),
}
_WRITER = {"data": "00_data_prep", "finetune": "01_stage1_finetune", "combiner": "02_combiner_training"}


def relative_to_root(path: str | os.PathLike) -> str:
    """`path` relative to the project root (the JupyterLab server root) when under it, else as given."""
    return relative_to_project(path)


def rel_text(obj: Any) -> str:
    """`str(obj)` with the project root's absolute prefix removed (paths in reprs and log lines)."""
    root = find_project_root()
    return str(obj) if root is None else str(obj).replace(str(root) + os.sep, "")



@dataclass(frozen=True)
class ResultPaths:
    """The folders of one profile's results (`<results>/<profile>/`); created on first use."""

    root: Path  # <results>/<profile>

    def folder(self, name: str) -> Path:
        """The path of one of the folders below ("cache"), not created (a writer creates it)."""
        return self.root / name

    def _dir(self, name: str) -> Path:
        path = self.folder(name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def data(self) -> Path:
        """data/: the data check report and sample triplets (00)."""
        return self._dir("data")

    @property
    def runs(self) -> Path:
        """runs/: the training run folders (01, 02)."""
        return self._dir("runs")

    @property
    def metrics(self) -> Path:
        """metrics/: evaluation results as JSON (03)."""
        return self._dir("metrics")

    @property
    def tables(self) -> Path:
        """tables/: fashioniq / cirr tables as CSV, Markdown, LaTeX, with .meta.json (03)."""
        return self._dir("tables")

    @property
    def figures(self) -> Path:
        """figures/: PNG + PDF figures (00, 03, 04)."""
        return self._dir("figures")

    @property
    def cache(self) -> Path:
        """cache/: the feature cache shared by training, evaluation and the explorer."""
        return self._dir("cache")

    def run(self, dataset: str, stage: str, seed: int = 0, backbone: str = "") -> Path:
        """The run folder of a dataset's stage ("finetune" or "combiner"): runs/<dataset>-<stage>,
        with -<backbone> when the profile trains several backbones and -seed<N> for a seed other than 0
        (runs/cirr-finetune-rn50x4-seed1)."""
        if stage not in STAGES:
            raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
        return self.runs / (f"{dataset}-{stage}" + (f"-{backbone.lower()}" if backbone else "")
                            + (f"-seed{seed}" if seed else ""))

    def method_run(self, dataset: str, method, seed: int = 0, backbone: str = "") -> Path:
        """The stage-2 run folder of a method with a trained composer (`cir_lib.methods.Method`):
        runs/<dataset>-<method.run_stage>[-<backbone>][-seed<N>], e.g. runs/cirr-combiner (the
        stage-1 Combiner), runs/cirr-combiner-zeroshot, runs/fashioniq-tirg-rn50."""
        return self.runs / (f"{dataset}-{method.run_stage}" + (f"-{backbone.lower()}" if backbone else "")
                            + (f"-seed{seed}" if seed else ""))


class _RootRelativeFormatter(logging.Formatter):
    """Log lines with paths under the project root shown relative to it (notebooks hold no absolute paths)."""

    def format(self, record: logging.LogRecord) -> str:
        return rel_text(super().format(record))


VERBOSE_ENV_VAR = "CIR_LIB_VERBOSE"  # 1: the notebooks show the detail lines too (DEBUG)


def notebook_logging(level: Optional[int] = None) -> None:
    """Show the kit's log messages (epoch summaries, one line per evaluated row and split) in a
    notebook's output.

    Only the `cir_lib` loggers are routed to stdout, so other libraries stay quiet; calling it again
    does not add a second handler. Paths under the project root are shown relative to it.

    Args:
        level: the logging level; None: INFO, or DEBUG when `$CIR_LIB_VERBOSE` is 1 (the detail:
            feature-cache hits, per-category recalls). In a notebook, `notebook_logging(logging.DEBUG)`
            after the setup cell does the same.
    """
    if level is None:
        verbose = os.environ.get(VERBOSE_ENV_VAR, "").strip().lower() in ("1", "true", "yes", "on")
        level = logging.DEBUG if verbose else logging.INFO
    kit = logging.getLogger("cir_lib")
    kit.setLevel(level)
    if not any(getattr(h, "_cir_lib_notebook", False) for h in kit.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_RootRelativeFormatter("%(levelname)s %(name)s: %(message)s"))
        handler._cir_lib_notebook = True
        kit.addHandler(handler)
        kit.propagate = False


def result_paths(results_dir: str | os.PathLike) -> ResultPaths:
    """The `ResultPaths` of a profile's results folder (the notebooks' `results_dir` parameter).

    Example:
        >>> paths = result_paths("../results/mini"); paths.run("cirr", "finetune")
    """
    return ResultPaths(Path(results_dir).expanduser().resolve())

@dataclass(frozen=True)
class Settings:
    """A notebook's resolved parameters: the profile's values, overridden by the knobs that were set.

    Paths are absolute; `rel` shows one relative to the project root, as the notebooks print them.
    """

    profile: str  # "smoke" | "mini" | "mini-x2" | "paper"
    notebook: Optional[str]  # the notebook that called setup (None: none named)
    data_root: Path  # the folder holding fashionIQ_dataset/ and cirr_dataset/
    paths: ResultPaths  # <results>/<profile>/: data/, runs/, metrics/, tables/, figures/, cache/
    datasets: tuple  # the benchmarks to run
    recipes: Mapping[str, str]  # {dataset: recipe name}
    mini_preset: Optional[str]  # make-mini preset of the data root; None for real data
    pretrain_epochs: Optional[int]  # pretrain-mini epochs when cir-mini.pt is absent (None: its default)
    pretrained: Optional[str]  # starting weights instead of the recipes' (None: the recipes')
    stage1_epochs: Optional[int]  # stage-1 epochs instead of the recipes' (None: the recipes')
    combiner_epochs: Optional[int]  # Combiner epochs instead of the recipes' (None: the recipes')
    skip_missing: bool  # real data with missing images: skip and report the queries they affect
    n_examples: int  # queries per retrieval grid
    top_k: int  # images per ranking
    interactive: bool  # 04: the ipywidgets explorer (False: static figures)
    seeds: tuple = (0,)  # training seeds: one series of runs per seed (the tables add mean +- std across seeds)
    fresh: bool = False  # 01, 02: delete this notebook's earlier runs and train again (default: reuse / resume)
    backbones: tuple = ("",)  # the profile's backbones (paper: RN50, RN50x4); "": the recipes' own, one series
    backbone_recipes: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)  # {backbone: {dataset: recipe}}
    cirr_test_results: Optional[Path] = None  # 03: the CIRR server's numbers for the submitted files (JSON)
    dry_run: bool = False  # paper: a few steps per stage, capped evaluation, tables marked as a dry run
    recipe_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # {stage: {field:
    # value}} from the `recipe_overrides` knob ({"combiner.lr": 2e-4}), parsed; applied over every run's recipe
    profile_spec: Optional[Profile] = None  # the resolved profile itself (`profiles.Profile`): what its
    # consumers read, never looked up again by name
    composers: tuple = ("combiner",)  # the composers stage 2 trains, each over both encoders (cir_lib.methods)

    def recipes_for(self, backbone: str) -> Mapping[str, str]:
        """{dataset: recipe} of one of `backbones` ("": `recipes`)."""
        if not backbone:
            return self.recipes
        return {d: self.backbone_recipes[backbone][d] for d in self.datasets}

    @property
    def generated_data(self) -> bool:
        """Whether the profile runs on the generated mini benchmark (its tables mark this run's rows
        apart from the cited and published ones, which are on the real datasets)."""
        return self.profile_spec is not None and self.profile_spec.mini_preset is not None

    @property
    def results_dir(self) -> Path:
        """`<results>/<profile>`."""
        return self.paths.root

    def rel(self, path: str | os.PathLike) -> str:
        """`path` relative to the project root (see `relative_to_root`)."""
        return relative_to_root(path)

    def __repr__(self) -> str:  # what the setup cell shows: root-relative paths, one field a line
        lines = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ResultPaths):
                value = value.root
            if isinstance(value, Profile):
                continue  # its values are the fields above
            shown = self.rel(value) if isinstance(value, Path) else repr(value)
            lines.append(f"  {f.name} = {shown}")
        return "Settings(\n" + "\n".join(lines) + "\n)"


def setup(profile: Optional[str] = None, notebook: Optional[str] = None, **knobs: Any) -> Settings:
    """Resolve a notebook's parameters: every knob left None takes the profile's value.

    Also routes the kit's log lines to the notebook (`notebook_logging`) and, for a notebook of the
    series, checks that the notebooks it depends on have run (`require_earlier`).

    Args:
        profile: "smoke", "mini", "mini-x2" or "paper" (`cir_lib.profiles.PROFILES`); None (the notebooks'
            committed value): the profile chosen for the project, `$CIR_LIB_PROFILE` (`make lab
            PROFILE=smoke`), else `local_profile.txt` at the project root, else "mini"
            (`cir_lib.project.chosen_profile`). Papermill's injected value wins over both.
        notebook: the calling notebook ("03_evaluation"); its inputs are checked.
        **knobs: any of `KNOBS`; None means "the profile's value" (data_root: data/<profile>;
            results_dir: results/<profile>; skip_missing: False; interactive: True).
            `recipe_overrides` sets any recipe field of a stage by its dotted name, over every run's
            recipe: {"combiner.lr": 2e-4, "finetune.batch_size": 64} (`resolve_recipe_overrides`).

    Returns:
        The `Settings`.

    Raises:
        ConfigError: an unknown profile, notebook, knob or recipe field (with the closest name).
        PipelineError: an earlier notebook has not run (the message names it), or the paper profile
            without a data root.

    Example:
        >>> settings = setup("smoke", "01_stage1_finetune", stage1_epochs=None)
        >>> settings.recipes, settings.rel(settings.paths.runs)
        ({'fashioniq': 'smoke', 'cirr': 'smoke'}, 'results/smoke/runs')
    """
    settings, source = _resolve(profile, notebook, knobs)
    notebook_logging()
    if source not in ("given", "default"):
        logger.info("profile %r, chosen in %s", settings.profile, source)
    if notebook is not None:
        require_earlier(settings, notebook)
    return settings


def resolve(profile: "Optional[str | Profile]" = None, notebook: Optional[str] = None, **knobs: Any) -> Settings:
    """`setup`'s resolution alone: no log routing and no check of earlier notebooks (what `cir-lib
    reproduce` resolves once before the series runs, so that a mistake is refused before any work).
    `profile` may be a resolved `Profile` as well as a name.

    Example:
        >>> resolve("smoke", recipe_overrides={"combiner.lr": "2e-4"}).recipe_overrides
        {'combiner': {'lr': 0.0002}}
    """
    return _resolve(profile, notebook, knobs)[0]


def _resolve(profile: "Optional[str | Profile]", notebook: Optional[str], knobs: Mapping[str, Any]) -> tuple[Settings, str]:
    source = "given"
    if profile is None:
        profile, source = chosen_profile()
    try:
        prof = profile if isinstance(profile, Profile) else get_profile(profile)
    except ConfigError as err:
        if source == "given":
            raise
        raise ConfigError(f"{err} (it comes from {source}: fix or remove it there)") from None
    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise ConfigError(f"unknown notebook parameter(s) {unknown}; known: {', '.join(KNOBS)}")
    if notebook is not None and notebook not in NEEDS:
        raise ConfigError(f"unknown notebook {notebook!r}; the series is {', '.join(NEEDS)}")
    given = {k: v for k, v in knobs.items() if v is not None}
    root = resolve_data_root(prof, given.get("data_root"))
    results = Path(given["results_dir"]).expanduser().resolve() if "results_dir" in given \
        else project_root() / "results" / prof.name
    recipes = dict(given.get("recipes", prof.recipes))
    datasets = tuple(given.get("datasets", recipes))
    missing = [d for d in datasets if d not in recipes]
    if missing:
        raise ConfigError(f"no recipe for dataset(s) {missing}: add them to recipes (e.g. recipes = "
                          f"{{{missing[0]!r}: {next(iter(prof.recipes.values()))!r}}})")
    settings = Settings(
        profile=prof.name, notebook=notebook, data_root=root, paths=result_paths(results), datasets=datasets,
        recipes={d: recipes[d] for d in datasets}, mini_preset=prof.mini_preset,
        pretrain_epochs=given.get("pretrain_epochs", prof.pretrain_epochs),
        pretrained=given.get("pretrained", prof.pretrained),
        stage1_epochs=given.get("stage1_epochs", 2 if given.get("dry_run") else prof.stage1_epochs),
        combiner_epochs=given.get("combiner_epochs", 2 if given.get("dry_run") else prof.combiner_epochs),
        skip_missing=bool(given.get("skip_missing", False)),
        n_examples=int(given.get("n_examples", prof.n_examples)),
        top_k=int(given.get("top_k", prof.top_k)),
        interactive=bool(given.get("interactive", True)),
        seeds=parse_seeds(given.get("seeds", (0,))),
        fresh=bool(given.get("fresh", False)),
        **backbone_series(prof, given, datasets),
        cirr_test_results=Path(given["cirr_test_results"]).expanduser().resolve()
        if given.get("cirr_test_results") else None,
        dry_run=bool(given.get("dry_run", False)),
        recipe_overrides=resolve_recipe_overrides(given),
        profile_spec=prof,
        composers=parse_composers(given.get("composers", prof.composers)),
    )
    return settings, source


def resolve_recipe_overrides(given: Mapping[str, Any]) -> dict:
    """The `recipe_overrides` knob ({"combiner.lr": 2e-4}) as {stage: {field: value}}, names checked
    and values parsed once (`recipes.split_overrides`); a field a knob sets is refused when that knob
    is set too, and the fields the series sets for every run (seed, dataset) always (name the knob)."""
    overrides = split_overrides(given.get("recipe_overrides"))
    for stage, fields in overrides.items():
        for name in fields:
            knob = KNOB_FIELDS.get(stage, {}).get(name)
            if knob is not None and knob in given:
                raise ConfigError(f"{stage}.{name} in recipe_overrides contradicts the {knob} knob, which sets it "
                                  f"too: set one of them (e.g. only {knob})")
            if name in SERIES_FIELDS:
                raise ConfigError(f"{stage}.{name} is set by the series for each run: use the "
                                  f"{SERIES_FIELDS[name]} knob (--set {SERIES_FIELDS[name]}=...) instead")
    return overrides


def backbone_series(prof, given: Mapping[str, Any], datasets: Sequence[str]) -> dict:
    """`backbones` / `backbone_recipes` of Settings: the profile's backbones (all, or those named by
    the `backbones` knob, e.g. "RN50" or ["RN50", "RN50x4"]); ("",) when the profile has one series
    or the `recipes` knob names the recipes."""
    if not prof.backbones or "recipes" in given:
        if given.get("backbones"):
            raise ConfigError(f"profile {prof.name!r} has no backbones to choose from"
                              + (" once recipes is set" if prof.backbones else "") + "; drop backbones")
        return {"backbones": ("",), "backbone_recipes": {}}
    chosen = given.get("backbones") or list(prof.backbones)
    if isinstance(chosen, str):
        chosen = [b.strip() for b in chosen.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in prof.backbones]
    if unknown or not chosen:
        raise ConfigError(f"unknown backbone(s) {unknown or chosen!r} for profile {prof.name!r}; choose among "
                          f"{', '.join(prof.backbones)} (e.g. --set backbones=RN50)")
    lacking = [f"{b}/{d}" for b in chosen for d in datasets if d not in prof.backbones[b]]
    if lacking:
        raise ConfigError(f"no recipe for {lacking} in profile {prof.name!r}")
    return {"backbones": tuple(chosen), "backbone_recipes": {b: dict(prof.backbones[b]) for b in chosen}}


def require_earlier(settings: Settings, notebook: str) -> None:
    """Check that what `notebook` reads was written; PipelineError naming the notebook to run first.

    Args:
        settings: the resolved settings.
        notebook: a notebook of the series ("03_evaluation").
    """
    for need in NEEDS[notebook]:
        for dataset in settings.datasets:
            if need == "data":
                folder = settings.data_root / get_dataset(dataset).folder
                ready = folder.is_dir() and (settings.mini_preset is None
                                             or (settings.data_root / MINI_CHECKPOINT).is_file())
                what = f"the {dataset} data in {settings.rel(settings.data_root)}"
            else:
                run = next((settings.paths.root / "runs" / folder.name
                            for bb in settings.backbones for seed in settings.seeds
                            for folder in _needed_runs(settings, dataset, need, seed, bb)
                            if not (settings.paths.root / "runs" / folder.name / "best.pt").is_file()), None)
                ready = run is None
                run = run or settings.paths.root / "runs" / f"{dataset}-{need}"
                what = f"the {dataset} {'stage-1' if need == 'finetune' else 'stage-2'} run {settings.rel(run)}"
            if not ready:
                raise PipelineError(
                    f"{notebook} needs {what} (profile {settings.profile!r}), which is not there yet: run "
                    f"notebooks/{_WRITER[need]}.ipynb first (the series runs in order, 00 to 04; "
                    f"`cir-lib reproduce --profile {settings.profile}` runs them all)")

def _needed_runs(settings: Settings, dataset: str, need: str, seed: int, backbone: str) -> list:
    """The run folders of a stage: stage 1's, or every stage-2 run of `settings.composers`."""
    from cir_lib.methods import stage2_methods  # here: torch; `cir-lib reproduce` resolves settings without it (2 s, not 7)

    if need == "finetune":
        return [settings.paths.run(dataset, need, seed, backbone)]
    return [settings.paths.method_run(dataset, m, seed, backbone) for m in stage2_methods(settings.composers)]


def parse_composers(value: Any) -> tuple:
    """Trained composers from a notebook knob or `--set composers=...`: "combiner,tirg" or
    ["combiner", "tirg"] -> ("combiner", "tirg"), in registration order; the Combiner is required
    (the paper's method: the tables' differences, the lambda figure and the explorer rest on it)."""
    items = value.split(",") if isinstance(value, str) else (value if isinstance(value, (list, tuple)) else [value])
    names = [str(v).strip() for v in items if str(v).strip()]
    known = COMPOSERS
    unknown = [n for n in names if n not in known]
    if unknown or "combiner" not in names:
        raise ConfigError(f"composers must name trained composers among {', '.join(known)}, the Combiner "
                          f"included, e.g. composers=combiner,tirg; got {value!r}")
    return tuple(n for n in known if n in names)


def parse_seeds(value: Any) -> tuple:
    """Seeds from a notebook knob or `--set seeds=...`: 0, [0, 1, 2], "0,1,2" -> (0, 1, 2)."""
    items = value.split(",") if isinstance(value, str) else (value if isinstance(value, (list, tuple)) else [value])
    try:
        seeds = tuple(int(str(v).strip()) for v in items if str(v).strip())
    except ValueError:
        raise ConfigError(f"seeds must be whole numbers, e.g. seeds=0,1,2; got {value!r}") from None
    if not seeds or any(x < 0 for x in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct non-negative whole numbers, e.g. seeds=0,1,2; got {value!r}")
    return seeds
