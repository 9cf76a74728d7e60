"""`cir-lib reproduce`: run the five notebooks in order through papermill, for one profile.

A profile says which data, which weights and which recipes:

    smoke  the smoke mini benchmark (generated when absent), tiny epochs: checks the whole path
           in about a minute after set-up (CI, `make test`)
    mini   the embedded mini benchmark (generated when absent) with `cir-mini` pretrained on it
           (cached beside the data); `make reproduce`; ~4 minutes of notebooks on 2 idle CPU cores
           (~6 minutes from a fresh clone, set-up included)
    paper  a real data root (`--data-root`), OpenAI's weights and the paper's recipes (a GPU)

Everything a run writes goes under `<results>/<profile>/`: the executed notebooks in `executed/`,
tables in `tables/`, figures in `figures/`, training runs in `runs/`, metrics in `metrics/`
(results/README.md lists which notebook writes which file).

Example:
    >>> summary = reproduce("smoke", results_dir="/tmp/results")
    >>> print(format_summary(summary))
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from cir_lib.constants import CIRR_DIR, DATASETS, FASHIONIQ_CATEGORIES, FASHIONIQ_DIR, MINI_CHECKPOINT
from cir_lib.errors import CirError, ConfigError
from cir_lib.report import METHODS

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = ("00_data_prep", "01_stage1_finetune", "02_combiner_training", "03_evaluation", "04_qualitative")
KERNEL_NAME = "cir-lib-reproduce"  # written to a temporary folder for each reproduce() call


class PipelineError(CirError):
    """A notebook of the pipeline failed, or a profile's inputs are missing."""


@dataclass(frozen=True)
class Profile:
    """What `reproduce` runs: data, weights, recipes and epoch overrides."""

    name: str  # "smoke" | "mini" | "paper"
    description: str  # one line for --help and the summary
    mini_preset: Optional[str] = None  # make-mini preset generated into the data root; None = real data
    default_data_root: Optional[str] = None  # relative to the project root; None = --data-root required
    recipes: Mapping[str, str] = field(default_factory=dict)  # {dataset: recipe name}
    pretrain_epochs: Optional[int] = None  # mini profiles: pretrain-mini epochs when cir-mini.pt is absent; None = its default
    stage1_epochs: Optional[int] = None  # override of the recipes' stage-1 epochs; None = the recipe's
    combiner_epochs: Optional[int] = None  # override of the recipes' Combiner epochs; None = the recipe's
    pretrained: Optional[str] = None  # override of the recipes' starting weights; None = the recipe's
    n_examples: int = 4  # queries per retrieval grid
    top_k: int = 5  # images per ranking in the grids and the explorer

    def notebook_parameters(self, data_root: Path, results_dir: Path) -> dict:
        """The values injected into each notebook's `parameters` cell."""
        return {
            "profile": self.name,
            "data_root": str(data_root),
            "results_dir": str(results_dir),
            "datasets": list(self.recipes),
            "recipes": dict(self.recipes),
            "mini_preset": self.mini_preset,
            "pretrain_epochs": self.pretrain_epochs,
            "pretrained": self.pretrained,
            "stage1_epochs": self.stage1_epochs,
            "combiner_epochs": self.combiner_epochs,
            "skip_missing": False,  # real data with missing images: skip (and report) what they affect
            "n_examples": self.n_examples,
            "top_k": self.top_k,
            "interactive": False,  # papermill has no widget frontend: 04 renders its static fallback
        }


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="smoke mini benchmark, a few tiny epochs: checks that every notebook runs (minutes)",
        mini_preset="smoke",
        default_data_root="data/smoke",
        recipes={"fashioniq": "smoke", "cirr": "smoke"},
        pretrain_epochs=1,
        pretrained="{data_root}/" + MINI_CHECKPOINT,  # exercise the pretraining path, in seconds
        stage1_epochs=2,
        combiner_epochs=2,
        n_examples=2,
        top_k=4,
    ),
    "mini": Profile(
        name="mini",
        description="embedded mini benchmark with cir-mini pretrained on it, CPU recipes (~4 min of notebooks on 2 idle cores)",
        mini_preset="mini",
        default_data_root="data/mini",
        recipes={"fashioniq": "mini", "cirr": "mini"},
        pretrain_epochs=None,  # pretrain-mini's own default
        n_examples=4,
        top_k=5,
    ),
    "paper": Profile(
        name="paper",
        description="real FashionIQ and CIRR (--data-root), OpenAI RN50 weights, the paper's recipes (GPU)",
        mini_preset=None,
        default_data_root=None,
        recipes={"fashioniq": "paper-rn50-fashioniq", "cirr": "paper-rn50-cirr"},
        n_examples=4,
        top_k=5,
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called `name` (a key of `PROFILES`); ConfigError naming the choices otherwise."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of: {', '.join(PROFILES)}")
    return PROFILES[name]


# --------------------------------------------------------------------------- helpers the notebooks call

STAGES = {"stage1": "finetune", "combiner": "combiner"}  # run-folder suffix -> recipe stage


@dataclass(frozen=True)
class ResultPaths:
    """The folders of one profile's results (`<results>/<profile>/`); created on first use."""

    root: Path  # <results>/<profile>

    def _dir(self, name: str) -> Path:
        path = self.root / name
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

    def run(self, dataset: str, stage: str) -> Path:
        """The run folder of a dataset's stage ("stage1" or "combiner"): runs/<dataset>-<stage>."""
        if stage not in STAGES:
            raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
        return self.runs / f"{dataset}-{stage}"


def notebook_logging(level: int = logging.INFO) -> None:
    """Show the kit's log messages (epoch summaries, cache hits, metrics) in a notebook's output.

    Only the `cir_lib` loggers are routed to stdout, so other libraries stay quiet; calling it again
    does not add a second handler.
    """
    kit = logging.getLogger("cir_lib")
    kit.setLevel(level)
    if not any(getattr(h, "_cir_lib_notebook", False) for h in kit.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._cir_lib_notebook = True
        kit.addHandler(handler)
        kit.propagate = False


def result_paths(results_dir: str | os.PathLike) -> ResultPaths:
    """The `ResultPaths` of a profile's results folder (the notebooks' `results_dir` parameter).

    Example:
        >>> paths = result_paths("../results/mini"); paths.run("cirr", "stage1")
    """
    return ResultPaths(Path(results_dir).expanduser().resolve())


def ensure_mini(data_root: str | os.PathLike, preset: str, seed: int = 0) -> dict:
    """Generate the mini benchmark into `data_root` unless the same one is already there.

    A folder holding the same preset and seed made by the same generator version is reused (its
    MINI_BENCHMARK.json is written last, so it marks a complete generation); one made by an older
    generator is regenerated, together with the cir-mini checkpoint pretrained on it.

    Returns:
        The benchmark's manifest (preset, seed, counts).
    """
    from cir_lib import mini

    root = Path(data_root)
    manifest_path = root / mini.MANIFEST_NAME
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        same = (manifest.get("preset"), manifest.get("seed")) == (preset, seed)
        if same and manifest.get("generator_version") == mini.MINI_GENERATOR_VERSION:
            logger.info("reusing the %s mini benchmark in %s", preset, root)
            return manifest
        if not same:
            raise PipelineError(
                f"{root} holds the {manifest.get('preset')!r} mini benchmark (seed {manifest.get('seed')}), not "
                f"{preset!r} (seed {seed}); pass another data root, or delete {root} to regenerate it")
        logger.info("%s was made by an older generator: regenerating it", root)
        return mini.make_mini(root, preset=preset, seed=seed, overwrite=True)
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
    from cir_lib.pretrain import PretrainConfig, pretrain_mini

    path = Path(data_root) / MINI_CHECKPOINT
    if path.is_file():
        logger.info("reusing the pretrained cir-mini %s", path)
        return path
    config = PretrainConfig() if epochs is None else PretrainConfig(epochs=epochs)
    return Path(pretrain_mini(data_root, out=path, config=config))


def stage_config(recipe: str, stage: str, dataset: str, *, epochs: Optional[int] = None,
                 pretrained: Optional[str] = None, cache_dir: Optional[str | os.PathLike] = None,
                 **overrides: Any):
    """A recipe's config for one stage and dataset, with the notebooks' overrides applied.

    Args:
        recipe: a recipe name (`cir_lib.recipes.RECIPES`).
        stage: "stage1" or "combiner".
        dataset: "fashioniq" or "cirr".
        epochs, pretrained, cache_dir: overrides; None keeps the recipe's value.
        **overrides: any other field of the stage's config.

    Returns:
        A `FinetuneConfig` or `CombinerTrainConfig`.
    """
    from cir_lib.recipes import get_recipe

    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    values = dict(overrides)
    for key, value in (("epochs", epochs), ("pretrained", pretrained), ("cache_dir", cache_dir)):
        if value is not None:
            values[key] = str(value) if key == "cache_dir" else value
    return get_recipe(recipe, STAGES[stage], dataset=dataset, **values)


def fresh_run_dir(path: str | os.PathLike) -> Path:
    """Return `path` emptied of an earlier training run, so a notebook can be run again.

    Only a run folder (holding config.json) is removed; any other non-empty folder is refused.
    """
    import shutil

    path = Path(path)
    if path.exists():
        if (path / "config.json").is_file():
            logger.info("removing the earlier run in %s", path)
            shutil.rmtree(path)
        elif any(path.iterdir()):
            raise PipelineError(f"{path} is not a run folder but is not empty; move it away or choose another "
                                "results folder")
    return path


def default_device() -> str:
    """"cuda" when a GPU is visible, else "cpu" (evaluation and the explorer; training follows its recipe)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate_methods(data_root: str | os.PathLike, dataset: str, paths: ResultPaths, *, split: str = "val",
                     methods: Sequence[str] = METHODS, device: Optional[str] = None,
                     skip_missing: bool = False) -> dict:
    """Evaluate the three rows of the tables on a split, through `cir_lib.evaluate`.

    - "zero-shot sum": the stage-1 run's starting weights (its config's backbone and pretrained),
      element-wise sum;
    - "stage 1 sum": the stage-1 run's best checkpoint, element-wise sum;
    - "stage 1 + Combiner": the Combiner run's best checkpoint over its stage-1 encoders.

    Args:
        data_root: the data root the runs were trained on.
        dataset: "fashioniq" or "cirr".
        paths: the profile's `ResultPaths` (runs/<dataset>-stage1 and -combiner, cache/).
        split: the evaluated split ("val": it has targets).
        methods: which rows (default: all three).
        device: where to evaluate (default: CUDA when available).
        skip_missing: skip queries whose images are missing (reported under "skipped").

    Returns:
        {method: metrics dict as `evaluate_fashioniq` / `evaluate_cirr` return it}.
    """
    from cir_lib import evaluate
    from cir_lib.backbone import load_backbone
    from cir_lib.combiner import ElementwiseSum
    from cir_lib.recipes import resolve_pretrained
    from cir_lib.train import load_run, preprocess_for, run_config

    device = device or default_device()
    stage1, combiner_run = paths.run(dataset, "stage1"), paths.run(dataset, "combiner")
    out = {}
    for method in methods:
        if method == "zero-shot sum":  # the stage-1 run's starting weights: its config is enough
            config = run_config(stage1)
            backbone = load_backbone(config.backbone, resolve_pretrained(config.pretrained, data_root), device=device)
            composer = ElementwiseSum(backbone.embed_dim)
        elif method == "stage 1 sum":
            backbone, composer, config = load_run(stage1, device=device)
        elif method == "stage 1 + Combiner":
            backbone, composer, config = load_run(combiner_run, device=device)
        else:
            raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
        preprocess = preprocess_for(config, backbone)
        fn = evaluate.evaluate_fashioniq if dataset == "fashioniq" else evaluate.evaluate_cirr
        logger.info("evaluating %s on %s %s", method, dataset, split)
        out[method] = fn(data_root, backbone, composer, preprocess=preprocess, split=split,
                         cache_dir=str(paths.cache), device=device, skip_missing=skip_missing)
    return out


def save_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write `obj` as indented JSON (folders created; paths and numpy numbers converted)."""
    from cir_lib.report import _jsonable
    from cir_lib.runs import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2) + "\n")
    return path


def run_summary(results: Mapping[str, Any]) -> "Any":
    """A DataFrame of training results: dataset, run folder, best epoch, best score, seconds.

    Args:
        results: {dataset: RunResult} as returned by `finetune` / `train_combiner`.
    """
    import pandas as pd

    return pd.DataFrame([{"dataset": d, "run": str(r.run_dir), "best_epoch": r.best_epoch,
                          "best_score": round(float(r.best_score), 2), "epochs": len(r.history),
                          "seconds": round(float(r.seconds), 1)} for d, r in results.items()])


def run_dirs(paths: ResultPaths, datasets: Sequence[str]) -> dict:
    """{"stage 1": {dataset: run folder}, "Combiner": {...}} for `report.plot_training_curves`."""
    return {"stage 1": {d: paths.run(d, "stage1") for d in datasets},
            "Combiner": {d: paths.run(d, "combiner") for d in datasets}}


def table_notes(profile: str, dataset: str, split: str = "val", rows: Optional[Mapping[str, Any]] = None) -> list[str]:
    """What the rows of a table are, whether the paper's rows are comparable, and what was skipped.

    Args:
        profile: the profile name.
        dataset: "fashioniq" or "cirr".
        split: the evaluated split.
        rows: the evaluation dicts ({method: metrics}); their "skipped" reports are summarised.
    """
    from cir_lib.report import PAPER_NOTE

    notes = [f"this run: profile {profile}, {dataset} {split} split"]
    if profile not in PROFILES or PROFILES[profile].mini_preset is not None:
        notes.append("the mini benchmark is synthetic, not the paper's data: the paper's rows and the "
                     "differences to them are context, not a comparison")
    notes.append(PAPER_NOTE[dataset])
    if dataset == "cirr" and split != "test1":
        notes.append("this run's CIRR rows are on val; the paper's are on test1 (evaluation server)")
    for method, metrics in (rows or {}).items():
        skipped = metrics.get("skipped") if isinstance(metrics, Mapping) else None
        if skipped and (skipped.get("queries") or skipped.get("images")):
            notes.append(f"{method}: {skipped.get('queries', 0)} queries and {skipped.get('images', 0)} index "
                         "images skipped for missing files (not the full protocol)")
    return notes


def table_meta(paths: ResultPaths, dataset: str, *, profile: str, data_root: str | os.PathLike,
               split: str = "val") -> dict:
    """The record written beside a table: each run's config and environment (its config.json) and
    the environment that evaluated them."""
    from cir_lib import runs as run_files
    from cir_lib.runs import environment_info

    records = {}
    for stage in STAGES:
        folder = paths.run(dataset, stage)
        if (folder / "config.json").is_file():
            info = run_files.read_run_config(folder)
            # the run's own environment (the commit and machine that trained it) beside its config
            records[f"{dataset}-{stage}"] = {"path": str(folder), **info.get("config", {}),
                                             **{k: info[k] for k in ("clip", "skipped", "environment")
                                                if k in info}}
    device = next((r.get("device") for r in records.values() if r.get("device") not in (None, "auto")), None)
    return {"profile": profile, "dataset": dataset, "split": split, "data_root": str(Path(data_root).resolve()),
            "runs": records, "environment": environment_info(device)}


def ordering(rows: Mapping[str, Mapping[str, Any]], dataset: str) -> dict:
    """Each method's selection score (FashionIQ: mean of average R@10 and R@50; CIRR: mean of the
    seven recalls) and whether zero-shot sum < stage 1 sum < stage 1 + Combiner holds."""
    from cir_lib.report import cirr_table, fashioniq_table
    from cir_lib.train import selection_score  # the rule that picks best.pt, on the table's flat rows

    table = (fashioniq_table if dataset == "fashioniq" else cirr_table)(rows, include_paper=False)
    scores = {r["method"]: float(selection_score(dataset, r)) for r in table.to_dict("records")}
    values = [scores[m] for m in METHODS if m in scores]
    return {"scores": scores, "ascending": all(a < b for a, b in zip(values, values[1:]))}


# --------------------------------------------------------------------------- preflight checks


def resolve_data_root(profile: Profile, data_root: Optional[str | os.PathLike]) -> Path:
    """The data root a profile uses: the given one, else the profile's default under the project."""
    if data_root is not None:
        return Path(data_root).expanduser().resolve()
    if profile.default_data_root is None:
        raise PipelineError(
            f"profile {profile.name!r} needs the real datasets: pass --data-root DIR, the folder holding "
            f"{FASHIONIQ_DIR}/ and {CIRR_DIR}/ (README: 'Running the paper profile')")
    return (PROJECT_ROOT / profile.default_data_root).resolve()


def missing_real_data(data_root: Path, datasets: Sequence[str]) -> list[str]:
    """What a real data root lacks for training and validation: dataset folders and annotation files."""
    from cir_lib.data import annotation_files

    missing: list[str] = []
    if not data_root.is_dir():
        return [f"the data root {data_root} (no such folder)"]
    for dataset in datasets:
        folder = data_root / (FASHIONIQ_DIR if dataset == "fashioniq" else CIRR_DIR)
        if not folder.is_dir():
            missing.append(f"{folder} (the {dataset} dataset folder)")
            continue
        groups = [(s, c) for s in ("train", "val") for c in FASHIONIQ_CATEGORIES] if dataset == "fashioniq" \
            else [("train", None), ("val", None)]
        for split, category in groups:
            for path in annotation_files(data_root, dataset, split, category):
                if not path.is_file():
                    missing.append(str(path))
        if dataset == "fashioniq" and not (folder / "images").is_dir():
            missing.append(f"{folder / 'images'} (the FashionIQ images)")
        if dataset == "cirr" and not any((folder / d).is_dir() for d in ("train", "dev")):
            missing.append(f"{folder / 'train'} and {folder / 'dev'} (the CIRR images)")
    return missing


def _network_reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def openai_weights_location(model: str) -> Optional[str]:
    """Where open_clip's cache holds OpenAI's weights of `model` (None when not cached).

    Looks in the Hugging Face hub cache (open_clip's first choice) and in ~/.cache/clip (URL downloads).
    """
    import open_clip

    try:
        cfg = open_clip.get_pretrained_cfg(model, "openai")
    except Exception:  # noqa: BLE001 - unknown model: reported by the caller
        cfg = {}
    if not cfg:
        return None
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache

            repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
            names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            for name in names:
                hit = try_to_load_from_cache(repo, name)
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit
        except ImportError:
            pass
    url = cfg.get("url", "")
    if url:
        local = Path("~/.cache/clip").expanduser() / os.path.basename(url)
        if local.is_file():
            return str(local)
    return None


def recipe_backbones(recipes: Mapping[str, str], pretrained: Optional[str] = None) -> dict[str, tuple[str, str]]:
    """{dataset: (backbone, pretrained)} of the stage-1 configs of the given recipes."""
    from cir_lib.recipes import get_recipe

    out = {}
    for dataset, name in recipes.items():
        cfg = get_recipe(name, "finetune", dataset=dataset)
        out[dataset] = (cfg.backbone, pretrained or cfg.pretrained)
    return out


def preflight(profile: Profile, data_root: Path, recipes: Mapping[str, str], pretrained: Optional[str] = None) -> None:
    """Refuse early, naming everything missing: real data folders and files, OpenAI weights.

    Mini profiles need nothing (they generate their data and pretrain their backbone).
    """
    from cir_lib.recipes import get_recipe

    for dataset, name in recipes.items():
        if dataset not in DATASETS:
            raise PipelineError(f"unknown dataset {dataset!r} in the recipes; valid: {', '.join(DATASETS)}")
        get_recipe(name, "finetune", dataset=dataset)  # unknown recipe names fail here, by name
    if profile.mini_preset is not None:
        return
    problems = missing_real_data(data_root, list(recipes))
    needed = sorted({bb for bb, pre in recipe_backbones(recipes, pretrained).values() if pre == "openai"})
    uncached = [bb for bb in needed if openai_weights_location(bb) is None]
    if uncached and not _network_reachable():
        for bb in uncached:
            problems.append(f"OpenAI's {bb} weights: not in open_clip's cache (Hugging Face hub cache or "
                            "~/.cache/clip) and the network is unreachable; connect once, or copy the cache "
                            "from a machine that has it")
    if problems:
        listing = "\n  - ".join(problems)
        raise PipelineError(
            f"profile {profile.name!r} cannot start; missing:\n  - {listing}\n"
            f"Get FashionIQ and CIRR as README 'Running the paper profile' says, lay them out under the data "
            f"root, and check them with `cir-lib check-data --data-root {data_root}`.")


# --------------------------------------------------------------------------- kernel


@contextlib.contextmanager
def pipeline_kernel() -> Iterator[str]:
    """A kernelspec that runs this very Python (the one running `reproduce`), for papermill.

    It is written to a temporary folder put first on JUPYTER_PATH, so a user-level `python3`
    kernelspec that points at another interpreter cannot be picked up by mistake. The kernel's
    PYTHONPATH starts with the project root, so the notebooks import this checkout's cir_lib.

    Yields:
        The kernel name to pass to papermill.
    """
    with tempfile.TemporaryDirectory(prefix="cir-lib-kernel-") as tmp:
        spec_dir = Path(tmp) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        env_path = os.pathsep.join([str(PROJECT_ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
        try:  # ipykernel's own spec for this interpreter (it carries the transport-encryption metadata)
            from ipykernel.kernelspec import get_kernel_dict

            spec = dict(get_kernel_dict())
        except ImportError:
            spec = {"language": "python", "metadata": {}}
        spec.update({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "cir-lib (reproduce)",
            "env": {"PYTHONPATH": env_path},
        })
        (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
        old = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.pathsep.join([tmp] + ([old] if old else []))
        try:
            yield KERNEL_NAME
        finally:
            if old is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = old


# --------------------------------------------------------------------------- running


def profile_dir(results_dir: str | os.PathLike, profile: str) -> Path:
    """`<results_dir>/<profile>`, where everything of a profile's run goes."""
    return Path(results_dir).expanduser().resolve() / profile


def _failure_message(notebook: str, output: Path, err: Exception) -> str:
    cell = getattr(err, "cell_index", None)
    ename = getattr(err, "ename", type(err).__name__)
    evalue = getattr(err, "evalue", str(err))
    source = (getattr(err, "source", "") or "").strip().splitlines()
    first = source[0] if source else ""
    where = f"cell {cell}" if cell is not None else "a cell"
    return (f"notebook {notebook}.ipynb failed in {where} ({first!r}): {ename}: {evalue}\n"
            f"The executed notebook, with the full traceback, is {output}")


def run_notebook(name: str, output: Path, parameters: Mapping[str, Any], *, kernel_name: str,
                 cwd: Path = NOTEBOOK_DIR, cell_timeout_s: Optional[int] = None, log_output: bool = False,
                 progress: bool = True, source: Optional[Path] = None) -> float:
    """Execute one notebook of the series through papermill; PipelineError names the failing cell.

    Args:
        name: the notebook's name ("01_stage1_finetune").
        output: where the executed notebook is written (also when a cell fails).
        parameters: values injected after the `parameters` cell.
        kernel_name: a kernelspec name (`pipeline_kernel()` yields one running this Python).
        cwd: the kernel's working directory.
        cell_timeout_s: per-cell timeout (None: none).
        log_output: stream the cells' output to the log.
        progress: papermill's progress bar.
        source: the notebook file (default: notebooks/<name>.ipynb).

    Returns:
        Seconds taken.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    source = Path(source) if source is not None else NOTEBOOK_DIR / f"{name}.ipynb"
    if not source.is_file():
        raise PipelineError(f"notebook {source} not found: run from a checkout of the project (notebooks/ "
                            "is not installed with the package)")
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(source), str(output), parameters=dict(parameters), kernel_name=kernel_name,
                            language="python", cwd=str(cwd), execution_timeout=cell_timeout_s, log_output=log_output,
                            progress_bar=progress, report_mode=False)
    except PapermillExecutionError as err:
        raise PipelineError(_failure_message(name, output, err)) from None
    except Exception as err:  # kernel died, timeout, missing kernel...
        raise PipelineError(f"notebook {name}.ipynb could not run: {type(err).__name__}: {err}\n"
                            f"(partial output in {output})") from err
    return time.perf_counter() - start


def reproduce(profile: str, data_root: Optional[str | os.PathLike] = None,
              results_dir: Optional[str | os.PathLike] = None, *, parameters: Optional[Mapping[str, Any]] = None,
              notebooks: Sequence[str] = NOTEBOOKS, log_output: bool = False, progress: bool = True) -> dict:
    """Run the notebook series for one profile; return where every product is.

    Args:
        profile: "smoke", "mini" or "paper" (`PROFILES`).
        data_root: the data folder; default for smoke / mini: `data/<profile>` under the project
            (generated when absent); required for paper.
        results_dir: the results folder (default: results/ under the project); everything goes
            under `<results_dir>/<profile>/`.
        parameters: overrides of the notebooks' parameters (e.g. {"stage1_epochs": 3,
            "recipes": {"fashioniq": "paper-rn50x4-fashioniq", "cirr": "paper-rn50x4-cirr"}}).
        notebooks: which notebooks to run (default: all five, in order).
        log_output: stream the cells' output to the log.
        progress: show papermill's per-cell progress bar.

    Returns:
        {"profile", "data_root", "results", "executed": {notebook: path}, "seconds": {notebook: s},
         "tables": [paths], "figures": [paths], "total_seconds"}.

    Raises:
        PipelineError: a missing input (paper profile), or the first failing notebook, naming the
            notebook, the cell and the error.

    Example:
        >>> reproduce("paper", data_root="/data/cir")
    """
    prof = get_profile(profile)
    root = resolve_data_root(prof, data_root)
    out = profile_dir(PROJECT_ROOT / "results" if results_dir is None else results_dir, prof.name)
    params = prof.notebook_parameters(root, out)
    unknown = set(parameters or {}) - set(params)
    if unknown:
        raise ConfigError(f"unknown notebook parameter(s) {sorted(unknown)}; known: {', '.join(sorted(params))}")
    params.update(parameters or {})
    params["datasets"] = list(params["recipes"]) if "datasets" not in (parameters or {}) else list(params["datasets"])
    recipes = {d: params["recipes"][d] for d in params["datasets"]}
    preflight(prof, root, recipes, params.get("pretrained"))
    bad = [n for n in notebooks if n not in NOTEBOOKS]
    if bad:
        raise ConfigError(f"unknown notebook(s) {bad}; the series is {', '.join(NOTEBOOKS)}")
    executed, seconds = {}, {}
    start = time.perf_counter()
    with pipeline_kernel() as kernel:
        for name in [n for n in NOTEBOOKS if n in notebooks]:
            target = out / "executed" / f"{name}.ipynb"
            logger.info("running %s (profile %s)", name, prof.name)
            seconds[name] = run_notebook(name, target, params, kernel_name=kernel,
                                         log_output=log_output, progress=progress)
            executed[name] = target
            logger.info("%s done in %.1f s", name, seconds[name])
    summary = {
        "profile": prof.name,
        "data_root": root,
        "results": out,
        "executed": executed,
        "seconds": seconds,
        "total_seconds": time.perf_counter() - start,
        "tables": sorted((out / "tables").glob("*")) if (out / "tables").is_dir() else [],
        "figures": sorted((out / "figures").glob("*")) if (out / "figures").is_dir() else [],
    }
    _write_summary(summary)
    return summary


def _write_summary(summary: dict) -> None:
    """reproduce_summary.json: what this call ran, with paths relative to the profile's results folder."""
    out = Path(summary["results"])

    def rel(p):
        try:
            return str(Path(p).relative_to(out))
        except ValueError:
            return str(p)

    record = {
        "profile": summary["profile"],
        "all_notebooks": list(summary["executed"]) == list(NOTEBOOKS),  # False: this call ran only some
        "data_root": str(summary["data_root"]),
        "seconds": {k: round(v, 1) for k, v in summary["seconds"].items()},
        "total_seconds": round(summary["total_seconds"], 1),
        "executed": {k: rel(v) for k, v in summary["executed"].items()},
        "tables": [rel(p) for p in summary["tables"]],
        "figures": [rel(p) for p in summary["figures"]],
    }
    (out / "reproduce_summary.json").write_text(json.dumps(record, indent=2) + "\n")


def format_summary(summary: dict) -> str:
    """A human-readable account of what `reproduce` produced and where."""
    out = Path(summary["results"])

    def rel(p):
        try:
            return str(Path(p).relative_to(Path.cwd()))
        except ValueError:
            return str(p)

    lines = [f"profile {summary['profile']}: {len(summary['executed'])} notebook(s) in "
             f"{summary['total_seconds']:.0f} s (data root {rel(summary['data_root'])})"]
    for name, secs in summary["seconds"].items():
        lines.append(f"  {name:<22} {secs:7.1f} s  -> {rel(summary['executed'][name])}")
    if summary["tables"]:
        lines.append("tables:")
        lines += [f"  {rel(p)}" for p in summary["tables"]]
    if summary["figures"]:
        lines.append("figures:")
        lines += [f"  {rel(p)}" for p in summary["figures"]]
    lines.append(f"everything else (runs, metrics, caches) under {rel(out)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _run(args) -> int:
    overrides = {}
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        overrides[key.strip()] = _parse_value(value.strip())
    summary = reproduce(args.profile, args.data_root, args.results, parameters=overrides,
                        log_output=args.log_output)
    print(format_summary(summary))
    return 0


def add_commands(subparsers) -> None:
    """Add `reproduce` to the cir-lib command line."""
    p = subparsers.add_parser(
        "reproduce",
        help="run the five notebooks through papermill: data, stage 1, Combiner, tables, figures",
        description="Run notebooks/00..04 in order through papermill for one profile; executed notebooks "
        "go to RESULTS/<profile>/executed/, tables to RESULTS/<profile>/tables/, figures to "
        "RESULTS/<profile>/figures/. Profiles: " + "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values()),
    )
    p.add_argument("--profile", choices=list(PROFILES), default="mini", help="what to run (default: mini)")
    p.add_argument("--data-root", default=None,
                   help="data folder (smoke/mini: default data/<profile>, generated when absent; paper: required)")
    p.add_argument("--results", default=None, help="results folder (default: results/ under the project)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a notebook parameter (JSON value), e.g. --set stage1_epochs=3; repeatable")
    p.add_argument("--log-output", action="store_true", help="stream the notebooks' cell output to the log")
    p.set_defaults(func=_run)
