"""cir_lib.progress: one bar factory, three behaviours (terminal, notebook text, papermill final line)."""

from __future__ import annotations

import io

import pytest
from tqdm.notebook import tqdm as tqdm_notebook
from tqdm.std import tqdm as tqdm_std

from cir_lib import progress
from cir_lib.errors import ConfigError


def _run(monkeypatch, mode, *, leave, steps=50):
    monkeypatch.setenv(progress.ENV_VAR, mode)
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    bar = progress.progress_bar(range(steps), desc="outer", unit="epoch", leave=leave)
    for _ in bar:
        bar.set_postfix(loss="0.1")  # set_postfix redraws in tqdm: it must not in final mode
    return err.getvalue()


def test_final_mode_prints_one_line_per_kept_bar(monkeypatch):
    text = _run(monkeypatch, "final", leave=True)
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    assert len(lines) == 1 and "outer: 100%" in lines[0] and "50/50" in lines[0] and "loss=0.1" in lines[0]
    assert "0%|" not in text.replace("100%|", "")  # no frozen start-of-loop bar
    assert "\r" not in text and text.count("\n") == 1 and text.endswith("\n")  # one write: no lone "\n" output
    assert _run(monkeypatch, "final", leave=False) == ""  # temporary bars print nothing


def test_text_mode_outside_a_kernel_draws_one_line_on_stderr(monkeypatch):
    text = _run(monkeypatch, "text", leave=True)
    assert "\x1b[A" not in text and "outer: 100%" in text  # no cursor moves: one line, redrawn with \r
    assert text.count("\n") == 1
    monkeypatch.setenv(progress.ENV_VAR, "text")
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    outer = progress.progress_bar(range(2), desc="outer", leave=True)
    for _ in outer:  # a nested temporary bar shares the outer bar's line
        for _ in progress.progress_bar(range(3), desc="inner", leave=False):
            pass
    assert "\x1b[A" not in err.getvalue() and err.getvalue().count("\n") == 1
    assert isinstance(outer, tqdm_std) and not isinstance(outer, tqdm_notebook)  # never a widget bar


class _Recorded:
    """Stands in for the notebook display line: records what each line shows."""

    lines: list = []

    def __init__(self, text):
        self.shown = [text]
        _Recorded.lines.append(self)

    def update(self, text):
        self.shown.append(text)

    def finish(self, text):
        self.shown.append(text)
        self.final = text


def test_text_mode_in_a_kernel_one_line_per_loop_and_a_final_line(monkeypatch):
    monkeypatch.setenv(progress.ENV_VAR, "text")
    monkeypatch.setattr(progress, "_in_kernel", lambda: True)
    monkeypatch.setattr(progress, "_DisplayLine", _Recorded)
    monkeypatch.setattr(progress, "TEXT_MININTERVAL_S", 0)  # draw at every step
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    _Recorded.lines = []
    outer = progress.progress_bar(range(3), desc="stage 1 cirr", unit="epoch")
    for epoch in outer:
        inner = progress.progress_bar(range(4), desc=f"epoch {epoch}", unit="batch", leave=False)
        for _ in inner:
            inner.set_postfix(loss=f"{12.4127 - epoch:.4f}")
        outer.set_postfix(score="1.0")
    assert err.getvalue() == ""  # nothing on stderr: no fragments, no empty bars
    assert len(_Recorded.lines) == 1  # one output line for the loop and the bars nested in it
    line = _Recorded.lines[0]
    assert any("stage 1 cirr" in t and "epoch 1" in t and "loss=" in t for t in line.shown)  # nested: same line
    assert line.final.startswith("stage 1 cirr: 100%") and "3/3" in line.final and "score=1.0" in line.final
    assert "epoch" not in line.final.split("]")[-1] and "loss" not in line.final  # the inner bars left no trace

    _Recorded.lines = []
    monkeypatch.setattr(progress, "TEXT_MININTERVAL_S", 60)  # a short temporary loop: never drawn
    for _ in progress.progress_bar(range(5), desc="encode captions", leave=False):
        pass
    assert _Recorded.lines == []
    for _ in progress.progress_bar(range(5), desc="kept", leave=True):
        pass
    assert len(_Recorded.lines) == 1 and _Recorded.lines[0].final.startswith("kept: 100%")


def test_off_mode_and_bad_value(monkeypatch):
    assert _run(monkeypatch, "off", leave=True) == ""
    monkeypatch.setenv(progress.ENV_VAR, "widgets")
    with pytest.raises(ConfigError, match="CIR_LIB_PROGRESS"):
        progress.progress_mode()


def test_default_mode_outside_a_kernel(monkeypatch):
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    assert progress.progress_mode() == "terminal"
