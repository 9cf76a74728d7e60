"""Figures of the results, sized for a paper page and byte-identical on reruns.

PNG + PDF (optionally SVG): recall bars of this run's rows (from a `cir_lib.tables` table),
training curves of both stages (from each run's history.csv), the distribution of the Combiner's
lambda, retrieval grids, triplets. Each `plot_*` returns the Figure and, given `out_stem`, saves it
with `save_figure`.

Example:
    >>> table = tables.cirr_table(rows, backbone="RN50")
    >>> plot_recall_bars(table, title="CIRR val", out_stem="results/mini/figures/recall_bars_cirr")
"""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from cir_lib.errors import ConfigError
from cir_lib.runs import atomic_write, read_history
from cir_lib.storage import writing
from cir_lib.methods import ABLATION_METHODS, COMPOSER_METHODS, MAIN_METHODS, method_of
from cir_lib.table_formats import header_label
from cir_lib.tables import ALL_ROWS, THIS_RUN, is_ablation, metric_columns
from cir_lib.data import eval_captions

logger = logging.getLogger(__name__)

# Sizes that stay legible when a figure is printed at the width of a two-column paper page.
PAGE_WIDTH_IN = 6.9
FIG_RC = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "legend.fontsize": 7, "figure.dpi": 100, "savefig.dpi": 200,
    "savefig.bbox": "tight", "svg.hashsalt": "cir_lib",  # fixed SVG ids: byte-identical reruns
}
FIGURE_FORMATS = ("png", "pdf", "svg")
# Metadata that would change from one save to the next (dates) or with the installed versions.
_SAVE_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None},
                  "svg": {"Date": None, "Creator": None}}
# Colours by (composer, encoders); ablations by their encoders, told apart by a hatch per composer.
# The composer rows: one hue per composer, lighter over the zero-shot encoders.
_COLORS = {("sum", "zero-shot"): "#9e9e9e", ("sum", "finetune"): "#4c72b0", ("combiner", "finetune"): "#dd8452",
           ("combiner", "zero-shot"): "#f0b98d", ("tirg", "zero-shot"): "#98d4a4", ("tirg", "finetune"): "#55a868",
           ("artemis", "zero-shot"): "#d99a9c", ("artemis", "finetune"): "#c44e52"}
_ABLATION_COLORS = {"zero-shot": "#d4d4d4", "finetune": "#a9bcdc"}
METHOD_COLORS = {m.label: _COLORS[(m.composer, m.encoders)] for m in MAIN_METHODS + COMPOSER_METHODS} | {
    m.label: _ABLATION_COLORS[m.encoders] for m in ABLATION_METHODS}  # by display label, for the rows' labels
ABLATION_HATCH = {"image_only": "////", "text_only": "...."}  # by composer name


def _pyplot():
    # here, not at the top: the backend is chosen before pyplot loads, and explore (so notebook, which
    # `cir-lib reproduce` loads) imports this module: pyplot and seaborn cost 0.6 s and 1.0 s (measured)
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


def save_figure(fig, stem: str | os.PathLike, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save `fig` as `<stem>.<format>` for each format (folders created) and close it in pyplot.

    The files are byte-identical from one run to the next (no dates or version strings in the
    metadata, fixed SVG ids), so regenerated figures show no spurious diffs. The figure object
    stays usable: a notebook can still show it with `display(fig)`.

    Args:
        fig: a matplotlib Figure.
        stem: path without extension.
        formats: among "png", "pdf", "svg".

    Returns:
        The written paths, in `formats` order.

    Example:
        >>> save_figure(plot_recall_bars(table), "results/mini/figures/recall_bars_cirr", ("png", "pdf", "svg"))
    """
    unknown = [f for f in formats if f not in FIGURE_FORMATS]
    if unknown or not formats:
        raise ConfigError(f"figure formats must be among {FIGURE_FORMATS}; got {list(formats)}")
    plt = _pyplot()
    stem = Path(stem)
    with writing(stem.parent, "figure folder"):
        stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(f"{stem.name}.{fmt}") for fmt in formats]
    with plt.rc_context(FIG_RC):
        for fmt, path in zip(formats, paths):
            # atomically (a temporary file, then renamed): a full disk leaves no half-written figure
            atomic_write(path, lambda f, fmt=fmt: fig.savefig(f, format=fmt, metadata=_SAVE_METADATA[fmt]))
    plt.close(fig)
    logger.info("wrote figure %s.{%s}", stem, ",".join(formats))
    return paths


def _bar_rows(table: pd.DataFrame) -> pd.DataFrame:
    """This run's val rows, main methods, composer rows, then ablations, backbone by backbone."""
    ours = table[(table["source"] == THIS_RUN) & (table["split"] == "val")]
    order = {m: i for i, m in enumerate(ALL_ROWS)}
    backbones = pd.Categorical(ours["backbone"], ours["backbone"].unique())  # first-seen order
    ours = ours.assign(_order=ours["method"].map(order), _bb=backbones)
    return ours.sort_values(["_bb", "_order"], kind="stable").drop(columns=["_order", "_bb"])


def plot_recall_bars(table: pd.DataFrame, *, title: str = "", out_stem: str | os.PathLike | None = None):
    """Grouped bars of this run's val rows: the main methods, the composer rows (zero-shot + Combiner,
    TIRG, ARTEMIS), then the ablations (hatched, lighter).

    Error bars show the 95% bootstrap interval where the table has one.

    Args:
        table: from `fashioniq_table` / `cirr_table` (only the "this run" val rows are drawn; with
            several backbones, one bar per method and backbone).
        title: axes title.
        out_stem: when given, save `<out_stem>.png/.pdf`.

    Returns:
        The matplotlib Figure.
    """
    import seaborn as sns  # here: it imports pyplot (see _pyplot)
    from matplotlib.container import BarContainer

    plt = _pyplot()
    columns = metric_columns(table)
    ours = _bar_rows(table)
    several = ours["backbone"].nunique() > 1
    labels, colors, long = [], [], []
    for _, row in ours.iterrows():
        label = f"{row['method']} ({row['backbone']})" if several else row["method"]
        label += " (ablation)" if is_ablation(row["method"]) else ""
        labels.append(label)
        colors.append(METHOD_COLORS.get(row["method"], "#777777"))
        for c in columns:
            long.append({"metric": header_label(c).replace(" ", "\n"), "recall": float(row[c]), "row": label,
                         "low": row.get(c + "_ci_low"), "high": row.get(c + "_ci_high")})
    long = pd.DataFrame(long, columns=["metric", "recall", "row", "low", "high"])
    with plt.rc_context(FIG_RC):
        fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, 2.4))
        if labels:
            sns.barplot(data=long, x="metric", y="recall", hue="row", hue_order=labels, palette=colors,
                        errorbar=None, width=0.8, saturation=1.0, legend=False, ax=ax)
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        for label, container, (_, row) in zip(labels, bars, ours.iterrows()):
            part = long[long["row"] == label]
            hatch = ABLATION_HATCH.get(method_of(row["method"]).composer) if is_ablation(row["method"]) else None
            for patch in container:
                patch.set_edgecolor("white" if hatch is None else "#555555")
                patch.set_linewidth(0.3)
                if hatch:
                    patch.set_hatch(hatch)
            if part["low"].notna().all() and part["high"].notna().all():
                x = [p.get_x() + p.get_width() / 2 for p in container]
                v = part["recall"].to_numpy(float)
                yerr = np.vstack([v - part["low"].to_numpy(float), part["high"].to_numpy(float) - v])
                ax.errorbar(x, v, yerr=yerr, fmt="none", ecolor="#222222", elinewidth=0.6, capsize=1.2)
            if not is_ablation(row["method"]) and len(labels) <= 4:
                ax.bar_label(container, fmt="%.0f", fontsize=5.5, padding=1)
        ax.set_xlabel("")
        ax.set_ylabel("recall (%)")
        ax.set_ylim(0, 106)
        ax.set_yticks(range(0, 101, 20))
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        if labels:
            ax.legend([c[0] for c in bars], labels, ncol=min(len(labels), 4), loc="lower center",
                      bbox_to_anchor=(0.5, 1.0), frameon=False)
        if title:
            ax.set_title(title, pad=16 + 13 * ((len(labels) - 1) // 4))  # above the legend rows
        fig.tight_layout()
    return _finish(fig, out_stem)


def plot_training_curves(runs: Mapping[str, Mapping[str, str | os.PathLike]], *, title: str = "",
                         out_stem: str | os.PathLike | None = None):
    """Training loss and validation score per epoch for both stages, one line per dataset.

    Args:
        runs: {stage label: {dataset: run_dir}}, e.g. {"stage 1": {"fashioniq": d1, "cirr": d2},
            "Combiner": {...}}; each run_dir holds the history.csv training writes (`epoch`,
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
    import seaborn as sns  # here: it imports pyplot (see _pyplot)

    plt = _pyplot()
    values = {k: np.asarray(v, dtype=float).ravel() for k, v in lambdas.items()}
    if not values or not any(len(v) for v in values.values()):
        raise ConfigError("no lambda values to plot: pass {dataset: lambdas} from the Combiner runs")
    panels = [("all datasets", np.concatenate(list(values.values())))] + list(values.items())
    bins = np.linspace(0, 1, 41)
    with plt.rc_context(FIG_RC):
        fig, axes = plt.subplots(1, len(panels), figsize=(PAGE_WIDTH_IN, 2.2), sharey=False, squeeze=False)
        for ax, (label, v) in zip(axes[0], panels):
            sns.histplot(x=v, bins=bins, color="#dd8452" if label == "all datasets" else "#4c72b0", alpha=0.9,
                         edgecolor="white", linewidth=0.3, ax=ax)
            ax.axvline(float(np.mean(v)), color="k", lw=1, ls="--")
            ax.set_title(f"{label} (n={len(v)}, mean {np.mean(v):.2f})")
            ax.set_xlabel("lambda (weight of text)")
            ax.set_ylabel("")
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
