"""Choosing the torch device and CPU threads: one rule for training, evaluation, the explorer and
the command line.

    "auto"   CUDA when a GPU is visible, else the CPU
    "cpu"    the CPU
    "cuda"   the current GPU (under torchrun: the process's local GPU); "cuda:N" a given one

Example:
    >>> device = pick_device("auto")
"""

from __future__ import annotations

import logging
from typing import Optional

import torch

from cir_lib.errors import ConfigError

logger = logging.getLogger(__name__)


def default_device() -> str:
    """"cuda" when a GPU is visible, else "cpu"."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_device(setting: Optional[str] = "auto", local_rank: Optional[int] = None) -> torch.device:
    """The torch device for a setting ("auto", "cpu", "cuda", "cuda:N"; None = "auto").

    Args:
        setting: the user's choice.
        local_rank: under torchrun, the process's local rank: "cuda" then means that GPU.

    Raises:
        ConfigError: CUDA asked for on a machine without it, or an unknown device name.
    """
    setting = "auto" if setting in (None, "") else str(setting)
    if setting == "auto":
        setting = default_device()
    if setting.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {setting!r} asked for but CUDA is not available on this machine; "
                              "use the CPU (device cpu / --device cpu / --set device=cpu)")
        if local_rank is not None and setting == "cuda":
            setting = f"cuda:{local_rank}"
    try:
        device = torch.device(setting)
    except RuntimeError:
        raise ConfigError(f"unknown device {setting!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {setting!r}: this machine has {torch.cuda.device_count()} GPU(s)")
        torch.cuda.set_device(device)
    return device


def set_threads(threads: Optional[int]) -> None:
    """Use `threads` torch CPU threads (None or 0: torch's default)."""
    if threads:
        torch.set_num_threads(threads)
        logger.info("using %d torch CPU threads", threads)
