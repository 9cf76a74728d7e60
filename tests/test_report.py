"""Tables and figures of cir_lib.report, on synthetic result dicts and run folders."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cir_lib import report, runs
from cir_lib.constants import PAPER_RESULTS
from cir_lib.errors import ConfigError

RNG = np.random.default_rng(0)


def _fashioniq_rows(with_average=True):
    rows = {}
    for i, method in enumerate(reversed(report.METHODS)):  # given out of order on purpose
        per = {c: {"recall@10": float(RNG.uniform(0, 60)) + i / 7, "recall@50": float(RNG.uniform(40, 99))}
               for c in ("dress", "shirt", "toptee")}
        if with_average:
            per["average"] = {k: float(np.mean([per[c][k] for c in ("dress", "shirt", "toptee")]))
                              for k in ("recall@10", "recall@50")}
        per["skipped"] = {"queries": 0}  # extra keys from evaluate are ignored
        rows[method] = per
    return rows


def _cirr_rows():
    keys = [f"recall@{k}" for k in (1, 5, 10, 50)] + [f"recall_subset@{k}" for k in (1, 2, 3)]
    return {m: {k: float(RNG.uniform(0, 100)) + 1 / 3 for k in keys} for m in report.METHODS}


def test_fashioniq_table_columns_order_and_numbers():
    rows = _fashioniq_rows()
    table = report.fashioniq_table(rows)
    assert list(table.columns) == ["source", "method", "dress_recall@10", "dress_recall@50", "shirt_recall@10",
                                   "shirt_recall@50", "toptee_recall@10", "toptee_recall@50",
                                   "average_recall@10", "average_recall@50"]
    assert list(table["source"]) == ["this run"] * 3 + ["paper RN50", "paper RN50x4"]
    assert list(table["method"][:3]) == ["zero-shot sum", "stage 1 sum", "stage 1 + Combiner"]
    assert list(table["method"][3:]) == ["stage 1 + Combiner"] * 2
    row = table.iloc[1]
    assert row["shirt_recall@50"] == rows["stage 1 sum"]["shirt"]["recall@50"]
    assert row["average_recall@10"] == pytest.approx(rows["stage 1 sum"]["average"]["recall@10"])
    assert table.iloc[4]["toptee_recall@10"] == PAPER_RESULTS["fashioniq"]["RN50x4"]["toptee_recall@10"]


def test_fashioniq_average_computed_when_absent():
    rows = _fashioniq_rows(with_average=False)
    table = report.fashioniq_table(rows, include_paper=False)
    assert len(table) == 3
    r = rows["zero-shot sum"]
    expect = (r["dress"]["recall@50"] + r["shirt"]["recall@50"] + r["toptee"]["recall@50"]) / 3
    assert table.iloc[0]["average_recall@50"] == pytest.approx(expect)


def test_cirr_table_and_subset_of_methods():
    rows = _cirr_rows()
    table = report.cirr_table({"stage 1 + Combiner": rows["stage 1 + Combiner"], "zero-shot sum": rows["zero-shot sum"]})
    assert list(table.columns[2:]) == ["recall@1", "recall@5", "recall@10", "recall@50", "recall_subset@1",
                                       "recall_subset@2", "recall_subset@3"]
    assert list(table["method"]) == ["zero-shot sum", "stage 1 + Combiner", "stage 1 + Combiner", "stage 1 + Combiner"]
    assert table.iloc[0]["recall_subset@2"] == rows["zero-shot sum"]["recall_subset@2"]
    assert table.iloc[2]["recall@1"] == PAPER_RESULTS["cirr"]["RN50"]["recall@1"]


def test_bad_rows_are_refused():
    with pytest.raises(ConfigError, match="unknown method"):
        report.cirr_table({"stage one": _cirr_rows()["stage 1 sum"]})
    broken = _cirr_rows()
    del broken["stage 1 sum"]["recall@5"]
    with pytest.raises(ConfigError, match="recall@5"):
        report.cirr_table(broken)
    rows = _fashioniq_rows()
    del rows["zero-shot sum"]["toptee"]
    with pytest.raises(ConfigError, match="toptee"):
        report.fashioniq_table(rows)


def test_difference_rows_are_labelled_and_correct():
    rows = _cirr_rows()
    table = report.cirr_table(rows)
    diff = report.difference_table(table)
    labels = list(diff["comparison"])
    assert "this run: stage 1 + Combiner - stage 1 sum" in labels
    assert "this run's stage 1 + Combiner - paper RN50x4" in labels
    got = diff.set_index("comparison").loc["this run's stage 1 + Combiner - paper RN50", "recall@10"]
    assert got == pytest.approx(rows["stage 1 + Combiner"]["recall@10"] - PAPER_RESULTS["cirr"]["RN50"]["recall@10"])


def test_write_table_round_trips_and_writes_every_file(tmp_path):
    rows = _fashioniq_rows()
    table = report.fashioniq_table(rows)
    meta = {"profile": "test", "runs": {"fashioniq stage 1": {"recipe": "smoke", "epochs": 1}},
            "environment": runs.environment_info("cpu")}
    paths = report.write_table(table, tmp_path / "tables", "fashioniq", title="FashionIQ val",
                               notes=["not the paper's data"], meta=meta)
    assert {p.name for p in paths.values()} == {"fashioniq.csv", "fashioniq.md", "fashioniq.tex", "fashioniq.meta.json"}
    back = report.read_table(paths["csv"])
    assert list(back.columns) == list(table.columns)
    assert list(back["method"]) == list(table["method"])
    np.testing.assert_allclose(back.iloc[:, 2:].to_numpy(float), table.iloc[:, 2:].to_numpy(float), rtol=1e-5)
    md = paths["md"].read_text()
    assert "not the paper's data" in md and "Difference (recall points)" in md and "| paper RN50x4 |" in md
    assert f"{rows['stage 1 sum']['dress']['recall@10']:.2f}" in md
    tex = paths["tex"].read_text()
    assert r"\begin{tabular}" in tex and r"\bottomrule" in tex and "stage 1 + Combiner" in tex
    assert tex.count(r"\\") >= 5 + 5  # five table rows and five difference rows at least
    saved = json.loads(paths["meta"].read_text())
    assert saved["runs"]["fashioniq stage 1"]["recipe"] == "smoke"
    assert "torch" in saved["environment"]["packages"] and saved["environment"]["device"].startswith("cpu")


def test_environment_info_fields():
    env = runs.environment_info("cpu")
    assert set(env) >= {"python", "platform", "packages", "git_commit", "device"}
    assert env["packages"]["pandas"] == pd.__version__


def test_git_state_ignores_results_folder(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo, plain = tmp_path / "repo", tmp_path / "plain"
    (repo / "results").mkdir(parents=True)
    plain.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)
    run("init", "-q")
    (repo / "results" / "table.md").write_text("old")
    (repo / "code.py").write_text("x = 1")
    run("add", ".")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    commit, dirty = runs.git_state(repo)
    assert len(commit) == 40 and dirty is False
    (repo / "results" / "table.md").write_text("new")
    assert runs.git_state(repo) == (commit, False)
    (repo / "code.py").write_text("x = 2")
    assert runs.git_state(repo) == (commit, True)
    assert runs.git_state(plain) == (None, None)


def _history(run_dir, epochs, with_score=True):
    run_dir.mkdir(parents=True)
    frame = pd.DataFrame({"epoch": range(1, epochs + 1), "loss": np.linspace(3, 1, epochs)})
    if with_score:  # as cir_lib.train writes it: a score on the validated epochs only
        frame["score"] = np.where(np.arange(epochs) % 2 == 1, np.linspace(20, 60, epochs), np.nan)
    frame.to_csv(run_dir / "history.csv", index=False)
    return run_dir


def test_figures_written_as_png_and_pdf(tmp_path):
    table = report.cirr_table(_cirr_rows())
    fig = report.plot_recall_bars(table, title="CIRR", out_stem=tmp_path / "figs" / "bars")
    assert len(fig.axes[0].patches) == 3 * 7  # three rows, seven metrics
    runs = {"stage 1": {"fashioniq": _history(tmp_path / "a", 3), "cirr": _history(tmp_path / "b", 2)},
            "Combiner": {"fashioniq": _history(tmp_path / "c", 4, with_score=False)}}
    fig = report.plot_training_curves(runs, out_stem=tmp_path / "figs" / "curves")
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[2].lines) == 1
    fig = report.plot_lambda_distribution({"fashioniq": RNG.uniform(0, 1, 50), "cirr": RNG.uniform(0, 1, 30)},
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
    fig = report.plot_retrieval_grid(examples, out_stem=tmp_path / "figs" / "grid")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts + [ax.title]]
    assert any("target #17" in t for t in texts) and any("target #3" in t for t in texts)
    assert sum(t == "target" for t in texts) == 4  # 3 hits in the rankings + the second query's target image
    for stem in ("bars", "curves", "lambda", "grid"):
        for ext in ("png", "pdf"):
            path = tmp_path / "figs" / f"{stem}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path


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
    fig = report.plot_triplets(split, n=5, out_stem=tmp_path / "triplets")
    assert len(fig.axes) == 3 * 2  # min(n, queries) columns of reference / caption / target
    texts = [t.get_text().replace("\n", " ") for ax in fig.axes for t in ax.texts]
    assert any("Is red and has long sleeves" in t for t in texts)
    assert (tmp_path / "triplets.png").is_file() and (tmp_path / "triplets.pdf").is_file()
