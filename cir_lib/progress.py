"""One progress-bar factory for the whole library, suited to where the code runs.

    from cir_lib.progress import progress_bar
    for batch in progress_bar(loader, desc="index images", unit="batch", leave=False): ...

Three places, three behaviours (`progress_mode()` picks one; `CIR_LIB_PROGRESS` forces it):

- ``"terminal"``: the normal tqdm bar on stderr (stacked bars, redrawn in place).
- ``"text"``, a notebook kernel with a frontend (JupyterLab): one line per loop, an IPython display
  output updated in place (at most once a second) while the loop runs and left holding the loop's
  final line when it ends. Nothing goes to stderr: JupyterLab draws carriage-return redraws of
  stderr as stacked fragments (`, loss=12.6499]`) and cleared bars as empty boxes. No ipywidgets
  bars either: a widget bar that is removed when done (`leave=False`) leaves a dead widget output
  behind ("Error displaying widget: model not found" once the page is reloaded), and a saved
  notebook would carry the widget state. A bar opened inside another shares its line
  (`stage 1 cirr: 3/10 epochs ... | epoch 3/10: 40/64 batches ...`) and leaves nothing when it
  closes; a temporary bar (`leave=False`) that closed within a second leaves nothing either.
  Outside a kernel (the mode forced in a terminal), the line is redrawn on stderr.
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
    try:  # here: only inside a kernel; the command line (its --help too) loads this module
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


def _current_cell() -> Optional[int]:
    """The kernel's execution count (the cell running now), None outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    shell = get_ipython()
    return getattr(shell, "execution_count", None) if shell is not None else None


class _DisplayLine:
    """One line of a notebook's output, updated in place (IPython's display with a display id)."""

    def __init__(self, text: str):
        from IPython.display import display

        self._handle = display({"text/plain": text}, raw=True, display_id=True)

    def update(self, text: str) -> None:
        if self._handle is not None:
            self._handle.update({"text/plain": text}, raw=True)

    def finish(self, text: str) -> None:
        self.update(text)


class _StreamLine:
    """The same line on stderr, redrawn with a carriage return (text mode outside a kernel)."""

    def __init__(self, text: str):
        self._width = 0
        self.update(text)

    def update(self, text: str) -> None:
        sys.stderr.write("\r" + text.ljust(self._width))  # padded: no tail of a longer line remains
        sys.stderr.flush()
        self._width = max(self._width, len(text))

    def finish(self, text: str) -> None:
        self.update(text)
        sys.stderr.write("\n")
        sys.stderr.flush()


class _Discard:
    """tqdm's output file in text mode: the line objects draw, tqdm's own writes are dropped."""

    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class _LineBar(_tqdm):
    """Text mode: one line per outermost loop, shared by the bars nested in it (see the docstring)."""

    _open: list = []  # the open bars of this process, outermost first

    def __init__(self, *args, **kwargs):
        self._ready = False
        self._line = None
        kwargs.pop("file", None)
        super().__init__(*args, file=_Discard(), **kwargs)
        if self.disable:
            return
        cell = _current_cell()
        stack = _LineBar._open
        if stack and getattr(stack[0], "_cell", None) != cell:
            stack.clear()  # bars of an interrupted earlier cell: their line is not this cell's
        self._cell = cell
        stack.append(self)
        self._ready = True

    def _text(self) -> str:
        stack = _LineBar._open
        return "  |  ".join(str(b) for b in stack) if self in stack else str(self)

    def _draw(self, text: str) -> None:
        owner = _LineBar._open[0] if _LineBar._open else self
        if owner._line is None:
            owner._line = _DisplayLine(text) if _in_kernel() else _StreamLine(text)
        else:
            owner._line.update(text)

    def display(self, msg=None, pos=None):
        if self._ready and not getattr(self, "_closing", False):
            self._draw(self._text())
        return True

    def close(self):
        if getattr(self, "disable", True):
            return
        stack = _LineBar._open
        top = bool(stack) and stack[0] is self
        self._closing = True
        super().close()
        if self in stack:
            stack.remove(self)
        if top or not stack:
            self._ema_dt = lambda: None  # the final line shows the overall rate
            if self._line is not None:
                self._line.finish(str(self))
            elif self.leave:  # a kept loop that ended within a second: its final line only
                (_DisplayLine if _in_kernel() else _StreamLine)(str(self)).finish(str(self))
        elif stack:
            stack[0].display()  # the outer bar's line, without this one


class _FinalLineBar(_tqdm):
    """Draws nothing while running; one line, written at once, when closed (leave=True bars only).

    One write ("<line>\\n", no carriage return): a notebook stores each write to stderr as its own
    output, and a lone "\\n" after the line would show as an empty box between the log lines.
    """

    def display(self, msg=None, pos=None):
        return True

    def close(self):
        if getattr(self, "disable", True):
            return
        out = self.fp
        self.fp = _Discard()  # tqdm's own closing writes
        self._ema_dt = lambda: None  # the final line shows the overall rate
        super().close()
        if self.leave:
            out.write(str(self) + "\n")
            out.flush()


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
    # text: one line per outermost loop, updated in place; bars nested in it share that line
    return _LineBar(iterable, disable=off, mininterval=TEXT_MININTERVAL_S, dynamic_ncols=False, **common)
