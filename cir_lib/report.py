"""Result tables and figures, built from evaluation dicts and run folders (never typed in).

Tables follow the workshop poster's layout: FashionIQ R@10 / R@50 per category and their average,
CIRR R@1/5/10/50 and Rsubset@1/2/3. Each table has a `source` column ("this run", "paper RN50",
"paper RN50x4"), a `method` column ("zero-shot sum", "stage 1 sum", "stage 1 + Combiner", in that
order) and one column per metric. The paper's rows are its stage-1 + Combiner results on the REAL
data (FashionIQ val, CIRR test1), taken from `cir_lib.constants.PAPER_RESULTS`; the difference
section says what it compares, and the table's note says whether the run used the same data.

Figures (PNG + PDF, sized for a paper page): recall bars of the three rows, training curves of both
stages (from each run's history.csv), the distribution of the Combiner's lambda, retrieval grids.

Example:
    >>> rows = {"zero-shot sum": {"recall@1": 10.0, ...}, "stage 1 sum": {...}, ...}
    >>> table = cirr_table(rows)
    >>> write_table(table, "results/mini/tables", "cirr", title="CIRR val")
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from cir_lib.constants import CIRR_KS, CIRR_SUBSET_KS, FASHIONIQ_CATEGORIES, FASHIONIQ_KS, PAPER_RESULTS
from cir_lib.errors import ConfigError
from cir_lib.runs import atomic_write_text, jsonable, read_history

logger = logging.getLogger(__name__)

METHODS = ("zero-shot sum", "stage 1 sum", "stage 1 + Combiner")  # row order of every table
DATASET_NAMES = {"fashioniq": "FashionIQ", "cirr": "CIRR"}  # for titles
THIS_RUN = "this run"
PAPER_BACKBONES = ("RN50", "RN50x4")
PAPER_METHOD = "stage 1 + Combiner"  # the poster's rows are its full method
SOURCES = (THIS_RUN,) + tuple(f"paper {b}" for b in PAPER_BACKBONES)

FASHIONIQ_GROUPS = tuple(FASHIONIQ_CATEGORIES) + ("average",)
FASHIONIQ_COLUMNS = tuple(f"{g}_recall@{k}" for g in FASHIONIQ_GROUPS for k in FASHIONIQ_KS)
CIRR_COLUMNS = tuple(f"recall@{k}" for k in CIRR_KS) + tuple(f"recall_subset@{k}" for k in CIRR_SUBSET_KS)
TABLE_COLUMNS = {"fashioniq": FASHIONIQ_COLUMNS, "cirr": CIRR_COLUMNS}

PAPER_NOTE = {
    "fashioniq": "paper rows: the poster's stage 1 + Combiner on the real FashionIQ val split",
    "cirr": "paper rows: the poster's stage 1 + Combiner on the real CIRR test1 split (server)",
}

# Sizes that stay legible when a figure is printed at the width of a two-column paper page.
PAGE_WIDTH_IN = 6.9
FIG_RC = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 7, "figure.dpi": 100, "savefig.dpi": 200,
    "savefig.bbox": "tight",
}
METHOD_COLORS = {"zero-shot sum": "#9e9e9e", "stage 1 sum": "#4c72b0", "stage 1 + Combiner": "#dd8452"}


# --------------------------------------------------------------------------- tables


def _metric_value(metrics: Mapping[str, Any], key: str, where: str) -> float:
    if key not in metrics:
        raise ConfigError(f"{where}: metric {key!r} is missing (have {sorted(metrics)}); "
                          "pass the dict returned by cir_lib.evaluate")
    value = metrics[key]
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: metric {key!r} is not a number ({value!r})") from None


def _check_methods(rows: Mapping[str, Any], dataset: str) -> list[str]:
    unknown = [m for m in rows if m not in METHODS]
    if unknown:
        raise ConfigError(f"{dataset} table: unknown method(s) {unknown}; use names from {METHODS}")
    if not rows:
        raise ConfigError(f"{dataset} table: no rows given; pass {{method: metrics}} for {METHODS}")
    return [m for m in METHODS if m in rows]


def _fashioniq_flat(per_category: Mapping[str, Mapping[str, Any]], where: str) -> dict[str, float]:
    flat: dict[str, float] = {}
    for cat in FASHIONIQ_CATEGORIES:
        if cat not in per_category:
            raise ConfigError(f"{where}: category {cat!r} is missing (have {sorted(per_category)})")
        for k in FASHIONIQ_KS:
            flat[f"{cat}_recall@{k}"] = _metric_value(per_category[cat], f"recall@{k}", f"{where}/{cat}")
    for k in FASHIONIQ_KS:
        if "average" in per_category:
            flat[f"average_recall@{k}"] = _metric_value(per_category["average"], f"recall@{k}", f"{where}/average")
        else:  # the protocol's average: plain mean over the three categories
            flat[f"average_recall@{k}"] = float(np.mean([flat[f"{c}_recall@{k}"] for c in FASHIONIQ_CATEGORIES]))
    return flat


def _with_paper(frame: pd.DataFrame, dataset: str, include_paper: bool) -> pd.DataFrame:
    if not include_paper:
        return frame
    paper = [{"source": f"paper {b}", "method": PAPER_METHOD, **PAPER_RESULTS[dataset][b]} for b in PAPER_BACKBONES]
    return pd.concat([frame, pd.DataFrame(paper)], ignore_index=True)


def fashioniq_table(rows: Mapping[str, Mapping[str, Mapping[str, Any]]], *, include_paper: bool = True) -> pd.DataFrame:
    """The FashionIQ table: R@10 / R@50 per category and average, one row per method.

    Args:
        rows: {method: {"dress": {"recall@10": .., "recall@50": ..}, "shirt": .., "toptee": ..,
            "average": ..}} as returned by `cir_lib.evaluate.evaluate_fashioniq`; methods from
            `METHODS` (any subset). A missing "average" is computed as the mean of the categories.
        include_paper: append the poster's rows ("paper RN50", "paper RN50x4").

    Returns:
        DataFrame with columns source, method, dress_recall@10 ... average_recall@50.

    Example:
        >>> fashioniq_table({"stage 1 sum": evaluate_fashioniq(root, backbone, ElementwiseSum(), ...)})
    """
    methods = _check_methods(rows, "fashioniq")
    records = [{"source": THIS_RUN, "method": m, **_fashioniq_flat(rows[m], f"fashioniq row {m!r}")} for m in methods]
    frame = pd.DataFrame(records, columns=["source", "method", *FASHIONIQ_COLUMNS])
    return _with_paper(frame, "fashioniq", include_paper)[["source", "method", *FASHIONIQ_COLUMNS]]


def cirr_table(rows: Mapping[str, Mapping[str, Any]], *, include_paper: bool = True) -> pd.DataFrame:
    """The CIRR table: R@1/5/10/50 and Rsubset@1/2/3, one row per method.

    Args:
        rows: {method: {"recall@1": .., ..., "recall_subset@3": ..}} as returned by
            `cir_lib.evaluate.evaluate_cirr`; methods from `METHODS` (any subset).
        include_paper: append the poster's rows (its CIRR numbers are on test1).

    Returns:
        DataFrame with columns source, method, recall@1 ... recall_subset@3.

    Example:
        >>> cirr_table({"zero-shot sum": {"recall@1": 12.5, ...}})
    """
    methods = _check_methods(rows, "cirr")
    records = [{"source": THIS_RUN, "method": m,
                **{c: _metric_value(rows[m], c, f"cirr row {m!r}") for c in CIRR_COLUMNS}} for m in methods]
    frame = pd.DataFrame(records, columns=["source", "method", *CIRR_COLUMNS])
    return _with_paper(frame, "cirr", include_paper)[["source", "method", *CIRR_COLUMNS]]


def table_dataset(table: pd.DataFrame) -> str:
    """"fashioniq" or "cirr", from the table's metric columns."""
    for dataset, columns in TABLE_COLUMNS.items():
        if list(table.columns[2:]) == list(columns):
            return dataset
    raise ConfigError(f"not a result table: columns {list(table.columns)}")


def _row(table: pd.DataFrame, source: str, method: str) -> pd.Series | None:
    hit = table[(table["source"] == source) & (table["method"] == method)]
    return None if hit.empty else hit.iloc[0]


def difference_table(table: pd.DataFrame) -> pd.DataFrame:
    """Differences in recall points, each row labelled with what it compares.

    Rows: this run's "stage 1 sum" and "stage 1 + Combiner" minus this run's "zero-shot sum"
    (the gain of each stage), "stage 1 + Combiner" minus "stage 1 sum" (the Combiner's own gain),
    and this run's "stage 1 + Combiner" minus each paper row (present rows only).

    Returns:
        DataFrame with columns comparison, then the table's metric columns.
    """
    columns = list(table.columns[2:])
    pairs: list[tuple[str, tuple[str, str], tuple[str, str]]] = [
        ("this run: stage 1 sum - zero-shot sum", (THIS_RUN, "stage 1 sum"), (THIS_RUN, "zero-shot sum")),
        ("this run: stage 1 + Combiner - zero-shot sum", (THIS_RUN, "stage 1 + Combiner"), (THIS_RUN, "zero-shot sum")),
        ("this run: stage 1 + Combiner - stage 1 sum", (THIS_RUN, "stage 1 + Combiner"), (THIS_RUN, "stage 1 sum")),
    ]
    for backbone in PAPER_BACKBONES:
        pairs.append((f"this run's stage 1 + Combiner - paper {backbone}",
                      (THIS_RUN, "stage 1 + Combiner"), (f"paper {backbone}", PAPER_METHOD)))
    records = []
    for label, a, b in pairs:
        ra, rb = _row(table, *a), _row(table, *b)
        if ra is None or rb is None:
            continue
        records.append({"comparison": label, **{c: float(ra[c]) - float(rb[c]) for c in columns}})
    return pd.DataFrame(records, columns=["comparison", *columns])


def _header_label(column: str) -> str:
    """"dress_recall@10" -> "dress R@10"; "recall_subset@2" -> "Rs@2"."""
    group, _, metric = column.rpartition("_recall")
    if column.startswith("recall_subset@"):
        return "Rs@" + column.split("@")[1]
    if column.startswith("recall@"):
        return "R@" + column.split("@")[1]
    return f"{group} R{metric}"


def _fmt(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):+.2f}" if signed else f"{float(value):.2f}"


def to_markdown(table: pd.DataFrame, difference: pd.DataFrame | None = None, *, title: str = "",
                notes: Sequence[str] = ()) -> str:
    """The table (and its difference section) as GitHub Markdown, numbers to 2 decimals."""
    columns = list(table.columns[2:])
    lines = [f"### {title}", ""] if title else []
    lines.append("| source | method | " + " | ".join(_header_label(c) for c in columns) + " |")
    lines.append("| --- | --- | " + " | ".join("---:" for _ in columns) + " |")
    for _, row in table.iterrows():
        lines.append(f"| {row['source']} | {row['method']} | " + " | ".join(_fmt(row[c]) for c in columns) + " |")
    if difference is not None and not difference.empty:
        lines += ["", "Difference (recall points):", ""]
        lines.append("| comparison | " + " | ".join(_header_label(c) for c in columns) + " |")
        lines.append("| --- | " + " | ".join("---:" for _ in columns) + " |")
        for _, row in difference.iterrows():
            lines.append(f"| {row['comparison']} | " + " | ".join(_fmt(row[c], signed=True) for c in columns) + " |")
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: pd.DataFrame, difference: pd.DataFrame | None = None, *, caption: str = "",
             label: str = "") -> str:
    """The table as a booktabs LaTeX `table` (needs \\usepackage{booktabs}), poster layout."""
    dataset = table_dataset(table)
    columns = list(table.columns[2:])
    n = len(columns)
    out = [r"\begin{table}[t]", r"\centering", r"\small", r"\setlength{\tabcolsep}{4pt}",
           r"\begin{tabular}{ll" + "r" * n + "}", r"\toprule"]
    if dataset == "fashioniq":
        groups = " & ".join(rf"\multicolumn{{{len(FASHIONIQ_KS)}}}{{c}}{{{g.capitalize()}}}" for g in FASHIONIQ_GROUPS)
        out.append(r" & & " + groups + r" \\")
        rules = []
        for i in range(len(FASHIONIQ_GROUPS)):
            start = 3 + i * len(FASHIONIQ_KS)
            rules.append(rf"\cmidrule(lr){{{start}-{start + len(FASHIONIQ_KS) - 1}}}")
        out.append("".join(rules))
        out.append("Source & Method & " + " & ".join(f"R@{c.split('@')[1]}" for c in columns) + r" \\")
    else:
        nk, ns = len(CIRR_KS), len(CIRR_SUBSET_KS)
        out.append(rf" & & \multicolumn{{{nk}}}{{c}}{{Recall@K}} & \multicolumn{{{ns}}}{{c}}{{Recall$_\mathrm{{subset}}$@K}} \\")
        out.append(rf"\cmidrule(lr){{3-{2 + nk}}}\cmidrule(lr){{{3 + nk}-{2 + nk + ns}}}")
        out.append("Source & Method & " + " & ".join(f"K={c.split('@')[1]}" for c in columns) + r" \\")
    out.append(r"\midrule")
    previous = None
    for _, row in table.iterrows():
        if previous is not None and row["source"] != previous and previous == THIS_RUN:
            out.append(r"\midrule")
        previous = row["source"]
        out.append(f"{_tex_escape(row['source'])} & {_tex_escape(row['method'])} & "
                   + " & ".join(_fmt(row[c]) for c in columns) + r" \\")
    if difference is not None and not difference.empty:
        out.append(r"\midrule")
        out.append(rf"\multicolumn{{{n + 2}}}{{l}}{{\emph{{Difference (recall points)}}}} \\")
        for _, row in difference.iterrows():
            out.append(rf"\multicolumn{{2}}{{l}}{{{_tex_escape(row['comparison'])}}} & "
                       + " & ".join(_fmt(row[c], signed=True) for c in columns) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        out.append(rf"\caption{{{_tex_escape(caption)}}}")
    if label:
        out.append(rf"\label{{{label}}}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def write_table(table: pd.DataFrame, out_dir: str | os.PathLike, name: str, *, title: str = "",
                notes: Sequence[str] = (), meta: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write `<name>.csv`, `<name>.md`, `<name>.tex` and the sidecar `<name>.meta.json`.

    The CSV holds the table itself at full precision (source, method, metric columns); the
    Markdown and LaTeX files add the difference section (`difference_table`) and the notes; the
    sidecar records `meta` (run configs, environment, data root, ...).

    Args:
        table: from `fashioniq_table` / `cirr_table`.
        out_dir: folder for the files (created).
        name: file stem, "fashioniq" or "cirr".
        title: heading / caption of the Markdown and LaTeX versions.
        notes: lines printed under the table (what the rows are, which data).
        meta: JSON-serialisable record written to `<name>.meta.json` (and summarised in the .md).

    Returns:
        {"csv": path, "md": path, "tex": path, "meta": path}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    difference = difference_table(table)
    paths = {"csv": out / f"{name}.csv", "md": out / f"{name}.md", "tex": out / f"{name}.tex",
             "meta": out / f"{name}.meta.json"}
    atomic_write_text(paths["csv"], table.to_csv(index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.6g"))
    md = to_markdown(table, difference, title=title, notes=notes)
    if meta:
        md += "\n" + _meta_markdown(meta)
    atomic_write_text(paths["md"], md)
    caption = ". ".join(t.strip().rstrip(".") for t in [title, *notes] if t.strip())
    atomic_write_text(paths["tex"], to_latex(table, difference, caption=caption + "." if caption else "",
                                              label=f"tab:{name}"))
    atomic_write_text(paths["meta"], json.dumps(jsonable(dict(meta or {})), indent=2, sort_keys=True) + "\n")
    logger.info("wrote %s table to %s.{csv,md,tex}", name, out / name)
    return paths


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read back a table CSV written by `write_table`."""
    return pd.read_csv(path)


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


# --------------------------------------------------------------------------- figures

def _pyplot():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND") and "ipykernel" not in sys.modules:
        matplotlib.use("Agg")  # scripts and tests: no display needed
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, out_stem):
    """Save when asked, and detach the figure from pyplot so a notebook shows it once (when returned)."""
    if out_stem is not None:
        save_figure(fig, out_stem)
    else:
        _pyplot().close(fig)
    return fig


def save_figure(fig, stem: str | os.PathLike) -> list[Path]:
    """Save `fig` as `<stem>.png` and `<stem>.pdf` (folders created) and close it in pyplot.

    The figure object stays usable: a notebook can still show it with `display(fig)`.

    Returns:
        [png_path, pdf_path].
    """
    plt = _pyplot()
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    with plt.rc_context(FIG_RC):
        for path in paths:
            fig.savefig(path)
    plt.close(fig)
    logger.info("wrote figure %s.{png,pdf}", stem)
    return paths


def plot_recall_bars(table: pd.DataFrame, *, title: str = "", out_stem: str | os.PathLike | None = None):
    """Grouped bars of this run's three rows (zero-shot sum, stage 1 sum, stage 1 + Combiner).

    Args:
        table: from `fashioniq_table` / `cirr_table` (only the "this run" rows are drawn).
        title: axes title.
        out_stem: when given, save `<out_stem>.png/.pdf`.

    Returns:
        The matplotlib Figure.
    """
    plt = _pyplot()
    columns = list(table.columns[2:])
    ours = table[table["source"] == THIS_RUN]
    with plt.rc_context(FIG_RC):
        fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 2.4))
        width = 0.8 / max(len(ours), 1)
        x = np.arange(len(columns))
        for i, (_, row) in enumerate(ours.iterrows()):
            values = [float(row[c]) for c in columns]
            bars = ax.bar(x + (i - (len(ours) - 1) / 2) * width, values, width, label=row["method"],
                          color=METHOD_COLORS.get(row["method"]))
            ax.bar_label(bars, fmt="%.0f", fontsize=5.5, padding=1)
        ax.set_xticks(x, [_header_label(c).replace(" ", "\n") for c in columns])
        ax.set_ylabel("recall (%)")
        ax.set_ylim(0, 106)
        ax.set_yticks(range(0, 101, 20))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
        if title:
            ax.set_title(title, pad=16)
        fig.tight_layout()
    return _finish(fig, out_stem)


def plot_training_curves(runs: Mapping[str, Mapping[str, str | os.PathLike]], *, title: str = "",
                         out_stem: str | os.PathLike | None = None):
    """Training loss and validation score per epoch for both stages, one line per dataset.

    Args:
        runs: {stage label: {dataset: run_dir}}, e.g. {"stage 1": {"fashioniq": d1, "cirr": d2},
            "Combiner": {...}}; each run_dir holds the history.csv cir_lib.train writes (`epoch`,
            `loss`, and `score` on the validated epochs).
        title: figure title.
        out_stem: when given, save `<out_stem>.png/.pdf`.

    Returns:
        The matplotlib Figure (rows: stages; columns: loss, validation score).
    """
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    stages = list(runs)
    with plt.rc_context(FIG_RC):
        fig, axes = plt.subplots(len(stages), 2, figsize=(PAGE_WIDTH_IN, 2.0 * len(stages) + 0.3), squeeze=False)
        for r, stage in enumerate(stages):
            ax_loss, ax_score = axes[r]
            for dataset, run_dir in runs[stage].items():
                hist = read_history(run_dir)
                ax_loss.plot(hist["epoch"], hist["loss"], marker="o", ms=2.5, label=dataset)
                if "score" in hist.columns and hist["score"].notna().any():
                    ok = hist["score"].notna()
                    ax_score.plot(hist["epoch"][ok], hist["score"][ok], marker="o", ms=2.5, label=dataset)
            ax_loss.set_title(f"{stage}: training loss")
            ax_score.set_title(f"{stage}: validation score (%)")
            for ax in (ax_loss, ax_score):
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel("epoch")
                ax.grid(alpha=0.3)
                if ax.lines:
                    ax.legend(frameon=False)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return _finish(fig, out_stem)


def plot_lambda_distribution(lambdas: Mapping[str, Sequence[float] | np.ndarray], *, title: str = "",
                             out_stem: str | os.PathLike | None = None):
    """Histograms of the Combiner's lambda (weight of the text feature), overall and per dataset.

    lambda near 1 means the Combiner leans on the caption's feature, near 0 on the reference
    image's feature (output = normalize(mixture + lambda * text + (1 - lambda) * image)).

    Args:
        lambdas: {dataset: lambda per validation query}.
        title: figure title.
        out_stem: when given, save `<out_stem>.png/.pdf`.

    Returns:
        The matplotlib Figure (first panel: all datasets pooled; then one per dataset).
    """
    plt = _pyplot()
    values = {k: np.asarray(v, dtype=float).ravel() for k, v in lambdas.items()}
    if not values or not any(len(v) for v in values.values()):
        raise ConfigError("no lambda values to plot: pass {dataset: lambdas} from the Combiner runs")
    panels = [("all datasets", np.concatenate(list(values.values())))] + list(values.items())
    bins = np.linspace(0, 1, 41)
    with plt.rc_context(FIG_RC):
        fig, axes = plt.subplots(1, len(panels), figsize=(PAGE_WIDTH_IN, 2.2), sharey=False, squeeze=False)
        for ax, (label, v) in zip(axes[0], panels):
            ax.hist(v, bins=bins, color="#dd8452" if label == "all datasets" else "#4c72b0", alpha=0.9)
            ax.axvline(float(np.mean(v)), color="k", lw=1, ls="--")
            ax.set_title(f"{label} (n={len(v)}, mean {np.mean(v):.2f})")
            ax.set_xlabel("lambda (weight of text)")
            ax.set_xlim(0, 1)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("queries")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return _finish(fig, out_stem)


def plot_retrieval_grid(examples: Sequence[Mapping[str, Any]], *, title: str = "",
                        out_stem: str | os.PathLike | None = None, thumb_in: float = 0.62):
    """Retrieval grid: per query the reference, the caption, and the top-k of sum and Combiner.

    Args:
        examples: one dict per query with keys `reference` (image path), `caption` (str),
            `target` (image name or None), and `rankings`: {method label: [(name, path), ...]}
            (top-k, best first), e.g. {"stage 1 sum": [...], "stage 1 + Combiner": [...]};
            optionally `lambda` (the Combiner's lambda, printed under the caption), `group`
            (e.g. the FashionIQ category, printed over the reference), `target_path` (the target
            image, drawn under the reference) and `target_ranks` ({method: the target's rank in the
            whole index, 1 = first}, printed under each method's name).
            A retrieved image equal to the target gets a green frame.
        title: figure title.
        out_stem: when given, save `<out_stem>.png/.pdf`.
        thumb_in: thumbnail size in inches.

    Returns:
        The matplotlib Figure.
    """
    from PIL import Image

    plt = _pyplot()
    if not examples:
        raise ConfigError("no retrieval examples to draw")
    k = max(len(r) for ex in examples for r in ex["rankings"].values())
    gap = 0.25  # spacer row between queries, in thumbnail heights
    heights = []
    for i, ex in enumerate(examples):
        heights += [1.0] * len(ex["rankings"]) + ([gap] if i < len(examples) - 1 else [])
    with plt.rc_context(FIG_RC):
        height = thumb_in * 1.15 * sum(heights) + 0.4
        fig = plt.figure(figsize=(thumb_in * (k + 1) + 2.8, height))
        grid = fig.add_gridspec(len(heights), k + 3, width_ratios=[1, 2.1, 1.05] + [1] * k,
                                height_ratios=heights, wspace=0.06, hspace=0.28,
                                top=1 - 0.35 / height, bottom=0.1 / height)
        row = 0
        for ex in examples:
            methods = list(ex["rankings"])
            span = slice(row, row + len(methods))
            with_target = ex.get("target_path") is not None and len(methods) > 1
            ax_ref = fig.add_subplot(grid[row, 0] if with_target else grid[span, 0])
            ax_ref.imshow(Image.open(ex["reference"]).convert("RGB"))
            ax_ref.set_title(f"reference ({ex['group']})" if ex.get("group") else "reference", fontsize=6.5, pad=2)
            ax_ref.axis("off")
            if with_target:
                ax_tgt = fig.add_subplot(grid[row + 1, 0])
                ax_tgt.imshow(Image.open(ex["target_path"]).convert("RGB"))
                ax_tgt.set_xticks([])
                ax_tgt.set_yticks([])
                for spine in ax_tgt.spines.values():
                    spine.set_edgecolor("#2ca02c")
                    spine.set_linewidth(2.5)
                ax_tgt.set_title("target", fontsize=6.5, color="#2ca02c", pad=2)
            ax_txt = fig.add_subplot(grid[span, 1])
            ax_txt.axis("off")
            text = _wrap(f"\u201c{ex['caption']}\u201d", 21)
            if ex.get("lambda") is not None:
                text += f"\n\nCombiner \u03bb = {float(ex['lambda']):.2f}"
            ax_txt.text(0.04, 0.5, text, va="center", ha="left", fontsize=6.5, style="italic",
                        transform=ax_txt.transAxes)
            for m in methods:
                ax_lab = fig.add_subplot(grid[row, 2])
                ax_lab.axis("off")
                label = _wrap(m, 12)
                if (ex.get("target_ranks") or {}).get(m) is not None:
                    label += f"\ntarget #{ex['target_ranks'][m]}"
                ax_lab.text(0.95, 0.5, label, va="center", ha="right", fontsize=6.5, weight="bold",
                            color=METHOD_COLORS.get(m, "k"), transform=ax_lab.transAxes)
                for j, (name, path) in enumerate(ex["rankings"][m][:k]):
                    ax = fig.add_subplot(grid[row, 3 + j])
                    ax.imshow(Image.open(path).convert("RGB"))
                    ax.set_xticks([])
                    ax.set_yticks([])
                    hit = ex.get("target") is not None and name == ex["target"]
                    for spine in ax.spines.values():
                        spine.set_visible(hit)
                        spine.set_edgecolor("#2ca02c")
                        spine.set_linewidth(2.5)
                    if hit:
                        ax.set_title("target", fontsize=6, color="#2ca02c", pad=1.5)
                    elif row == 0:
                        ax.set_title(f"#{j + 1}", fontsize=6, pad=1.5)
                row += 1
            row += 1  # the spacer row
        if title:
            fig.suptitle(title, y=1.0)
    return _finish(fig, out_stem)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:5])


def plot_triplets(split, n: int = 4, *, seed: int = 0, title: str = "", out_stem: str | os.PathLike | None = None):
    """A few triplets of a split: reference image, caption, target image (one column per triplet).

    Args:
        split: a `cir_lib.data.Split` with targets (train or val).
        n: how many triplets (drawn at random, seeded).
        seed: the draw's seed.
        title: figure title.
        out_stem: when given, save `<out_stem>.png/.pdf`.

    Returns:
        The matplotlib Figure.
    """
    from PIL import Image

    from cir_lib.data import eval_captions

    plt = _pyplot()
    queries = split.queries
    if not queries:
        raise ConfigError(f"{split.label} has no queries to draw")
    picks = np.random.default_rng(seed).choice(len(queries), size=min(n, len(queries)), replace=False)
    captions = eval_captions(split)
    paths = dict(zip(split.image_names, split.image_paths))
    with plt.rc_context(FIG_RC):
        fig, axes = plt.subplots(3, len(picks), figsize=(max(PAGE_WIDTH_IN, 1.25 * len(picks)), 3.8), squeeze=False,
                                 gridspec_kw={"height_ratios": [1, 0.55, 1]})
        for c, i in enumerate(picks):
            q = queries[int(i)]
            for r, (name, label) in ((0, (q.reference, "reference")), (2, (q.target, "target"))):
                ax = axes[r][c]
                ax.axis("off")
                if name is not None and name in paths:
                    ax.imshow(Image.open(paths[name]).convert("RGB"))
                ax.set_title(label, fontsize=6.5, pad=2)
            axes[1][c].axis("off")
            axes[1][c].text(0.5, 0.5, _wrap(captions[int(i)], 20), ha="center", va="center", fontsize=6,
                            style="italic", transform=axes[1][c].transAxes)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return _finish(fig, out_stem)
