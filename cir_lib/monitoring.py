"""Live monitoring of a training run: TensorBoard event files beside history.csv, and the throughput
and time-left figures of the log lines.

Both stages write, into their run folder, the event files TensorBoard reads (when the `tensorboard`
package is installed and the config's `tensorboard` is true, the default):

    train/loss, train/lr            every step (x: the step over the whole run)
    train/throughput                triplets per second of each epoch's training steps
    val/<metric>, val/score[_mean]  every validation metric and selection score (x: the epoch)
    epoch/loss, epoch/seconds       the epoch's mean loss and wall time
    combiner/lambda                 stage 2: a histogram of the Combiner's lambda over the val queries

    tensorboard --logdir results/mini/runs     # every run of a profile side by side, live

Event files are written by the process that writes the run folder; nothing in them feeds back into
training, so the numbers are those of a run without them. They are not tracked by git.

Log lines: during an epoch, at most one line a minute with the step, the triplets per second and the
estimated time left for the epoch and for the run; at the end of an epoch the same figures are
appended to the epoch's line.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import time
from typing import Optional

logger = logging.getLogger(__name__)

PROGRESS_LOG_EVERY_S = 60.0  # seconds between the in-epoch progress lines of the log


def format_duration(seconds: float) -> str:
    """A short duration for log lines: "45s", "12m05s", "3h07m".

    Example:
        >>> format_duration(3725)
        '1h02m'
    """
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def tensorboard_available() -> bool:
    """Whether the `tensorboard` package (which torch's SummaryWriter needs) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


class TrainingMonitor:
    """The live view of one training call: event files, throughput and time left.

    Args:
        run: the `RunFolder` (event files go into `run.path`; only its writing process writes them).
        config: the stage's config (`tensorboard`, `epochs`).
        first_epoch: the first epoch this call trains (1, or the one after a resumed last.pt).
        steps_per_epoch: training steps of one epoch (the x axis of the per-step curves).
        unit: what `samples` counts in the throughput ("triplets").

    Example:
        >>> monitor = TrainingMonitor(run, config, first_epoch=1, steps_per_epoch=len(batches))
        >>> monitor.start_epoch(1); monitor.step(1, 1, loss=2.3, lr=2e-6, samples=512)
        >>> suffix = monitor.end_epoch(row)          # "4300 triplets/s, run left 2h10m"
        >>> monitor.close()
    """

    def __init__(self, run, config, first_epoch: int, steps_per_epoch: int, unit: str = "triplets"):
        self.epochs = int(config.epochs)
        self.first_epoch = first_epoch
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self.unit = unit
        self.writer = None
        self._train_seconds = 0.0  # this call's training-step time, for the run's time left
        self._epoch_seconds = 0.0  # this call's whole-epoch time (steps + validation + checkpoints)
        self._epochs_done = 0
        self._epoch_t0 = self._last_log = time.perf_counter()
        self._samples = 0
        self._steps = 0
        self._rate = 0.0
        self.epoch = first_epoch
        self.log = getattr(run, "writer", True)  # under torchrun only the writing process logs
        if not getattr(run, "writer", True) or not getattr(config, "tensorboard", True):
            return
        if not tensorboard_available():
            logger.info("the tensorboard package is not installed: no live curves for %s "
                        "(pip install tensorboard)", run.path)
            return
        from torch.utils.tensorboard import SummaryWriter  # here: tensorboard may be absent (checked above)

        self.writer = SummaryWriter(log_dir=str(run.path))

    # --------------------------------------------------------------------------------- steps

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._epoch_t0 = self._last_log = time.perf_counter()
        self._samples = 0
        self._steps = 0

    def global_step(self, epoch: int, step: int) -> int:
        return (epoch - 1) * self.steps_per_epoch + step

    def step(self, epoch: int, step: int, loss: float, lr: float, samples: int) -> str:
        """Record one training step; returns the progress bar's postfix text (throughput, time left)."""
        self._samples += samples
        self._steps = step
        if self.writer is not None:
            gs = self.global_step(epoch, step)
            self.writer.add_scalar("train/loss", loss, gs)
            self.writer.add_scalar("train/lr", lr, gs)
        now = time.perf_counter()
        rate = self.throughput(now)
        epoch_left = (now - self._epoch_t0) / step * (self.steps_per_epoch - step)
        run_left = epoch_left + self._seconds_per_epoch(now) * (self.epochs - epoch)
        text = (f"{rate:.0f} {self.unit}/s, epoch left {format_duration(epoch_left)}, "
                f"run left {format_duration(run_left)}")
        if self.log and now - self._last_log >= PROGRESS_LOG_EVERY_S and step < self.steps_per_epoch:
            self._last_log = now
            logger.info("epoch %d/%d step %d/%d: loss %.4f, %s", epoch, self.epochs, step, self.steps_per_epoch,
                        loss, text)
        return text

    def throughput(self, now: Optional[float] = None) -> float:
        """Samples per second of this epoch's training steps so far."""
        elapsed = (now if now is not None else time.perf_counter()) - self._epoch_t0
        return self._samples / elapsed if elapsed > 0 else 0.0

    def _seconds_per_epoch(self, now: float) -> float:
        if self._epochs_done:
            return self._epoch_seconds / self._epochs_done
        # first epoch of this call: its steps so far, extrapolated (validation not counted yet)
        return (now - self._epoch_t0) / max(self._steps, 1) * self.steps_per_epoch

    # --------------------------------------------------------------------------------- epochs

    def end_training_steps(self) -> float:
        """Call after the epoch's last step: returns (and records) the epoch's training throughput."""
        now = time.perf_counter()
        self._train_seconds += now - self._epoch_t0
        self._rate = self.throughput(now)
        if self.writer is not None:
            self.writer.add_scalar("train/throughput", self._rate, self.epoch)
        return self._rate

    def end_epoch(self, row: dict, lambdas=None) -> str:
        """Record an epoch's row of history.csv (loss, metrics, scores, seconds) and, for stage 2, the
        Combiner's lambda over the val queries; returns the log line's suffix."""
        now = time.perf_counter()
        self._epoch_seconds += now - self._epoch_t0
        self._epochs_done += 1
        epoch = row["epoch"]
        if self.writer is not None:
            for key, value in row.items():
                if key in ("epoch", "steps") or not isinstance(value, (int, float)):
                    continue
                tag = f"epoch/{key}" if key in ("loss", "seconds") else f"val/{key}"
                self.writer.add_scalar(tag, float(value), epoch)
            if lambdas is not None and len(lambdas):
                self.writer.add_histogram("combiner/lambda", lambdas.detach().float().cpu(), epoch)
            self.writer.flush()
        left = self._epoch_seconds / self._epochs_done * (self.epochs - epoch)
        return f"{self._rate:.0f} {self.unit}/s, run left {format_duration(left)}"

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
