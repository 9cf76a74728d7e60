"""The pieces of the training loop that both stages share: the run's result, mixed precision,
the finite-loss check, the optimizer, resuming from last.pt, and the end of an epoch (score the row,
record it, keep the best, checkpoint).

Both stages write a run folder (`cir_lib.runs`): config.json, history.csv, best.pt, last.pt.
Validation runs every `validate_every` epochs and after the last; `resume=True` continues from last.pt
and gives the numbers of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from cir_lib import runs
from cir_lib.datasets import get_dataset
from cir_lib.errors import ConfigError, TrainingError
from cir_lib.monitoring import TrainingMonitor
from cir_lib.progress import progress_bar
from cir_lib.selection import selection_score, selection_scores
from cir_lib.training_data import epoch_batches
from cir_lib.training_validation import format_metrics

logger = logging.getLogger(__name__)

RUN_CHECKPOINT_FORMAT = "cir_lib.run/1"  # marks last.pt files


@dataclass
class RunResult:
    """What a training call returns (everything is also in the run folder)."""

    run_dir: Path  # the run folder
    best_epoch: int  # epoch of best.pt (1-based)
    best_score: float  # its selection score (FashionIQ: (R@10 + R@50) / 2 averages; CIRR: mean of 7)
    best_metrics: dict  # its validation metrics (flat: "average_recall@10", "recall_subset@1", ...)
    history: list  # one dict per epoch (the rows of history.csv)
    seconds: float  # wall time of this call
    config: object = field(repr=False, default=None)  # the resolved config
    reused: bool = False  # True: a finished run read back from its folder (nothing trained by this call)




def autocast_factory(device: torch.device, amp: str):
    if device.type == "cuda" and amp != "none":
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return functools.partial(torch.autocast, device_type="cuda", dtype=dtype)
    return contextlib.nullcontext


def check_finite(loss: float, epoch: int, step: int, run, last_epoch: int) -> None:
    if math.isfinite(loss):
        return
    if last_epoch > 0:
        kept = f"the last good checkpoint {run.last_path} (epoch {last_epoch}) stays"
    else:
        kept = "no checkpoint was written yet"
    raise TrainingError(
        f"the training loss became {loss} at epoch {epoch}, step {step} (run {run.path}); "
        f"training stopped and {kept}. Lower the learning rate (--set lr=...), or on CUDA try "
        f"--set amp=bf16 / amp=none")


def optimizer_step(loss: torch.Tensor, optimizer, scaler=None, check: Optional[Callable[[float], None]] = None,
                   grad_scale: Optional[float] = None) -> float:
    """One optimization step on a batch's loss, as both stages (and `benchmarks/bench_gpu.py`) take it.

    Args:
        loss: the batch's loss (a scalar with a graph).
        optimizer: the stage's optimizer.
        scaler: a `torch.amp.GradScaler` (fp16 autocast): the loss is scaled for backward and steps with
            overflowing gradients are skipped; None: a plain backward and step.
        check: called with the loss value before any weight changes (`check_finite`).
        grad_scale: backward runs on loss * grad_scale (torchrun: the number of processes).

    Returns:
        The loss value (`loss.item()`, the step's one host sync).
    """
    value = loss.item()
    if check is not None:
        check(value)
    optimizer.zero_grad(set_to_none=True)
    scaled = loss * grad_scale if grad_scale is not None else loss
    if scaler is not None:
        scaler.scale(scaled).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        scaled.backward()
        optimizer.step()
    return value


def make_optimizer(cls, params, **kw):
    """The fused implementation where torch has it (CPU and CUDA): one kernel over all parameters.
    On the CPU it makes a cir-mini text-encoder step ~5x faster (the 6M-entry token embedding)."""
    params = list(params)
    try:
        return cls(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, **kw)


def due(epoch: int, config) -> bool:
    return epoch % config.validate_every == 0 or epoch == config.epochs


LAST_EVERY_SECONDS = 30.0  # at most this much training is lost to an interruption between validations


def last_due(run, epoch: int, metrics: Optional[dict], config) -> bool:
    """Whether this epoch writes last.pt: after every validation and the final epoch, and otherwise
    once LAST_EVERY_SECONDS have passed since the last write. Stage 2's epochs take a fraction of a
    second on the mini benchmark, where writing the composer and its optimizer after each of them was
    about 3 s of a 100-epoch run; an epoch of the paper's stage 1 takes minutes, so each one is kept.
    Resuming from an earlier last.pt replays the same batches (its RNG state is in it), so the run's
    result does not depend on which epochs were written."""
    if metrics is not None or epoch >= config.epochs:
        return True
    return run.last_saved_at is None or time.perf_counter() - run.last_saved_at >= LAST_EVERY_SECONDS


def finish_epoch(run, state: dict, row: dict, metrics: Optional[dict], t0: float, dataset: str, config,
                  epochs_bar, *, save_best, last: dict, monitor=None, lambdas=None) -> None:
    """The end of an epoch, shared by both stages: score the row, record it, keep the best, checkpoint.

    `save_best(extra, path)` writes a best checkpoint (see `keep_bests`) given the epoch's record; `last` is the
    stage's part of last.pt (models, optimizer, RNG), to which the config and `state` are added.
    `monitor` (a `cir_lib.monitoring.TrainingMonitor`) records the row (and stage 2's `lambdas`) for
    TensorBoard and gives the log line its throughput and time left.
    """
    epoch = row["epoch"]
    if metrics is not None:
        row.update(metrics)
        row["score"] = selection_score(dataset, metrics, getattr(config, "selection", "arithmetic"))
        if get_dataset(dataset).selection_means:  # the original keeps a best by each CIRR mean: record all
            row.update({f"score_{k}": v for k, v in selection_scores(dataset, metrics).items()})
    row["seconds"] = time.perf_counter() - t0
    state["history"].append(row)
    state["epoch"] = epoch
    if metrics is not None:
        keep_bests(run, state, row, metrics, dataset, config, save_best)
    if last_due(run, epoch, metrics, config):
        run.save_last({"format": RUN_CHECKPOINT_FORMAT, "config": dataclasses.asdict(config), **last, **state})
        run.last_saved_at = time.perf_counter()
    run.write_history(state["history"])
    live = monitor.end_epoch(row, lambdas) if monitor is not None else ""
    if run.writer:
        msg = f"epoch {epoch}/{config.epochs} loss {row['loss']:.4f}"
        if metrics is not None:
            msg += f" score {row['score']:.2f} ({format_metrics(metrics)})"
        logger.info("%s [%.1fs%s]", msg, row["seconds"], f"; {live}" if live else "")
        epochs_bar.set_postfix(loss=f"{row['loss']:.4f}", best=f"{state['best_score']:.2f}")


def train_epochs(run, config, dataset: str, state: dict, generator: torch.Generator, optimizer, *, num_queries: int,
                 num_variants: int, batch_size: int, start_epoch, validate, save_best, last_state,
                 desc: str, is_main: bool = True, end_epoch=None) -> None:
    """The training loop of both stages: epochs of seeded batches, one step per batch, validation when
    due, then `finish_epoch` (score, history, best and last checkpoints, monitoring).

    The stage-specific parts are passed in:

    - `start_epoch(epoch, batches) -> step`: prepares the epoch (train mode, image loaders) and
      returns `step(q_idx, v_idx, check) -> (loss value, queries in the batch)`, which runs one
      training step (`finetune.stage1_step`, `train_combiner.combiner_step`) with `check` as the
      finite-loss check;
    - `validate(epoch, monitor) -> (metrics or None, lambdas or None)`, called when the epoch is due;
    - `save_best(extra, path)` and `last_state() -> dict` (the stage's part of last.pt), as in
      `finish_epoch`; `end_epoch()` (e.g. a distributed barrier) after each epoch.

    `optimizer`'s learning rate goes to the monitor; `batch_size` is the global batch; `is_main` shows the progress bars on one process only.

    Example:
        >>> train_epochs(run, config, "cirr", state, generator, optimizer, num_queries=q, num_variants=1,
        ...              batch_size=config.batch_size, start_epoch=start, validate=validate,
        ...              save_best=save, last_state=last, desc="Combiner cirr")
    """
    epochs_bar = progress_bar(range(state["epoch"] + 1, config.epochs + 1), desc=desc, unit="epoch",
                              initial=state["epoch"], total=config.epochs, disable=not is_main)
    monitor = None
    for epoch in epochs_bar:
        t0 = time.perf_counter()
        # The whole epoch is drawn (the generator advances as in a full run), then cut for dry runs.
        batches = epoch_batches(num_queries, num_variants, batch_size, generator)[:config.max_steps_per_epoch]
        if monitor is None:
            monitor = TrainingMonitor(run, config, first_epoch=epoch, steps_per_epoch=len(batches))
        monitor.start_epoch(epoch)
        step_fn = start_epoch(epoch, batches)
        total, steps = 0.0, 0
        bar = progress_bar(batches, desc=f"epoch {epoch}/{config.epochs}", unit="batch", leave=False,
                           disable=not is_main)
        for step, (q_idx, v_idx) in enumerate(bar, start=1):
            value, n = step_fn(q_idx, v_idx, lambda v: check_finite(v, epoch, step, run, state["epoch"]))
            total += value
            steps += 1
            live = monitor.step(epoch, step, value, optimizer.param_groups[0]["lr"], n)
            bar.set_postfix_str(f"loss={value:.4f}, {live}")
        bar.close()
        monitor.end_training_steps()
        row = {"epoch": epoch, "loss": total / max(steps, 1), "steps": steps}
        metrics, lambdas = validate(epoch, monitor) if due(epoch, config) else (None, None)
        finish_epoch(run, state, row, metrics, t0, dataset, config, epochs_bar, save_best=save_best,
                     last=last_state(), monitor=monitor, lambdas=lambdas)
        if end_epoch is not None:
            end_epoch()
    epochs_bar.close()
    if monitor is not None:
        monitor.close()


def keep_bests(run, state: dict, row: dict, metrics: dict, dataset: str, config, save_best) -> None:
    """Keep the best checkpoints after a validation: best.pt by the selection score; on CIRR also one
    file per mean (best_arithmetic.pt, best_harmonic.pt, best_geometric.pt, as the original code keeps
    three), best.pt then being a hard link to the file of the mean `selection` names.

    `save_best(extra, path)` writes one checkpoint (the writing process only).
    """
    epoch = row["epoch"]
    record = {"epoch": epoch, "metrics": metrics, "dataset": dataset, "run_config": dataclasses.asdict(config)}
    improved = row["score"] > state["best_score"]
    if improved:
        state.update(best_score=row["score"], best_epoch=epoch, best_metrics=metrics)
    if not get_dataset(dataset).selection_means:
        if improved and run.writer:
            save_best({**record, "score": row["score"]}, run.best_path)
        return
    selection = getattr(config, "selection", "arithmetic")
    best_by = state.setdefault("best_by", {})
    for mean in get_dataset(dataset).selection_means:
        score = row[f"score_{mean}"]
        if score > best_by.get(mean, {}).get("score", -math.inf):
            best_by[mean] = {"score": score, "epoch": epoch}
            if run.writer:
                save_best({**record, "score": score, "selection": mean}, run.path / runs.best_file(mean))
    if improved and run.writer:
        runs.link_file(run.path / runs.best_file(selection), run.best_path)


def check_last(last: dict, kind: str, run) -> None:
    if not isinstance(last, dict) or last.get("format") != RUN_CHECKPOINT_FORMAT or last.get("kind") != kind:
        raise ConfigError(f"{run.last_path} is not a {kind} run checkpoint of this kit; start a new run folder")



def new_state() -> dict:
    """The training state kept in last.pt beside the models: epochs done, history, best so far."""
    return {"epoch": 0, "history": [], "best_score": -math.inf, "best_epoch": 0, "best_metrics": {},
            "best_by": {}}  # CIRR: {mean: {"score", "epoch"}} of each best_<mean>.pt


def resume_state(run, kind: str, resume: bool, generator: torch.Generator,
                 load_into: Callable[[dict], None]) -> dict:
    """The state to start from: a fresh one, or (resume) the one in the run's last.pt.

    Args:
        run: the `RunFolder`.
        kind: "finetune" or "combiner" (last.pt must be of this kind).
        resume: whether to continue from last.pt.
        generator: the batch generator; its state is restored from last.pt.
        load_into: puts last.pt's models and optimizer (and scaler) states in place.
    """
    state = new_state()
    last = run.load_last() if resume else None
    if last is not None:
        check_last(last, kind, run)
        load_into(last)
        runs.set_rng_state(generator, last["rng"])
        state = {k: last.get(k, v) for k, v in state.items()}  # older last.pt files lack "best_by"
        logger.info("resuming %s from epoch %d", run.path, state["epoch"])
    elif resume:
        logger.info("nothing to resume in %s: starting from epoch 1", run.path)
    return state
