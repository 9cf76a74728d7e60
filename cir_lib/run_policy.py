"""What to do with a run folder before training into it: the one policy of the notebooks and the
command line.

    decision = decide("finetune", run_dir, config, data_root)   # "fresh" | "reuse" | "resume" | "refuse"
    result = train_or_reuse("finetune", data_root, config, run_dir)

- "fresh": the folder is absent or empty: train;
- "reuse": it holds a finished run of the same config and inputs: nothing is trained, the run is read
  back from its history;
- "resume": it holds an unfinished run of the same config (interrupted): training continues from its
  last.pt (a folder holding the records but no checkpoint, as a fresh clone has, trains in place);
- "refuse": it holds a run of other settings (the message names each difference), or files that are
  not a run: nothing is deleted; `fresh=True` (`--fresh`) deletes the run first and trains again.

"The same config" ignores the fields that do not change the numbers (`runs.RESUMABLE_CHANGES`:
epochs, device, threads, ...); a run with fewer epochs than asked is resumed, not reused. The
inputs are the data root, the annotation files and, for a Combiner, its stage-1 run's weights.
`notebook.train_or_reuse` (notebooks 01 and 02) and `cir-lib finetune` / `train-combiner` call
`train_or_reuse`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cir_lib.backbone import load_backbone
from cir_lib.constants import STAGES
from cir_lib.data import annotation_fingerprint
from cir_lib.errors import ConfigError, PipelineError, option_name
from cir_lib.finetune import finetune
from cir_lib.locks import LOCK_FILE, folder_lock
from cir_lib.project import portable, relative_to_project, resolve_recorded
from cir_lib.rebuild import run_composer
from cir_lib.runs import (
    BEST_FILE,
    CONFIG_FILE,
    LAST_FILE,
    RESUMABLE_CHANGES,
    atomic_write_text,
    check_output_folder,
    check_run_folder,
    jsonable,
    read_history,
    read_run_config,
)
from cir_lib.train_combiner import train_combiner
from cir_lib.training import RunResult

logger = logging.getLogger(__name__)

ACTIONS = ("fresh", "reuse", "resume", "refuse")
_NOT_CONTENT = (LOCK_FILE,)  # what a folder may hold and still count as empty (the lock of a writer)


@dataclass(frozen=True)
class RunDecision:
    """What `decide` found in a run folder and what training into it does."""

    action: str  # one of ACTIONS
    run_dir: Path  # the run folder
    message: str  # one line: what the folder holds and what happens (refuse: what differs, what to do)
    result: Optional[RunResult] = None  # reuse: the finished run, read back from its history


def decide(stage: str, run_dir: str | os.PathLike, config, data_root: str | os.PathLike, *,
           clip_run: Optional[str | os.PathLike] = None, composer: str = "combiner") -> RunDecision:
    """Decide whether training `config` into `run_dir` trains afresh, reuses, resumes or is refused.

    Nothing is written or deleted. A folder that cannot hold the run (a file, read-only, another
    kind of run, an unsafe last.pt) raises at once, as training would.

    Args:
        stage: "finetune" or "combiner".
        run_dir: the run folder.
        config: the stage's config about to run.
        data_root: the data root it reads.
        clip_run: the stage-1 run folder a stage-2 composer trains on, or "zero-shot".
        composer: the registered composer a stage-2 run trains (`cir_lib.composers`).

    Returns:
        The `RunDecision`.

    Example:
        >>> decide("finetune", "results/mini/runs/cirr-finetune", config, "data/mini").action
        'reuse'
    """
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    run_dir = Path(run_dir)
    shown = relative_to_project(run_dir)
    check_run_folder(run_dir, stage, resume=True)  # a file, read-only, another kind, an unsafe last.pt
    if not run_dir.exists() or not [p for p in run_dir.iterdir() if p.name not in _NOT_CONTENT]:
        return RunDecision("fresh", run_dir, f"training {shown}")
    if not (run_dir / CONFIG_FILE).is_file():
        return RunDecision("refuse", run_dir, (
            f"{shown} is not a run folder ({CONFIG_FILE} is missing) but is not empty; nothing was deleted. "
            f"Move it away or choose another {option_name('results folder', '--out folder')}"))
    finished = _finished_result(run_dir, config)
    has_checkpoint = (run_dir / LAST_FILE).is_file() or (run_dir / BEST_FILE).is_file()
    problems = _differences(run_dir, config, data_root, clip_run, composer) if finished is not None or has_checkpoint else []
    if problems:
        what = "finished" if finished is not None else "unfinished"
        return RunDecision("refuse", run_dir, (
            f"{shown} holds a {what} run of other settings ({'; '.join(problems)}); nothing was deleted. "
            f"{option_name('Rerun with fresh=True (`cir-lib reproduce --fresh`, or --from the notebook with --fresh)', 'Pass --fresh')} "
            f"to delete it and train again, or choose another {option_name('results folder', '--out folder')}"))
    if finished is not None:
        return RunDecision("reuse", run_dir, (
            f"reusing the finished run {shown} (same settings; best epoch {finished.best_epoch}); "
            f"{option_name('fresh=True', '--fresh')} trains it again"), finished)
    if (run_dir / LAST_FILE).is_file():
        return RunDecision("resume", run_dir, f"resuming the unfinished run {shown} from its {LAST_FILE}")
    # e.g. a fresh clone: the records are committed, the checkpoints are not
    return RunDecision("resume", run_dir, f"training {shown} (its folder holds records but no checkpoint)")


def start_over(run_dir: str | os.PathLike) -> None:
    """Delete the run in a run folder, as `fresh=True` / `--fresh` asks (only a run folder: one holding
    config.json); the folder's lock, held by the caller, stays."""
    run_dir = Path(run_dir)
    if (run_dir / CONFIG_FILE).is_file():
        logger.info("fresh: deleting the earlier run %s as asked", relative_to_project(run_dir))
        for entry in run_dir.iterdir():
            if entry.name in _NOT_CONTENT:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def train_or_reuse(stage: str, data_root: str | os.PathLike, config, run_dir: str | os.PathLike, *,
                   clip_run: Optional[str | os.PathLike] = None, fresh: bool = False,
                   check_resume: bool = False, composer: str = "combiner") -> RunResult:
    """Train a stage into `run_dir`, keeping earlier work (`decide`): what notebooks 01 and 02 and
    `cir-lib finetune` / `train-combiner` call.

    Args:
        stage: "finetune" or "combiner".
        data_root: the data root.
        config: the stage's config (`notebook.training_config`, or the command line's recipe).
        run_dir: the run folder (`paths.run(dataset, stage, seed)`, or --out).
        clip_run: the stage-1 run folder a stage-2 composer trains on, or "zero-shot"
            (`cir_lib.rebuild.ZERO_SHOT`: the recipe's pretrained backbone).
        fresh: start over: a run in `run_dir` is deleted (as asked) and trained again.
        check_resume: (dry runs) train a new run's first epoch, then resume it from last.pt for the
            rest, so that the resume path is exercised too.
        composer: the registered composer a stage-2 run trains (`cir_lib.composers`).

    Returns:
        The `RunResult` (for a reused run: read from its history, `reused` True, seconds 0).

    Raises:
        PipelineError: the folder holds a run of other settings, or files that are not a run (the
            message names the difference; nothing is deleted).
    """
    check_output_folder(run_dir)  # a file is refused with its own message, before the lock
    # one writer per run folder from the decision on: a second process is refused at once, naming this one
    with folder_lock(run_dir, "run folder"):
        if fresh:
            check_run_folder(run_dir, stage, resume=True)  # never delete a folder holding another kind of run
            start_over(run_dir)
        decision = decide(stage, run_dir, config, data_root, clip_run=clip_run, composer=composer)
        if decision.action == "refuse":
            raise PipelineError(decision.message)
        logger.info("%s", decision.message)
        if decision.action == "reuse":
            _portable_record(decision.run_dir)
            return decision.result
        return _train(stage, data_root, config, decision.run_dir, clip_run, decision.action == "resume",
                      check_resume, composer)


def _train(stage: str, data_root, config, run_dir: Path, clip_run, resume: bool, check_resume: bool,
           composer: str) -> RunResult:
    if stage == "finetune":
        def fit(cfg, again):
            return finetune(data_root, cfg, run_dir, resume=again)
    else:
        def fit(cfg, again):
            return train_combiner(data_root, cfg, clip_run, run_dir, resume=again, composer=composer)
    if check_resume and not resume and config.epochs > 1:
        fit(dataclasses.replace(config, epochs=1), False)
        logger.info("dry run: resuming %s from last.pt for the remaining epochs", relative_to_project(run_dir))
        resume = True
    return fit(config, resume)


def _finished_result(run_dir: Path, config) -> Optional[RunResult]:
    """The RunResult of a run folder that finished `config.epochs` epochs (None when unfinished)."""
    if not (run_dir / BEST_FILE).is_file():
        return None
    history = read_history(run_dir)
    rows = history.to_dict("records") if hasattr(history, "to_dict") else list(history)
    if not rows or int(rows[-1]["epoch"]) < config.epochs:
        return None
    scored = [r for r in rows if r.get("score") == r.get("score") and r.get("score") is not None]
    best = max(scored, key=lambda r: r["score"]) if scored else rows[-1]  # first of the best, as training keeps
    metrics = {k: v for k, v in best.items() if "recall" in k}
    return RunResult(run_dir, int(best["epoch"]), float(best.get("score", float("nan"))), metrics, rows, 0.0, config,
                     reused=True)


def _differences(run_dir: Path, config, data_root, clip_run, composer: str = "combiner") -> list[str]:
    """How the run in `run_dir` differs from `config` on `data_root` (none: it may be reused or resumed)."""
    info = portable(read_run_config(run_dir))
    old, new = info.get("config", {}), portable(jsonable(dataclasses.asdict(config)))
    diffs = sorted(k for k in set(old) | set(new) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k))
    problems = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diffs]
    if info.get("data_root") and Path(resolve_recorded(info["data_root"])).resolve() != Path(data_root).resolve():
        problems.append(f"data root: {info['data_root']} -> {relative_to_project(data_root)}")
    if info.get("kind") == "combiner" and run_composer(info) != composer:
        problems.append(f"composer: {run_composer(info)!r} -> {composer!r}")
    dataset = new.get("dataset")
    recorded = (info.get("annotations") or {}).get("sha256")
    if dataset and recorded and annotation_fingerprint(data_root, dataset)["sha256"] != recorded:
        problems.append("the annotation files changed")
    if clip_run is not None and info.get("clip", {}).get("weights_key"):
        best = Path(clip_run) / BEST_FILE
        key = load_backbone(None, str(best)).weights_key if best.is_file() else None  # kit files name their model
        if key is not None and key != info["clip"]["weights_key"]:
            problems.append(f"its stage-1 run {relative_to_project(clip_run)} has other weights now")
    return problems


def _portable_record(run_dir: Path) -> None:
    """Rewrite a reused run's config.json with its paths under the project root made relative (runs
    recorded before records were portable); nothing else in it changes."""
    info = read_run_config(run_dir)
    moved = portable(info)
    if moved != info:
        logger.info("%s: paths in %s made relative to the project root", relative_to_project(run_dir), CONFIG_FILE)
        atomic_write_text(run_dir / CONFIG_FILE, json.dumps(moved, indent=2, default=str))
