"""A result table as files: CSV at full precision, Markdown and LaTeX in the poster's layout, its `.meta.json`.

Markdown and LaTeX print `value ±h`, h the half-width (high - low) / 2 of a row's percentile
bootstrap interval (`cir_lib.tables`); the CSV keeps the exact bounds. Marking: best in bold, second
best underlined, per column, among the rows of the same split (CIRR val rows are not compared with
test1 rows); ablation rows are never marked. The tables themselves are built by `cir_lib.tables`.

Example:
    >>> table = cirr_table(rows, backbone="RN50", ranks=ranks)  # cir_lib.tables
    >>> write_table(table, "results/mini/tables", "cirr", title="CIRR val")
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from cir_lib.datasets import get_dataset
from cir_lib.runs import atomic_write_text, jsonable
from cir_lib.tables import (ABLATIONS, CITED, PUBLISHED, THIS_RUN, difference_table, is_ablation, metric_columns,
                            table_dataset)

logger = logging.getLogger(__name__)


def header_label(column: str) -> str:
    """"dress_recall@10" -> "dress R@10"; "recall_subset@2" -> "Rs@2"."""
    group, _, metric = column.rpartition("_recall")
    if column.startswith("recall_subset@"):
        return "Rs@" + column.split("@")[1]
    if column.startswith("recall@"):
        return "R@" + column.split("@")[1]
    return f"{group} R{metric}"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or bool(pd.isna(value))


def _marks(table: pd.DataFrame, separate: bool = False) -> dict[tuple[int, str], str]:
    """{(row position, column): "best" | "second"} per column among the non-ablation rows of each split
    (and, when `separate`, apart for this run's rows and for the cited / published rows).

    Compared at the printed precision (2 decimals), so rows printed equal get the same mark."""
    marks: dict[tuple[int, str], str] = {}
    table = table.reset_index(drop=True)
    eligible = table[~table["method"].isin(ABLATIONS)]
    keys = [eligible["split"]] + ([eligible["source"] == THIS_RUN] if separate else [])
    for _, group in eligible.groupby(keys, sort=False):
        for c in metric_columns(table):
            values = {i: round(float(v), 2) for i, v in group[c].items() if not _missing(v)}
            levels = sorted(set(values.values()), reverse=True)
            for i, v in values.items():
                if v == levels[0]:
                    marks[(i, c)] = "best"
                elif len(levels) > 1 and v == levels[1]:
                    marks[(i, c)] = "second"
    return marks


def _cell(row: pd.Series, column: str, *, signed: bool, mark: str | None, latex: bool) -> str:
    value = row[column]
    if _missing(value):
        return "-"
    text = f"{float(value):+.2f}" if signed else f"{float(value):.2f}"
    if mark == "best":
        text = rf"\textbf{{{text}}}" if latex else f"**{text}**"
    elif mark == "second":
        text = rf"\underline{{{text}}}" if latex else f"<u>{text}</u>"
    lo, hi = row.get(column + "_ci_low"), row.get(column + "_ci_high")
    if not (_missing(lo) or _missing(hi)):
        half = (float(hi) - float(lo)) / 2
        text += rf"\,{{\scriptsize$\pm${half:.2f}}}" if latex else f" ±{half:.2f}"
    return text


def _method_label(row: pd.Series) -> str:
    cited = row.get("cited_from")
    label = str(row["method"]) + ("\u2020" if not _missing(cited) and cited else "")
    return label + (" (ablation)" if is_ablation(row["method"]) else "")


def _shown_id_columns(table: pd.DataFrame) -> list[str]:
    """source and method always; backbone when any row has one; split when the rows differ in it."""
    shown = ["source"]
    if (table["backbone"].fillna("") != "").any():
        shown.append("backbone")
    shown.append("method")
    if table["split"].nunique() > 1:
        shown.append("split")
    return shown


def context_notes(table: pd.DataFrame, separate_marks: bool = False) -> list[str]:
    """The notes a table needs to be read: what its context rows are, the dagger, marks, intervals."""
    dataset = table_dataset(table)
    notes = []
    sources = set(table["source"])
    if CITED in sources:
        notes.append(get_dataset(dataset).cited_note)
        for paper in sorted({p for p in table["cited_from"].fillna("") if p}):
            notes.append(f"\u2020 numbers cited from the {paper}, as the poster prints them")
    if PUBLISHED in sources:
        notes.append(get_dataset(dataset).published_note)
    if table["method"].isin(ABLATIONS).any():
        notes.append("(ablation): the query is one modality's feature alone (image only: the reference image; "
                     "text only: the caption), on that stage's encoders; never marked best, not in the differences")
    apart = "; this run's rows apart from the cited and published ones" if separate_marks else ""
    notes.append("bold: best, underlined: second best in each column among the rows of the same split "
                 f"(ablations excluded{apart})")
    boots = table.attrs.get("bootstrap") or {}
    if boots:
        boot = next(iter(boots.values()))
        per = get_dataset(dataset).interval_note()
        notes.append(f"\u00b1h: half-width of the {boot.level:.0%} percentile bootstrap interval over the val queries "
                     f"({boot.n_boot} resamples, seed {boot.seed}{per}); exact bounds in the CSV; differences: "
                     "paired bootstrap (same resamples for both rows); rows without \u00b1 have no per-query ranks")
    return notes


def to_markdown(table: pd.DataFrame, difference: pd.DataFrame | None = None, *, title: str = "",
                notes: Sequence[str] = (), separate_marks: bool = False) -> str:
    """The table (and its difference section) as GitHub Markdown, numbers to 2 decimals.

    Cells read `21.22 ±1.91` (± the half-width of the 95% interval) where intervals are known;
    best in bold and second best underlined per column, among the rows of the same split.

    Args:
        table: from `fashioniq_table` / `cirr_table`.
        difference: from `difference_table`, printed under the table (None: none).
        title: heading; notes: lines printed as a list under the tables.
        separate_marks: mark this run's rows apart from the cited / published ones (for runs on
            other data than the paper's, e.g. the mini benchmark, where ranking them together
            would mean nothing).

    Returns:
        The Markdown text.
    """
    columns = metric_columns(table)
    ids = _shown_id_columns(table)
    table = table.reset_index(drop=True)
    marks = _marks(table, separate_marks)
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(ids) + " | " + " | ".join(header_label(c) for c in columns) + " |")
    lines.append("| " + " | ".join("---" for _ in ids) + " | " + " | ".join("---:" for _ in columns) + " |")
    for i, row in table.iterrows():
        cells = [_method_label(row) if c == "method" else str(row[c] if not _missing(row[c]) else "") for c in ids]
        cells += [_cell(row, c, signed=False, mark=marks.get((i, c)), latex=False) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    if difference is not None and not difference.empty:
        lines += ["", "Difference (recall points):", ""]
        lines.append("| comparison | " + " | ".join(header_label(c) for c in columns) + " |")
        lines.append("| --- | " + " | ".join("---:" for _ in columns) + " |")
        for _, row in difference.iterrows():
            lines.append(f"| {row['comparison']} | "
                         + " | ".join(_cell(row, c, signed=True, mark=None, latex=False) for c in columns) + " |")
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "\u2020": r"$^\dagger$", "\u00b1": r"$\pm$"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: pd.DataFrame, difference: pd.DataFrame | None = None, *, caption: str = "",
             label: str = "", separate_marks: bool = False) -> str:
    """The table as a booktabs LaTeX `table` (needs \\usepackage{booktabs}), poster layout.

    Cells as in `to_markdown` (`\\textbf` best, `\\underline` second best, `$\\pm$h` in small type).

    Args:
        table, difference, separate_marks: as in `to_markdown`.
        caption, label: the table's `\\caption` and `\\label` (omitted when empty).

    Returns:
        The LaTeX text.
    """
    dataset = table_dataset(table)
    columns = metric_columns(table)
    ids = _shown_id_columns(table)
    table = table.reset_index(drop=True)
    marks = _marks(table, separate_marks)
    n, m = len(columns), len(ids)
    out = [r"\begin{table}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{4pt}",
           r"\begin{tabular}{" + "l" * m + "r" * n + "}", r"\toprule"]
    id_header = " & ".join(c.capitalize() for c in ids)
    out.extend(get_dataset(dataset).latex_header(list(columns), m, id_header))
    out.append(r"\midrule")
    previous = None
    for i, row in table.iterrows():
        if previous is not None and row["source"] != previous:
            out.append(r"\midrule")
        previous = row["source"]
        cells = [_tex_escape(_method_label(row) if c == "method" else ("" if _missing(row[c]) else row[c]))
                 for c in ids]
        cells += [_cell(row, c, signed=False, mark=marks.get((i, c)), latex=True) for c in columns]
        out.append(" & ".join(cells) + r" \\")
    if difference is not None and not difference.empty:
        out.append(r"\midrule")
        out.append(rf"\multicolumn{{{n + m}}}{{l}}{{\emph{{Difference (recall points)}}}} \\")
        for _, row in difference.iterrows():
            out.append(rf"\multicolumn{{{m}}}{{l}}{{{_tex_escape(row['comparison'])}}} & "
                       + " & ".join(_cell(row, c, signed=True, mark=None, latex=True) for c in columns) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        out.append(rf"\caption{{{_tex_escape(caption)}}}")
    if label:
        out.append(rf"\label{{{label}}}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def write_table(table: pd.DataFrame, out_dir: str | os.PathLike, name: str, *, title: str = "",
                notes: Sequence[str] = (), meta: Mapping[str, Any] | None = None,
                separate_marks: bool = False) -> dict[str, Path]:
    """Write `<name>.csv`, `<name>_differences.csv`, `<name>.md`, `<name>.tex` and `<name>.meta.json`.

    The CSVs hold the table and its differences (`difference_table`) at full precision, interval
    bounds beside each metric (blank where unknown); the Markdown and LaTeX files show both with
    `±h`, the marks, `notes` and the table's own notes (`context_notes`); the sidecar records
    `meta` (run configs, environment, data root, ...).

    Args:
        table: from `fashioniq_table` / `cirr_table`.
        out_dir: folder for the files (created).
        name: file stem, "fashioniq" or "cirr".
        title: heading / caption of the Markdown and LaTeX versions.
        notes: lines printed under the table (what the rows are, which data), before the
            table's own notes.
        meta: JSON-serialisable record written to `<name>.meta.json` (and summarised in the .md).
        separate_marks: see `to_markdown` (True for the smoke / mini profiles).

    Returns:
        {"csv": path, "differences": path, "md": path, "tex": path, "meta": path}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    difference = difference_table(table)
    notes = [*notes, *context_notes(table, separate_marks)]
    paths = {"csv": out / f"{name}.csv", "differences": out / f"{name}_differences.csv", "md": out / f"{name}.md",
             "tex": out / f"{name}.tex", "meta": out / f"{name}.meta.json"}
    for key, frame in (("csv", table), ("differences", difference)):
        atomic_write_text(paths[key], frame.to_csv(index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.6g"))
    md = to_markdown(table, difference, title=title, notes=notes, separate_marks=separate_marks)
    if meta:
        md += "\n" + _meta_markdown(meta)
    atomic_write_text(paths["md"], md)
    caption = ". ".join(t.strip().rstrip(".") for t in [title, *notes] if t.strip())
    atomic_write_text(paths["tex"], to_latex(table, difference, caption=caption + "." if caption else "",
                                              label=f"tab:{name}", separate_marks=separate_marks))
    atomic_write_text(paths["meta"], json.dumps(jsonable(dict(meta or {})), indent=2, sort_keys=True) + "\n")
    logger.info("wrote %s table to %s.{csv,md,tex}", name, out / name)
    return paths


def _meta_markdown(meta: Mapping[str, Any]) -> str:
    lines = ["#### How these numbers were made", ""]
    env = meta.get("environment", {})
    for key in ("profile", "data_root", "split"):
        if key in meta:
            lines.append(f"- {key}: `{meta[key]}`")
    if env:
        lines.append(f"- git commit: `{env.get('git_commit')}`{' (uncommitted changes)' if env.get('git_dirty') else ''}")
        lines.append(f"- device: {env.get('device')}; python {env.get('python')}; platform {env.get('platform')}")
        pkgs = ", ".join(f"{k} {v}" for k, v in sorted(env.get("packages", {}).items()))
        lines.append(f"- packages: {pkgs}")
    for label, config in (meta.get("runs") or {}).items():
        lines.append(f"- run `{label}`: " + ", ".join(f"{k}={v}" for k, v in _short_config(config).items()))
    lines.append("- full record: the `.meta.json` file beside this one")
    return "\n".join(lines) + "\n"


def _short_config(config: Any) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        return {"config": config}
    keep = ("dataset", "recipe", "backbone", "pretrained", "train_encoders", "encoders", "epochs", "batch_size",
            "lr", "seed", "best_epoch", "run_dir", "path")
    flat = {k: config[k] for k in keep if k in config and not isinstance(config[k], (dict, list))}
    return flat or {k: v for k, v in list(config.items())[:6] if not isinstance(v, (dict, list))}




def write_seed_table(table: pd.DataFrame, out_dir: str | os.PathLike, name: str, *, title: str = "",
                     meta: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write `<name>_seeds.csv` (full precision) and `<name>_seeds.md` (per-seed rows, then
    mean ± std per method), and with `meta` `<name>_seeds.meta.json` (as `write_table` does).

    Returns:
        {"csv": path, "md": path} (and "meta": path).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / f"{name}_seeds.csv", "md": out / f"{name}_seeds.md"}
    atomic_write_text(paths["csv"], table.to_csv(index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.6g"))
    columns = [c for c in table.columns if c not in ("seed", "backbone", "method")]
    seeds = [s for s in table["seed"].unique() if s not in ("mean", "std")]
    lines = [f"### {title}", ""] if title else []
    lines += ["| seed | backbone | method | " + " | ".join(header_label(c) for c in columns) + " |",
              "| --- | --- | --- | " + " | ".join("---:" for _ in columns) + " |"]
    for _, row in table[table["seed"].isin(seeds)].iterrows():
        lines.append(f"| {row['seed']} | {row['backbone']} | {row['method']} | "
                     + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")
    mean = table[table["seed"] == "mean"].set_index(["backbone", "method"])
    std = table[table["seed"] == "std"].set_index(["backbone", "method"])
    for key in mean.index:
        lines.append(f"| mean ± std ({len(seeds)} seeds) | {key[0]} | {key[1]} | "
                     + " | ".join(f"{mean.loc[key, c]:.2f} ±{std.loc[key, c]:.2f}" for c in columns) + " |")
    lines += ["", "std: the sample standard deviation across the training seeds (same data, same recipe)."]
    atomic_write_text(paths["md"], "\n".join(lines) + "\n")
    if meta is not None:
        paths["meta"] = out / f"{name}_seeds.meta.json"
        atomic_write_text(paths["meta"], json.dumps(jsonable(dict(meta)), indent=2, sort_keys=True) + "\n")
    return paths
