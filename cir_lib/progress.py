"""One progress-bar factory for the whole library, suited to where the code runs.

    from cir_lib.progress import progress_bar
    for batch in progress_bar(loader, desc="index images", unit="batch", leave=False): ...

Three places, three behaviours (`progress_mode()` picks one; `CIR_LIB_PROGRESS` forces it):

- ``"terminal"``: the normal tqdm bar on stderr (stacked bars, redrawn in place).
- ``"text"``, a notebook kernel with a frontend (JupyterLab): a plain-text tqdm on stderr, redrawn at
  most once a second on one line. No ipywidgets bars: a widget bar that is removed when done
  (`leave=False`) leaves a dead widget output behind ("Error displaying widget: model not found"
  once the page is reloaded), and a saved notebook would carry the widget state. Bars nested in an
  open bar share its line (an inner bar draws over it, then clears itself).
- ``"final"``, no frontend (papermill, `cir-lib reproduce`): nothing while a loop runs, one line when
  a kept bar (`leave=True`) closes; temporary bars (`leave=False`) print nothing. Papermill stores
  what the kernel writes to stderr in the executed notebook, so these stay small and hold no frozen
  "0%" bars. The reproduce kernel sets ``CIR_LIB_PROGRESS=final``.
- ``"off"``: no bars at all.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Optional

from tqdm.std import tqdm as _tqdm

from cir_lib.errors import ConfigError

ENV_VAR = "CIR_LIB_PROGRESS"
MODES = ("terminal", "text", "final", "off")
TEXT_MININTERVAL_S = 1.0  # a notebook's stderr is a stream of messages: at most one redraw a second


def _in_kernel() -> bool:
    """True inside a Jupyter (ipykernel) kernel."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel depends on IPython
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def progress_mode() -> str:
    """How bars are shown here: "terminal", "text", "final" or "off" (see the module docstring).

    Returns:
        `$CIR_LIB_PROGRESS` when set; otherwise "text" in a Jupyter kernel, "terminal" elsewhere.

    Raises:
        ConfigError: `$CIR_LIB_PROGRESS` holds something else than one of `MODES`.
    """
    mode = os.environ.get(ENV_VAR, "").strip().lower()
    if mode:
        if mode not in MODES:
            raise ConfigError(f"{ENV_VAR}={mode!r} is not a progress mode; use one of {', '.join(MODES)} "
                              f"(or unset it)")
        return mode
    return "text" if _in_kernel() else "terminal"


class _FinalLineBar(_tqdm):
    """Draws nothing while running; one line when closed (leave=True bars only)."""

    def display(self, msg=None, pos=None):
        if not getattr(self, "_closing", False):
            return True
        return super().display(msg=msg, pos=pos)

    def close(self):
        self._closing = True
        super().close()


def progress_bar(iterable: Optional[Iterable] = None, *, desc: Optional[str] = None, total: Optional[float] = None,
             unit: str = "it", leave: bool = True, disable: Optional[bool] = False, **kwargs) -> _tqdm:
    """A progress bar (a `tqdm` object: iterate it, or call `update`, `set_postfix`, `close`).

    Args:
        iterable: what to iterate (None: call `update` yourself).
        desc: the bar's label.
        total: number of steps (default: `len(iterable)` when it has one).
        unit: the unit of a step ("img", "batch", "epoch").
        leave: keep the finished bar (True, long loops) or clear it (False, inner or short loops).
        disable: no bar; None disables it when stderr is not a terminal in terminal mode.
        **kwargs: other tqdm arguments (`initial`, `postfix` ...).

    Returns:
        The bar.

    Example:
        >>> for epoch in progress_bar(range(1, 11), desc="stage 1 cirr", unit="epoch"):
        ...     pass
    """
    mode = progress_mode()
    common = dict(desc=desc, total=total, unit=unit, leave=leave, **kwargs)
    if mode == "terminal":
        return _tqdm(iterable, disable=disable, **common)
    off = bool(disable) or mode == "off"
    if mode == "final":
        return _FinalLineBar(iterable, disable=off or not leave, file=sys.stderr, **common)
    # text: one line, redrawn in place; a bar opened inside another draws over the same line
    return _tqdm(iterable, disable=off, file=sys.stderr, mininterval=TEXT_MININTERVAL_S, position=0,
                 dynamic_ncols=False, **common)
