"""`reproduce`: run the five notebooks in order through papermill, for one profile.

Everything a run writes goes under `<results>/<profile>/`: the executed notebooks in `executed/`,
tables in `tables/`, figures in `figures/`, training runs in `runs/`, metrics in `metrics/`
(results/README.md lists which notebook writes which file). Profiles: `cir_lib.profiles`.

Example:
    >>> summary = reproduce("smoke", results_dir="/tmp/results")
    >>> print(format_summary(summary))
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import papermill as pm
from jupyter_client import KernelManager
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.log import logger as pm_logger
from papermill.exceptions import PapermillExecutionError

import cir_lib
from cir_lib.progress import ENV_VAR as PROGRESS_ENV_VAR
from cir_lib.constants import DATASETS, STAGES
from cir_lib.errors import CirError, ConfigError, PipelineError
from cir_lib.locks import folder_lock
from cir_lib.profiles import get_profile, resolve_data_root
from cir_lib.project import project_root, relative_to_project
from cir_lib.recipes import recipe_setting_hint, resolve_pretrained
from cir_lib.run_configs import training_config
from cir_lib.settings import Settings, resolve
from cir_lib.storage import os_error_in, storage_error, writing
from cir_lib.datasets import get_dataset

logger = logging.getLogger(__name__)

NOTEBOOKS = ("00_data_prep", "01_stage1_finetune", "02_combiner_training", "03_evaluation", "04_qualitative")
KERNEL_NAME = "cir-lib-reproduce"  # written to a temporary folder for each reproduce() call
SERIES_ENGINE = "cir-lib-series"  # the papermill engine that runs the series in one kernel (SeriesKernelEngine)


def notebook_dir() -> Path:
    """The project's notebooks/ (`cir_lib.project.project_root`: found from the working directory)."""
    return project_root() / "notebooks"


def missing_real_data(data_root: Path, datasets: Sequence[str]) -> list[str]:
    """What a real data root lacks for training and validation: dataset folders and annotation files."""
    from cir_lib.data import annotation_files  # here: torch (measured: a mistyped --set is refused in 2 s, not 7)

    missing: list[str] = []
    if not data_root.is_dir():
        return [f"the data root {data_root} (no such folder)"]
    for dataset in datasets:
        ds = get_dataset(dataset)
        folder = data_root / ds.folder
        if not folder.is_dir():
            missing.append(f"{folder} (the {dataset} dataset folder)")
            continue
        for split, category in ds.split_groups(("train", "val")):
            for path in annotation_files(data_root, dataset, split, category):
                if not path.is_file():
                    missing.append(str(path))
        if not ds.dataset_present(folder):
            missing.append(f"{ds.image_folders_text(folder)} (the {ds.title} images)")
    return missing


def network_reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 3.0) -> bool:
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
    import open_clip  # here: torch (measured: a mistyped --set is refused in 2 s, not 7)

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


def missing_images(data_root: Path, datasets: Sequence[str], limit: int = 5) -> list[str]:
    """Problems for the images the training and validation splits list but the data root lacks
    (existence only: `cir-lib check-data` also decodes them)."""
    from cir_lib.data import read_annotations  # here: torch (measured: a mistyped --set is refused in 2 s, not 7)

    problems = []
    for dataset in datasets:
        absent: list = []
        for split, category in get_dataset(dataset).split_groups(("train", "val")):
            try:
                annotations = read_annotations(data_root, dataset, split, category)
            except CirError:
                continue  # an annotation problem: missing_real_data / check-data name it
            absent += [p for p in annotations.image_paths if not Path(p).is_file()]
        if absent:
            shown = ", ".join(str(p) for p in absent[:limit])
            problems.append(f"{len(absent)} {dataset} images of the train and val splits (e.g. {shown})")
    return problems


def training_configs(settings: Settings) -> dict:
    """Every training config the series will run, resolved and checked once (`run_configs.training_config`):
    an unknown recipe, dataset or field, or a value out of range, is refused before any notebook runs.

    Returns:
        {(stage, dataset, backbone): config} (seed 0's; the seeds differ by their seed only).
    """
    for dataset in settings.datasets:
        if dataset not in DATASETS:
            raise PipelineError(f"unknown dataset {dataset!r} in the recipes; valid: {', '.join(DATASETS)}")
    return {(stage, dataset, backbone): training_config(settings, stage, dataset, backbone=backbone)
            for backbone in settings.backbones for dataset in settings.datasets for stage in STAGES}


def preflight(settings: Settings, *, dry_run: bool = False) -> None:
    """Refuse early, naming everything missing: real data folders, annotation files and images,
    OpenAI weights; and every training config checked (`training_configs`). Mini profiles need no
    data (they generate their data and pretrain their backbone).

    Args:
        settings: the series' resolved settings (`cir_lib.settings.resolve`).
        dry_run: the capped dry run: only the capped subset's images are needed (the notebooks name
            a missing one).
    """
    configs = training_configs(settings)
    profile, data_root = settings.profile_spec, settings.data_root
    if profile.mini_preset is not None:
        return
    datasets = sorted(settings.datasets)
    problems = missing_real_data(data_root, datasets)
    if not problems and not dry_run and not settings.skip_missing:
        problems += missing_images(data_root, datasets)
    needed = sorted({cfg.backbone for (stage, _, _), cfg in configs.items()
                     if stage == "finetune" and resolve_pretrained(cfg.pretrained, data_root) == "openai"})
    uncached = [bb for bb in needed if openai_weights_location(bb) is None]
    if uncached and not network_reachable():
        for bb in uncached:
            problems.append(f"OpenAI's {bb} weights: not in open_clip's cache (Hugging Face hub cache or "
                            "~/.cache/clip) and the network is unreachable; connect once, or copy the cache "
                            "from a machine that has it (or --set pretrained=FILE)")
    if problems:
        listing = "\n  - ".join(problems)
        raise PipelineError(
            f"profile {profile.name!r} cannot start; missing:\n  - {listing}\n"
            f"Get FashionIQ and CIRR as README 'Running the paper profile' says, lay them out under the data "
            f"root, and check them with `cir-lib check-data --data-root {data_root}`. Missing images can be "
            "skipped and counted (--set skip_missing=true); `--dry-run` checks the path on a capped subset.")


# --------------------------------------------------------------------------- kernel


@contextlib.contextmanager
def pipeline_kernel() -> Iterator[str]:
    """A kernelspec that runs this very Python (the one running `reproduce`), for papermill.

    It is written to a temporary folder put first on JUPYTER_PATH, so a user-level `python3`
    kernelspec that points at another interpreter cannot be picked up by mistake. The kernel's
    kernel imports the cir_lib that runs `reproduce` (a checkout's, run from source or installed with
    -e, comes first on its PYTHONPATH; an installed one is on the interpreter's own path), wherever
    the notebooks are.

    Yields:
        The kernel name to pass to papermill.
    """
    with tempfile.TemporaryDirectory(prefix="cir-lib-kernel-") as tmp:
        spec_dir = Path(tmp) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        env_path = os.pathsep.join(_library_path() + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
        try:  # ipykernel's own spec for this interpreter (it carries the transport-encryption metadata)
            from ipykernel.kernelspec import get_kernel_dict

            spec = dict(get_kernel_dict())
        except ImportError:
            spec = {"language": "python", "metadata": {}}
        spec.update({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "cir-lib (reproduce)",
            # papermill stores the kernel's stderr in the executed notebook: final progress lines only
            "env": {"PYTHONPATH": env_path, PROGRESS_ENV_VAR: "final"},
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


def _library_path() -> list[str]:
    """[the checkout holding the running cir_lib] when it runs from a checkout, else [] (installed)."""
    source = Path(cir_lib.__file__).resolve().parents[1]
    return [str(source)] if (source / "pyproject.toml").is_file() else []


# ----------------------------------------------------------------- one kernel for the series

# Importing the library in a fresh kernel (torch, open_clip and torchvision's torch._dynamo, sympy,
# pandas, matplotlib) takes about 17 s on two CPU cores, in each of the five notebooks: a quarter of a
# `make reproduce` on the mini profile. The series therefore runs in one kernel, started once, whose
# namespace is reset before each notebook (IPython's `reset(new_session=True)`: no variable of a
# notebook reaches the next, and execution counts start at 1 again): the modules stay imported. A
# notebook that would lean on another's variables fails here as it would alone. `one_kernel=False`
# (`reproduce`) starts a kernel per notebook instead.
RESET_NAMESPACE = "get_ipython().reset(new_session=True)"


class _SeriesClient(PapermillNotebookClient):
    """papermill's client on the series' running kernel: the namespace reset first, and the kernel
    left running (only this notebook's channels are closed) when the notebook ends."""

    def papermill_execute_cells(self):
        reply = self.wait_for_reply(self.kc.execute(RESET_NAMESPACE, silent=True, store_history=False))
        if reply is None or reply.get("content", {}).get("status") != "ok":
            raise PipelineError(f"could not reset the series kernel's namespace: {reply and reply.get('content')}")
        super().papermill_execute_cells()

    def execute(self, **kwargs):
        try:
            return super().execute(**kwargs)
        finally:
            if self.kc is not None:
                self.kc.stop_channels()
                self.kc = None


class SeriesKernelEngine(NBClientEngine):
    """The papermill engine of `reproduce`: executes a notebook on the kernel manager `km` it is given
    (one kernel for the series), with papermill's parameters, errors and output as usual."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None, stderr_file=None,
                                 start_timeout=60, execution_timeout=None, km=None, **kwargs):
        if km is None:  # no series kernel: papermill's own engine, one kernel for this notebook
            return super().execute_managed_notebook(nb_man, kernel_name, log_output=log_output,
                                                    stdout_file=stdout_file, stderr_file=stderr_file,
                                                    start_timeout=start_timeout,
                                                    execution_timeout=execution_timeout, **kwargs)
        kwargs.pop("input_path", None)
        client = _SeriesClient(nb_man, km=km, timeout=execution_timeout, startup_timeout=start_timeout,
                               kernel_name=kernel_name, log=pm_logger, log_output=log_output,
                               stdout_file=stdout_file, stderr_file=stderr_file)
        return client.execute()


papermill_engines.register(SERIES_ENGINE, SeriesKernelEngine)


@contextlib.contextmanager
def series_kernel(kernel_name: str, cwd: Path) -> Iterator[KernelManager]:
    """One running kernel (of `pipeline_kernel`'s spec) in `cwd` for the whole series; shut down at
    the end, also when a notebook fails or the user interrupts."""
    km = KernelManager(kernel_name=kernel_name)
    km.start_kernel(cwd=str(cwd))
    try:
        yield km
    finally:
        km.shutdown_kernel(now=True)


# --------------------------------------------------------------------------- running


def notebook_parameters(name: str, source: Optional[Path] = None) -> dict:
    """The parameters a notebook's `parameters` cell declares, as papermill reads them.

    Args:
        name: a notebook of the series ("03_evaluation").
        source: the file (default: notebooks/<name>.ipynb).

    Returns:
        {parameter name: papermill's record (default, inferred type, comment)}.
    """
    source = Path(source) if source is not None else notebook_dir() / f"{name}.ipynb"
    if not source.is_file():
        raise PipelineError(f"notebook {source} not found: run from a checkout of the project (notebooks/ "
                            "is not installed with the package)")
    return pm.inspect_notebook(str(source))


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
                 cwd: Optional[Path] = None, cell_timeout_s: Optional[int] = None, log_output: bool = False,
                 progress: bool = True, source: Optional[Path] = None, km: Optional[KernelManager] = None) -> float:
    """Execute one notebook of the series through papermill; PipelineError names the failing cell.

    Args:
        name: the notebook's name ("01_stage1_finetune").
        output: where the executed notebook is written (also when a cell fails).
        parameters: values injected after the `parameters` cell.
        kernel_name: a kernelspec name (`pipeline_kernel()` yields one running this Python).
        cwd: the kernel's working directory (default: the project's notebooks/).
        cell_timeout_s: per-cell timeout (None: none).
        log_output: stream the cells' output to the log.
        progress: papermill's progress bar.
        source: the notebook file (default: notebooks/<name>.ipynb).
        km: the series' running kernel (`series_kernel`; its working directory is its own, `cwd` is
            not used), reset before the notebook; None: papermill starts a kernel for this notebook.

    Returns:
        Seconds taken.
    """
    source = Path(source) if source is not None else notebook_dir() / f"{name}.ipynb"
    if not source.is_file():
        raise PipelineError(f"notebook {source} not found: run from a checkout of the project (notebooks/ "
                            "is not installed with the package)")
    with writing(output.parent, "executed-notebook folder"):
        output.parent.mkdir(parents=True, exist_ok=True)
    # Executed into a partial file, moved over `output` only when the notebook finished: an
    # interrupted or failing run leaves the previous executed notebook in place.
    partial = output.with_name(f".partial-{output.name}")
    failed = output.with_name(f"{output.stem}.failed.ipynb")
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(source), str(partial), parameters=dict(parameters), kernel_name=kernel_name,
                            language="python", cwd=str(cwd if cwd is not None else notebook_dir()),
                            execution_timeout=cell_timeout_s, log_output=log_output, progress_bar=progress,
                            report_mode=False, engine_name=SERIES_ENGINE, km=km)
    except PapermillExecutionError as err:
        _keep_failed(partial, failed)
        raise PipelineError(_failure_message(name, failed, err)) from None
    except BaseException as err:  # kernel died, timeout, missing kernel, Ctrl-C, a full disk...
        _keep_failed(partial, failed)
        if isinstance(err, KeyboardInterrupt):
            raise
        if os_error_in(err) is not None:
            raise storage_error(os_error_in(err), output, "executed notebook") from err
        raise PipelineError(f"notebook {name}.ipynb could not run: {type(err).__name__}: {err}\n"
                            f"(partial output in {failed})") from err
    with writing(partial, "executed notebook"):
        _portable_metadata(partial)
    if output.is_file() and same_results(output, partial):
        partial.unlink()  # a rerun that reused the runs: keep the notebook of the run that made them
        logger.info("%s: same results as %s, which is kept", name, output.name)
    else:
        os.replace(partial, output)
    if failed.exists():
        failed.unlink()  # the failure it recorded is fixed: this run finished
    return time.perf_counter() - start


def _keep_failed(partial: Path, failed: Path) -> None:
    if partial.exists():
        os.replace(partial, failed)


def _results_of(path: Path) -> list:
    """What an executed notebook shows, without what changes from run to run: cell sources, and
    for each output its images as they are and its text with digits masked and spacing collapsed
    (a column's width follows its numbers); log and progress lines (streams), timings and execution
    counts left out. A training time ("52.1 s") and "reused" read the same: a rerun that reuses the
    runs shows the same results as the run that trained them (whose notebook is kept)."""
    def masked(text: str) -> str:
        text = re.sub(r"(?<![\w.])(?:\d+\.\d+ s|reused)(?!\w)", "<training>", text)  # notebook.run_summary
        return re.sub(r"\s+", " ", re.sub(r"\d+", "0", text))

    nb = json.loads(path.read_text(encoding="utf-8"))
    shown = []
    for cell in nb.get("cells", []):
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                continue
            data = out.get("data", {})
            outputs.append({k: (masked("".join(v) if isinstance(v, list) else str(v)) if k.startswith("text/") else v)
                            for k, v in data.items()})
            if out.get("output_type") == "error":
                outputs.append(out.get("ename"))
        shown.append(("".join(cell.get("source", [])), outputs))
    return shown


def same_results(old: Path, new: Path) -> bool:
    """Whether two executed notebooks show the same results (`_results_of`): the figures
    byte for byte, the tables and text up to their digits (the tables' numbers are compared byte
    for byte in results/<profile>/tables/)."""
    try:
        return _results_of(old) == _results_of(new)
    except (OSError, ValueError):
        return False


def _portable_metadata(path: Path) -> None:
    """papermill records its input and output paths: keep them relative to the project root, so an
    executed notebook holds no absolute path of the machine that ran it."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    meta = nb.get("metadata", {}).get("papermill", {})
    for key in ("start_time", "end_time", "duration"):  # clock times: every rerun would differ
        meta.pop(key, None)
    for cell in nb.get("cells", []):
        for key in ("papermill", "execution"):
            cell.get("metadata", {}).pop(key, None)
    for key in ("input_path", "output_path"):
        if meta.get(key):
            p = Path(meta[key])
            shown = relative_to_project(p)
            meta[key] = shown if not os.path.isabs(shown) else p.name
    if meta.get("output_path", "").split("/")[-1].startswith(".partial-"):
        meta["output_path"] = meta["output_path"].replace(".partial-", "")
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def recipe_settings(parameters: Mapping[str, Any]) -> dict:
    """`reproduce`'s parameters with the dotted recipe fields (`--set combiner.lr=2e-4`) gathered into
    the notebooks' `recipe_overrides` knob (beside one given as a whole: a field set twice is refused).

    Example:
        >>> recipe_settings({"stage1_epochs": 3, "combiner.lr": 2e-4})
        {'stage1_epochs': 3, 'recipe_overrides': {'combiner.lr': 0.0002}}
    """
    out = {k: v for k, v in parameters.items() if "." not in str(k)}
    dotted = {k: v for k, v in parameters.items() if "." in str(k)}
    if not dotted:
        return out
    given = out.get("recipe_overrides") or {}
    if not isinstance(given, Mapping):
        raise ConfigError(f"recipe_overrides must be a mapping such as {{\"combiner.lr\": 2e-4}}, got {given!r}")
    twice = sorted(set(given) & set(dotted))
    if twice:
        raise ConfigError(f"{twice} set both as --set KEY=VALUE and in recipe_overrides: set each once")
    out["recipe_overrides"] = {**given, **dotted}
    return out


def notebook_name(text: str) -> str:
    """The series notebook named by `text`: its full name, its number ("03") or a unique prefix."""
    matches = [n for n in NOTEBOOKS if n == text or n.startswith(str(text))]
    if len(matches) != 1:
        raise ConfigError(f"no single notebook named {text!r}; the series is {', '.join(NOTEBOOKS)} "
                          "(give its number, e.g. --from 03)")
    return matches[0]


def reproduce(profile: str, data_root: Optional[str | os.PathLike] = None,
              results_dir: Optional[str | os.PathLike] = None, *, parameters: Optional[Mapping[str, Any]] = None,
              notebooks: Sequence[str] = NOTEBOOKS, start: Optional[str] = None, fresh: bool = False,
              dry_run: bool = False, log_output: bool = True, progress: bool = True, one_kernel: bool = True) -> dict:
    """Run the notebook series for one profile; return where every product is.

    Args:
        profile: "smoke", "mini", "mini-x2" or "paper" (`PROFILES`).
        data_root: the data folder; default for smoke / mini: `data/<profile>` under the project
            (generated when absent); required for paper.
        results_dir: the results folder (default: results/ under the project); everything goes
            under `<results_dir>/<profile>/`.
        parameters: values for the notebooks' parameters (e.g. {"stage1_epochs": 3,
            "recipes": {"fashioniq": "paper-rn50x4-fashioniq", "cirr": "paper-rn50x4-cirr"}}); each
            notebook receives only the ones its `parameters` cell declares (with `profile`, and
            `data_root` / `results_dir` when given here); unset ones take the profile's values.
        notebooks: which notebooks to run (default: all five, in order).
        start: run the series from this notebook on ("03" or "03_evaluation"): the earlier ones'
            products are read as they are (a late failure does not cost the training again).
        fresh: the training notebooks delete their earlier runs and train again. Without it, finished
            runs of the same settings are reused and interrupted ones resumed; runs of other settings
            are refused by name (never deleted unasked).
        dry_run: (paper) every notebook on the real data root and backbones, with a few steps per
            stage and capped splits, results under `<results_dir>/paper-dry-run/`, tables marked.
        log_output: stream the cells' output (the kit's log lines, final progress lines) to the log.
        progress: show papermill's per-cell progress bar.
        one_kernel: run the notebooks in one kernel, its namespace reset before each (the library
            is imported once: about 17 s a notebook on two CPU cores); False: a kernel per notebook.

    Returns:
        {"profile", "data_root", "results", "executed": {notebook: path}, "seconds": {notebook: s},
         "tables": [paths], "figures": [paths], "total_seconds"}.

    Raises:
        ConfigError: an unknown profile or notebook, or a parameter no notebook declares (named).
        PipelineError: a missing input (paper profile), or the first failing notebook, naming the
            notebook, the cell and the error.

    Example:
        >>> reproduce("paper", data_root="/data/cir")
    """
    prof = get_profile(profile)
    bad = [n for n in notebooks if n not in NOTEBOOKS]
    if bad:
        raise ConfigError(f"unknown notebook(s) {bad}; the series is {', '.join(NOTEBOOKS)}")
    if start is not None:
        first = notebook_name(start)
        notebooks = [n for n in notebooks if NOTEBOOKS.index(n) >= NOTEBOOKS.index(first)]
    root = resolve_data_root(prof, data_root)
    if dry_run and prof.mini_preset is not None:
        raise ConfigError(f"--dry-run checks the paper profile's path before GPU-days; profile {prof.name!r} "
                          "is already small: run it as it is")
    out = profile_dir(project_root() / "results" if results_dir is None else results_dir,
                      prof.name + ("-dry-run" if dry_run else ""))
    overrides = recipe_settings(parameters or {})
    declared = {name: notebook_parameters(name) for name in NOTEBOOKS}
    known = set().union(*declared.values()) - {"profile"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        hint = " (choose the profile with --profile)" if "profile" in unknown else ""
        fields = [recipe_setting_hint(k) for k in unknown if recipe_setting_hint(k)]
        if fields:  # a recipe field: named by its stage
            hint += f"; a recipe field is set as <stage>.<field>{fields[0]}"
        raise ConfigError(f"unknown notebook parameter(s) {unknown}{hint}; the notebooks declare: "
                          f"{', '.join(sorted(known))}, and any recipe field as <stage>.<field> "
                          "(e.g. --set combiner.lr=2e-4)")
    values = {"profile": prof.name, "interactive": False}  # papermill has no widget frontend: 04's static view
    if data_root is not None:
        values["data_root"] = str(root)
    if results_dir is not None:
        values["results_dir"] = str(out)
    values.update(overrides)
    if fresh:
        if "fresh" in overrides and not overrides["fresh"]:
            raise ConfigError("--fresh contradicts --set fresh=false")
        values["fresh"] = True
    if dry_run:
        values["dry_run"] = True
        values.setdefault("results_dir", str(out))
    # the notebooks' own resolution, once here: a mistake in a knob or a recipe field is refused now
    settings = resolve(prof, None, **{k: v for k, v in values.items() if k != "profile"})
    # One series per results folder: a second `reproduce` on it is refused at once, naming the first.
    with folder_lock(out, "results folder"):
        preflight(settings, dry_run=dry_run)
        executed, seconds = {}, {}
        start = time.perf_counter()
        with pipeline_kernel() as kernel, contextlib.ExitStack() as stack:
            km = stack.enter_context(series_kernel(kernel, notebook_dir())) if one_kernel else None
            for name in [n for n in NOTEBOOKS if n in notebooks]:
                target = out / "executed" / f"{name}.ipynb"
                logger.info("running %s (profile %s)", name, prof.name)
                injected = {k: v for k, v in values.items() if k in declared[name]}  # only what it declares
                seconds[name] = run_notebook(name, target, injected, kernel_name=kernel,
                                             log_output=log_output, progress=progress, km=km)
                executed[name] = target
                logger.info("%s done in %.1f s", name, seconds[name])
        summary = _series_summary(prof.name, root, out, executed, seconds, start)
        _write_summary(summary)
    return summary


def _series_summary(profile: str, root: Path, out: Path, executed: dict, seconds: dict, start: float) -> dict:
    return {
        "profile": profile,
        "data_root": root,
        "results": out,
        "executed": executed,
        "seconds": seconds,
        "total_seconds": time.perf_counter() - start,
        "tables": sorted((out / "tables").glob("*")) if (out / "tables").is_dir() else [],
        "figures": sorted((out / "figures").glob("*")) if (out / "figures").is_dir() else [],
    }


def _write_summary(summary: dict) -> None:
    """reproduce_summary.json: what this call ran, with paths relative to the profile's results folder
    (the same for a rerun, so it stays byte-identical); timing.json: the seconds per notebook (each run's
    own, not tracked by git)."""
    from cir_lib.runs import atomic_write_text  # here: torch (measured: a mistyped --set is refused in 2 s, not 7)

    out = Path(summary["results"])

    def rel(p):
        try:
            return str(Path(p).relative_to(out))
        except ValueError:
            return str(p)

    record = {
        "profile": summary["profile"],
        "all_notebooks": list(summary["executed"]) == list(NOTEBOOKS),  # False: this call ran only some
        "data_root": _project_relative(summary["data_root"]),
        "executed": {k: rel(v) for k, v in summary["executed"].items()},
        "tables": [rel(p) for p in summary["tables"]],
        "figures": [rel(p) for p in summary["figures"]],
    }
    atomic_write_text(out / "reproduce_summary.json", json.dumps(record, indent=2) + "\n")
    timing = {"seconds": {k: round(v, 1) for k, v in summary["seconds"].items()},
              "total_seconds": round(summary["total_seconds"], 1)}
    atomic_write_text(out / "timing.json", json.dumps(timing, indent=2) + "\n")


def _project_relative(path) -> str:
    return relative_to_project(path)


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
