"""Tables and figures of cir_lib.report, on synthetic result dicts and run folders."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cir_lib import intervals, report, runs
from cir_lib.constants import PAPER_RESULTS
from cir_lib.errors import ConfigError

RNG = np.random.default_rng(0)


CATEGORIES = ("shirt", "dress", "toptee")


def _fashioniq_rows(with_average=True, methods=report.METHODS):
    rows = {}
    for i, method in enumerate(reversed(methods)):  # given out of order on purpose
        per = {c: {"recall@10": float(RNG.uniform(0, 60)) + i / 7, "recall@50": float(RNG.uniform(40, 99))}
               for c in ("dress", "shirt", "toptee")}
        if with_average:
            per["average"] = {k: float(np.mean([per[c][k] for c in ("dress", "shirt", "toptee")]))
                              for k in ("recall@10", "recall@50")}
        per["skipped"] = {"queries": 0}  # extra keys from evaluate are ignored
        rows[method] = per
    return rows


def _cirr_rows(methods=report.METHODS):
    keys = [f"recall@{k}" for k in (1, 5, 10, 50)] + [f"recall_subset@{k}" for k in (1, 2, 3)]
    return {m: {k: float(RNG.uniform(0, 100)) + 1 / 3 for k in keys} for m in methods}


def _cirr_ranked(methods, n=400, seed=0):
    """Random per-query CIRR ranks and the metric rows they give (as evaluate would return them)."""
    rng = np.random.default_rng(seed)
    ranks, rows = {}, {}
    for i, m in enumerate(methods):
        r, s = rng.integers(0, 120 - 20 * i, n), rng.integers(0, 5, n)
        ranks[m] = {"ranks": r, "subset_ranks": s}
        rows[m] = {**{f"recall@{k}": 100 * float(np.mean(r < k)) for k in (1, 5, 10, 50)},
                   **{f"recall_subset@{k}": 100 * float(np.mean(s < k)) for k in (1, 2, 3)}}
    return rows, ranks


def _fashioniq_ranked(methods, seed=0):
    rng = np.random.default_rng(seed)
    ranks, rows = {}, {}
    for i, m in enumerate(methods):
        ranks[m] = {c: rng.integers(0, 150 - 30 * i, n) for c, n in zip(CATEGORIES, (90, 110, 70))}
        rows[m] = {c: {f"recall@{k}": 100 * float(np.mean(ranks[m][c] < k)) for k in (10, 50)} for c in CATEGORIES}
    return rows, ranks


def test_fashioniq_table_poster_columns_rows_and_numbers():
    rows = _fashioniq_rows()
    table = report.fashioniq_table(rows, backbone="RN50", context=("cited", "published"))
    metrics = [f"{g}_recall@{k}" for g in ("shirt", "dress", "toptee", "average") for k in (10, 50)]
    assert list(table.columns) == ["source", "backbone", "method", "split", "cited_from"] + \
        [x for c in metrics for x in (c, f"{c}_ci_low", f"{c}_ci_high")]
    assert report.metric_columns(table) == metrics
    assert list(table.columns) == report.table_columns("fashioniq")
    assert list(table["source"]) == ["cited"] * 7 + ["published"] * 2 + ["this run"] * 3
    assert list(table["method"][-3:]) == ["zero-shot sum", "stage 1 sum", "stage 1 + Combiner"]
    assert list(table["backbone"][7:]) == ["RN50", "RN50x4", "RN50", "RN50", "RN50"]
    assert set(table["split"]) == {"val"}
    row = table.iloc[-2]
    assert row["shirt_recall@50"] == rows["stage 1 sum"]["shirt"]["recall@50"]
    assert row["average_recall@10"] == pytest.approx(rows["stage 1 sum"]["average"]["recall@10"])
    assert table.iloc[8]["toptee_recall@10"] == PAPER_RESULTS["fashioniq"]["RN50x4"]["toptee_recall@10"]
    artemis = table[table["method"] == "ARTEMIS"].iloc[0]
    assert (artemis["shirt_recall@10"], artemis["average_recall@50"]) == (21.78, 50.29)
    assert table[[c for c in table.columns if c.endswith(("_ci_low", "_ci_high"))]].isna().all().all()


def test_fashioniq_average_computed_when_absent_and_no_context():
    rows = _fashioniq_rows(with_average=False)
    table = report.fashioniq_table(rows, context=())
    assert len(table) == 3 and set(table["source"]) == {"this run"}
    r = rows["zero-shot sum"]
    expect = (r["dress"]["recall@50"] + r["shirt"]["recall@50"] + r["toptee"]["recall@50"]) / 3
    assert table.iloc[0]["average_recall@50"] == pytest.approx(expect)


def test_cirr_table_subset_of_methods_and_default_context():
    rows = _cirr_rows()
    table = report.cirr_table({"stage 1 + Combiner": rows["stage 1 + Combiner"], "zero-shot sum": rows["zero-shot sum"]})
    assert report.metric_columns(table) == ["recall@1", "recall@5", "recall@10", "recall@50", "recall_subset@1",
                                            "recall_subset@2", "recall_subset@3"]
    assert list(table["source"]) == ["published", "published", "this run", "this run"]
    assert list(table["method"][2:]) == ["zero-shot sum", "stage 1 + Combiner"]
    assert list(table["split"]) == ["test1", "test1", "val", "val"]
    assert table.iloc[2]["recall_subset@2"] == rows["zero-shot sum"]["recall_subset@2"]
    assert table.iloc[0]["recall@1"] == PAPER_RESULTS["cirr"]["RN50"]["recall@1"]


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
    with pytest.raises(ConfigError, match="context"):
        report.cirr_table(_cirr_rows(), context=("paper",))


def test_table_intervals_come_from_the_ranks_and_must_match_them():
    methods = report.METHODS + ("stage 1 text only",)
    rows, ranks = _cirr_ranked(methods)
    table = report.cirr_table(rows, backbone="RN50", ranks=ranks, n_boot=200, seed=3)
    boot = intervals.cirr_intervals(ranks, n_boot=200, seed=3)
    ours = table[table["source"] == "this run"].set_index("method")
    for m in methods:
        for c in report.CIRR_COLUMNS:
            assert ours.loc[m, c + "_ci_low"] == boot.low[m][c] and ours.loc[m, c + "_ci_high"] == boot.high[m][c]
    assert table[table["source"] == "published"]["recall@1_ci_low"].isna().all()
    off = {m: dict(v) for m, v in rows.items()}
    off["stage 1 sum"]["recall@10"] += 1.0
    with pytest.raises(ConfigError, match="stage 1 sum.*recall@10"):
        report.cirr_table(off, ranks=ranks, n_boot=20)
    with pytest.raises(ConfigError, match="no row"):
        report.cirr_table({m: rows[m] for m in report.METHODS}, ranks=ranks, n_boot=20)
    f_rows, f_ranks = _fashioniq_ranked(report.METHODS)
    f_table = report.fashioniq_table(f_rows, ranks=f_ranks, n_boot=50, context=())
    f_boot = intervals.fashioniq_intervals(f_ranks, n_boot=50)
    assert f_table.iloc[2]["average_recall@50_ci_high"] == f_boot.high["stage 1 + Combiner"]["average_recall@50"]


def test_difference_rows_are_labelled_correct_and_paired():
    methods = report.METHODS + ("zero-shot image only",)
    rows, ranks = _cirr_ranked(methods, seed=4)
    table = report.cirr_table(rows, backbone="RN50", ranks=ranks, n_boot=150, seed=1)
    diff = report.difference_table(table).set_index("comparison")
    assert list(diff.index) == [
        "this run (RN50, val): stage 1 sum - zero-shot sum",
        "this run (RN50, val): stage 1 + Combiner - stage 1 sum",
        "this run (RN50, val): stage 1 + Combiner - zero-shot sum",
        "this run (RN50, val): stage 1 + Combiner - published RN50 (test1)",
        "this run (RN50, val): stage 1 + Combiner - published RN50x4 (test1)"]  # no ablation row
    boot = intervals.cirr_intervals(ranks, n_boot=150, seed=1)
    label = "this run (RN50, val): stage 1 + Combiner - zero-shot sum"
    value, lo, hi = boot.paired_difference("stage 1 + Combiner", "zero-shot sum")
    assert diff.loc[label, "recall@10"] == pytest.approx(value["recall@10"])
    assert (diff.loc[label, "recall@10_ci_low"], diff.loc[label, "recall@10_ci_high"]) == (lo["recall@10"], hi["recall@10"])
    chain = "this run (RN50, val): stage 1 sum - zero-shot sum"
    assert diff.loc[chain, "recall_subset@2_ci_high"] == boot.diff_high["stage 1 sum"]["recall_subset@2"]
    paper = PAPER_RESULTS["cirr"]["RN50"]["recall@1"]
    got = diff.loc["this run (RN50, val): stage 1 + Combiner - published RN50 (test1)"]
    assert got["recall@1"] == pytest.approx(rows["stage 1 + Combiner"]["recall@1"] - paper)
    assert got["recall@1_ci_low"] == pytest.approx(boot.low["stage 1 + Combiner"]["recall@1"] - paper)
    plain = report.difference_table(report.cirr_table(rows, context=()))
    assert len(plain) == 3 and plain.iloc[:, 1:].filter(like="_ci_").isna().all().all()


def test_marks_best_and_second_per_split_ablations_excluded(tmp_path):
    keys = list(report.CIRR_COLUMNS)
    rows = {"zero-shot sum": dict.fromkeys(keys, 10.0), "stage 1 sum": dict.fromkeys(keys, 20.0),
            "stage 1 + Combiner": dict.fromkeys(keys, 30.0), "stage 1 text only": dict.fromkeys(keys, 99.0)}
    test_file = tmp_path / "test1.json"
    test_file.write_text(json.dumps({"RN50": {"stage 1 + Combiner": dict.fromkeys(keys, 1.0)}}))
    table = report.cirr_table(rows, backbone="RN50", test_results=report.read_cirr_test_results(test_file))
    md = report.to_markdown(table)
    lines = {line.split(" | ")[2] + "/" + line.split(" | ")[3]: line for line in md.splitlines() if line.startswith("| ")}
    assert "**30.00**" in lines["stage 1 + Combiner/val"] and "<u>20.00</u>" in lines["stage 1 sum/val"]
    assert "**" not in lines["stage 1 text only (ablation)/val"] and "<u>" not in lines["zero-shot sum/val"]
    # test1 rows compete with the published test1 rows only: RN50x4 best, RN50 second, ours unmarked
    assert "**" not in lines["stage 1 + Combiner/test1"] and "<u>" not in lines["stage 1 + Combiner/test1"]
    assert "**38.53**" in md and "<u>35.81</u>" in md
    # FashionIQ: all rows on val, so this run's rows compete with the published ones unless kept apart
    f_rows = {m: {c: {"recall@10": v, "recall@50": v} for c in CATEGORIES}
              for m, v in (("zero-shot sum", 10.0), ("stage 1 sum", 20.0), ("stage 1 + Combiner", 30.0))}
    f_table = report.fashioniq_table(f_rows)
    together = report.to_markdown(f_table)
    assert "**30.00**" not in together and "<u>20.00</u>" not in together and "**39.99**" in together
    apart = report.to_markdown(f_table, separate_marks=True)
    assert "**30.00**" in apart and "<u>20.00</u>" in apart and "**39.99**" in apart  # both groups marked
    assert r"\textbf{30.00}" in report.to_latex(f_table, separate_marks=True)
    tex = report.to_latex(table)
    assert r"\textbf{30.00}" in tex and r"\underline{20.00}" in tex and r"\textbf{99.00}" not in tex
    assert "stage 1 text only (ablation)" in tex


def test_cirr_test_results_rows_beside_val_and_file_errors(tmp_path):
    keys = list(report.CIRR_COLUMNS)
    good = {"_note": "server, 2026-12-01", "RN50": {"stage 1 + Combiner": dict.fromkeys(keys, 42.0)},
            "RN50x4": {"stage 1 sum": dict.fromkeys(keys, 41.0)}}
    path = tmp_path / "cirr_test1.json"
    path.write_text(json.dumps(good))
    tests = report.read_cirr_test_results(path)
    assert set(tests) == {"RN50", "RN50x4"} and tests["RN50"]["stage 1 + Combiner"]["recall@50"] == 42.0
    table = report.cirr_table(_cirr_rows(), backbone="RN50", context=(), test_results=tests)
    assert list(zip(table["backbone"], table["method"], table["split"])) == [
        ("RN50", "zero-shot sum", "val"), ("RN50", "stage 1 sum", "val"), ("RN50", "stage 1 + Combiner", "val"),
        ("RN50", "stage 1 + Combiner", "test1"), ("RN50x4", "stage 1 sum", "test1")]
    bad_cases = [
        ({"RN50": {"stage two": dict.fromkeys(keys, 1.0)}}, "RN50/stage two"),
        ({"RN50": {"stage 1 sum": {k: 1.0 for k in keys[:-1]}}}, "missing.*recall_subset@3"),
        ({"RN50": {"stage 1 sum": {**dict.fromkeys(keys, 1.0), "recall@2": 3.0}}}, "unknown metric.*recall@2"),
        ({"RN50": {"stage 1 sum": {**dict.fromkeys(keys, 1.0), "recall@5": 0.42e3}}}, "RN50/stage 1 sum/recall@5"),
        ({"RN50": {"stage 1 sum": {**dict.fromkeys(keys, 1.0), "recall@5": "12"}}}, "recall@5"),
        ({"RN50": []}, "'RN50' must hold"),
        ([1, 2], "expected an object"),
        ({"_note": "nothing"}, "no backbone"),
    ]
    for data, match in bad_cases:
        path.write_text(json.dumps(data))
        with pytest.raises(ConfigError, match=match) as err:
            report.read_cirr_test_results(path)
        assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match="RN50/stage 1 sum.*recall@5"):
        report.cirr_table(_cirr_rows(), test_results={"RN50": {"stage 1 sum": {"recall@1": 3.0}}})
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        report.read_cirr_test_results(path)
    with pytest.raises(ConfigError, match="not found"):
        report.read_cirr_test_results(tmp_path / "absent.json")


def test_several_backbones_in_one_table():
    rows50, ranks50 = _cirr_ranked(report.METHODS, seed=1)
    rows4, ranks4 = _cirr_ranked(report.METHODS[1:], seed=2)
    table = report.cirr_table({"RN50": rows50, "RN50x4": rows4}, ranks={"RN50": ranks50, "RN50x4": ranks4},
                              context=(), n_boot=30)
    assert list(table["backbone"]) == ["RN50"] * 3 + ["RN50x4"] * 2
    assert table["recall@1_ci_low"].notna().all()
    labels = list(report.difference_table(table)["comparison"])
    assert "this run (RN50x4, val): stage 1 + Combiner - stage 1 sum" in labels and len(labels) == 4
    assert "backbone" in report.to_markdown(table).splitlines()[0]


def test_write_table_round_trips_and_writes_every_file(tmp_path):
    rows, ranks = _fashioniq_ranked(report.METHODS + ("stage 1 image only",))
    table = report.fashioniq_table(rows, backbone="RN50", ranks=ranks, context=("cited", "published"), n_boot=50)
    meta = {"profile": "test", "runs": {"fashioniq stage 1": {"recipe": "smoke", "epochs": 1}},
            "environment": runs.environment_info("cpu"), "root": tmp_path}
    paths = report.write_table(table, tmp_path / "tables", "fashioniq", title="FashionIQ val",
                               notes=["not the paper's data"], meta=meta)
    assert {p.name for p in paths.values()} == {"fashioniq.csv", "fashioniq_differences.csv", "fashioniq.md",
                                                "fashioniq.tex", "fashioniq.meta.json"}
    back = pd.read_csv(paths["csv"], keep_default_na=False, na_values=[""])
    assert list(back.columns) == list(table.columns)
    assert list(back["method"]) == list(table["method"])
    numbers = report.metric_columns(table)
    np.testing.assert_allclose(back[numbers].to_numpy(float), table[numbers].to_numpy(float), rtol=1e-5)
    assert back["shirt_recall@10_ci_low"].isna().sum() == 9  # the cited and published rows: blank
    # a table read back from its CSV renders the same (blank cells stay blank: no dagger, no bounds)
    assert report.to_markdown(back) == report.to_markdown(table)
    diff = pd.read_csv(paths["differences"])
    assert list(diff.columns) == list(report.difference_table(table).columns)
    assert diff["average_recall@10_ci_high"].notna().all()
    md = paths["md"].read_text()
    assert "not the paper's data" in md and "Difference (recall points)" in md and "| published | RN50x4 |" in md
    assert f"{rows['stage 1 sum']['dress']['recall@10']:.2f}" in md and " ±" in md and "bootstrap" in md
    header = md.splitlines()[2]
    assert header.index("shirt R@10") < header.index("dress R@10") < header.index("toptee R@10") < header.index("average")
    assert "stage 1 image only (ablation)" in md
    tex = paths["tex"].read_text()
    assert r"\begin{tabular}" in tex and r"\bottomrule" in tex and "stage 1 + Combiner" in tex and r"$\pm$" in tex
    assert tex.count(r"\\") >= 13 + 5  # thirteen table rows and five difference rows at least
    saved = json.loads(paths["meta"].read_text())
    assert saved["runs"]["fashioniq stage 1"]["recipe"] == "smoke" and saved["root"] == str(tmp_path)
    assert "torch" in saved["environment"]["packages"] and saved["environment"]["device"].startswith("cpu")


def test_write_table_is_byte_identical_when_rerun(tmp_path):
    """Same inputs, same files: every table file and the .meta.json, whose environment record
    (`runs.environment_info`) carries no clock time, rebuilt from scratch each time."""
    written = []
    for attempt in ("a", "b"):
        rows, ranks = _fashioniq_ranked(report.METHODS + ("stage 1 image only",))
        table = report.fashioniq_table(rows, backbone="RN50", ranks=ranks, context=("cited", "published"), n_boot=50)
        meta = {"profile": "test", "runs": {"fashioniq-finetune": {"recipe": "smoke", "lr": 1e-3}},
                "environment": runs.environment_info("cpu"), "data_root": str(tmp_path)}
        written.append(report.write_table(table, tmp_path / attempt, "fashioniq", title="FashionIQ val",
                                          notes=["a note"], meta=meta))
    first, second = written
    assert set(first) == {"csv", "differences", "md", "tex", "meta"}
    for key in first:
        assert first[key].read_bytes() == second[key].read_bytes(), f"{key} differs between identical reruns"
    assert not {"created", "written"} & set(json.loads(first["meta"].read_text())["environment"])


def test_jsonable_plain_data():
    from dataclasses import dataclass
    from pathlib import Path

    @dataclass
    class Config:
        lr: float = 0.1
        path: Path = Path("a/b")

    got = runs.jsonable({"c": Config(), "k": (1, 2), "x": np.float32(0.5), "n": np.int64(3), 4: {"s"}, "none": None})
    assert got == {"c": {"lr": 0.1, "path": "a/b"}, "k": [1, 2], "x": 0.5, "n": 3, "4": ["s"], "none": None}


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
    assert [len(c) for c in _bars(fig.axes[0])] == [7] * 3  # three rows, seven metrics
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


def _bars(ax):
    from matplotlib.container import BarContainer

    return [c for c in ax.containers if isinstance(c, BarContainer)]


def test_recall_bars_show_ablations_hatched_and_intervals():
    from matplotlib.container import ErrorbarContainer

    methods = report.METHODS + ("stage 1 image only", "stage 1 text only")
    rows, ranks = _cirr_ranked(methods, seed=7)
    table = report.cirr_table(rows, ranks=ranks, context=("cited", "published"), n_boot=40)
    ax = report.plot_recall_bars(table).axes[0]
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
    plain = report.plot_recall_bars(report.cirr_table(rows, context=())).axes[0]
    assert not [c for c in plain.containers if isinstance(c, ErrorbarContainer)]


def test_saved_figures_are_byte_identical_on_rerun(tmp_path):
    rows, ranks = _cirr_ranked(report.METHODS + ("zero-shot text only",), seed=2)
    table = report.cirr_table(rows, ranks=ranks, n_boot=30)
    files = {}
    for attempt in ("a", "b"):
        paths = report.save_figure(report.plot_recall_bars(table, title="CIRR"), tmp_path / attempt / "bars",
                                   formats=("png", "pdf", "svg"))
        paths += report.save_figure(report.plot_lambda_distribution({"cirr": np.linspace(0, 1, 50)}),
                                    tmp_path / attempt / "lambda", formats=("pdf", "svg", "png"))
        files[attempt] = [p.read_bytes() for p in paths]
        assert [p.suffix for p in paths] == [".png", ".pdf", ".svg", ".pdf", ".svg", ".png"]
    assert files["a"] == files["b"]
    assert all(len(b) > 1000 for b in files["a"])
    assert b"CreationDate" not in files["a"][1] and b"<dc:date>" not in files["a"][2]
    with pytest.raises(ConfigError, match="formats"):
        report.save_figure(report.plot_lambda_distribution({"cirr": [0.5]}), tmp_path / "x", formats=("jpg",))


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
