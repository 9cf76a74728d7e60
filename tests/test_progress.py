"""cir_lib.progress: one bar factory, three behaviours (terminal, notebook text, papermill final line)."""

from __future__ import annotations

import io

import pytest

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
    assert _run(monkeypatch, "final", leave=False) == ""  # temporary bars print nothing


def test_text_mode_draws_one_line_and_no_widgets(monkeypatch):
    text = _run(monkeypatch, "text", leave=True)
    assert "\x1b[A" not in text and "outer: 100%" in text  # no cursor moves: one line, redrawn with \r
    assert text.count("\n") == 1
    monkeypatch.setenv(progress.ENV_VAR, "text")
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    outer = progress.progress_bar(range(2), desc="outer", leave=True)
    for _ in outer:  # a nested temporary bar shares the outer bar's line, then clears itself
        for _ in progress.progress_bar(range(3), desc="inner", leave=False):
            pass
    assert "\x1b[A" not in err.getvalue() and err.getvalue().count("\n") == 1
    assert type(outer).__module__ == "tqdm.std"  # never tqdm.notebook's widget bar


def test_off_mode_and_bad_value(monkeypatch):
    assert _run(monkeypatch, "off", leave=True) == ""
    monkeypatch.setenv(progress.ENV_VAR, "widgets")
    with pytest.raises(ConfigError, match="CIR_LIB_PROGRESS"):
        progress.progress_mode()


def test_default_mode_outside_a_kernel(monkeypatch):
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    assert progress.progress_mode() == "terminal"
