"""Figures of cir_lib.figures (written files, bars, byte-identical reruns), on synthetic result dicts
and run folders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cir_lib import figures, runs, tables
from cir_lib.errors import ConfigError
from result_rows import RNG, cirr_ranked, cirr_rows


def _history(run_dir, epochs, with_score=True):
    run_dir.mkdir(parents=True)
    frame = pd.DataFrame({"epoch": range(1, epochs + 1), "loss": np.linspace(3, 1, epochs)})
    if with_score:  # as cir_lib.train writes it: a score on the validated epochs only
        frame["score"] = np.where(np.arange(epochs) % 2 == 1, np.linspace(20, 60, epochs), np.nan)
    frame.to_csv(run_dir / "history.csv", index=False)
    return run_dir


def test_figures_written_as_png_and_pdf(tmp_path):
    table = tables.cirr_table(cirr_rows())
    fig = figures.plot_recall_bars(table, title="CIRR", out_stem=tmp_path / "figs" / "bars")
    assert [len(c) for c in _bars(fig.axes[0])] == [7] * 3  # three rows, seven metrics
    runs = {"stage 1": {"fashioniq": _history(tmp_path / "a", 3), "cirr": _history(tmp_path / "b", 2)},
            "Combiner": {"fashioniq": _history(tmp_path / "c", 4, with_score=False)}}
    fig = figures.plot_training_curves(runs, out_stem=tmp_path / "figs" / "curves")
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[2].lines) == 1
    fig = figures.plot_lambda_distribution({"fashioniq": RNG.uniform(0, 1, 50), "cirr": RNG.uniform(0, 1, 30)},
                                          out_stem=tmp_path / "figs" / "lambda")
    assert len(fig.axes) == 3 and "n=80" in fig.axes[0].get_title()
    images = []
    for i in range(5):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (32, 40), (40 * i, 90, 200 - 30 * i)).save(path)
        images.append((f"img{i}", path))
    examples = [{"reference": images[0][1], "caption": "is red and has longer sleeves", "target": "img2",
                 "rankings": {"stage 1 sum": images[1:4], "stage 1 + Combiner": [images[2], images[1], images[3]]}},
                {"reference": images[1][1], "caption": "is blue", "target": "img4", "target_path": images[4][1],
                 "target_ranks": {"stage 1 sum": 17, "stage 1 + Combiner": 3}, "lambda": 0.7,
                 "rankings": {"stage 1 sum": images[:3], "stage 1 + Combiner": [images[0], images[2], images[4]]}}]
    fig = figures.plot_retrieval_grid(examples, out_stem=tmp_path / "figs" / "grid")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts + [ax.title]]
    assert any("target #17" in t for t in texts) and any("target #3" in t for t in texts)
    assert sum(t == "target" for t in texts) == 4  # 3 hits in the rankings + the second query's target image
    for stem in ("bars", "curves", "lambda", "grid"):
        for ext in ("png", "pdf"):
            path = tmp_path / "figs" / f"{stem}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path


def _bars(ax):
    from matplotlib.container import BarContainer

    return [c for c in ax.containers if isinstance(c, BarContainer)]


def test_recall_bars_show_ablations_hatched_and_intervals():
    from matplotlib.container import ErrorbarContainer

    methods = tables.METHODS + ("stage 1 image only", "stage 1 text only")
    rows, ranks = cirr_ranked(methods, seed=7)
    table = tables.cirr_table(rows, ranks=ranks, context=("cited", "published"), n_boot=40)
    ax = figures.plot_recall_bars(table).axes[0]
    bars = _bars(ax)
    assert len(bars) == 5 and all(len(c) == 7 for c in bars)  # this run's rows only, ablations after
    hatches = [{p.get_hatch() for p in c} for c in bars]
    assert hatches[:3] == [{None}] * 3 and hatches[3] == {"////"} and hatches[4] == {"...."}
    colors = [c[0].get_facecolor() for c in bars]
    assert colors[3] != colors[1] and colors[4] == colors[3]  # lighter than the stage-1 sum
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[3:] == ["stage 1 image only (ablation)", "stage 1 text only (ablation)"]
    errors = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(errors) == 5
    # the error bar of the first row's R@1 spans its interval
    segment = errors[0].lines[2][0].get_segments()[0]
    assert (segment[0][1], segment[1][1]) == pytest.approx((table.iloc[-5]["recall@1_ci_low"],
                                                             table.iloc[-5]["recall@1_ci_high"]))
    plain = figures.plot_recall_bars(tables.cirr_table(rows, context=())).axes[0]
    assert not [c for c in plain.containers if isinstance(c, ErrorbarContainer)]


def test_saved_figures_are_byte_identical_on_rerun(tmp_path):
    rows, ranks = cirr_ranked(tables.METHODS + ("zero-shot text only",), seed=2)
    table = tables.cirr_table(rows, ranks=ranks, n_boot=30)
    files = {}
    for attempt in ("a", "b"):
        paths = figures.save_figure(figures.plot_recall_bars(table, title="CIRR"), tmp_path / attempt / "bars",
                                   formats=("png", "pdf", "svg"))
        paths += figures.save_figure(figures.plot_lambda_distribution({"cirr": np.linspace(0, 1, 50)}),
                                    tmp_path / attempt / "lambda", formats=("pdf", "svg", "png"))
        files[attempt] = [p.read_bytes() for p in paths]
        assert [p.suffix for p in paths] == [".png", ".pdf", ".svg", ".pdf", ".svg", ".png"]
    assert files["a"] == files["b"]
    assert all(len(b) > 1000 for b in files["a"])
    assert b"CreationDate" not in files["a"][1] and b"<dc:date>" not in files["a"][2]
    with pytest.raises(ConfigError, match="formats"):
        figures.save_figure(figures.plot_lambda_distribution({"cirr": [0.5]}), tmp_path / "x", formats=("jpg",))


def test_history_missing_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="history.csv"):
        runs.read_history(tmp_path)


def test_triplets_figure(tmp_path):
    from cir_lib.data import Query, Split

    names = [f"img{i}" for i in range(4)]
    paths = []
    for i, name in enumerate(names):
        paths.append(tmp_path / f"{name}.png")
        Image.new("RGB", (30, 36), (60 * i, 80, 120)).save(paths[-1])
    queries = [Query(reference="img0", captions=("is red.", "has long sleeves"), target="img1", category="dress"),
               Query(reference="img2", captions=("is blue", "is shorter"), target="img3", category="dress")]
    split = Split("fashioniq", "train", "dress", tmp_path, names, paths, queries)
    fig = figures.plot_triplets(split, n=5, out_stem=tmp_path / "triplets")
    assert len(fig.axes) == 3 * 2  # min(n, queries) columns of reference / caption / target
    texts = [t.get_text().replace("\n", " ") for ax in fig.axes for t in ax.texts]
    assert any("Is red and has long sleeves" in t for t in texts)
    assert (tmp_path / "triplets.png").is_file() and (tmp_path / "triplets.pdf").is_file()
