"""Result tables of cir_lib.tables (poster layout, intervals, marks, files), on synthetic result dicts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cir_lib import intervals, runs, table_formats, tables
from cir_lib.constants import PAPER_RESULTS
from cir_lib.errors import ConfigError
from result_rows import CATEGORIES, cirr_ranked, cirr_rows, fashioniq_ranked, fashioniq_rows
from tool_modules import load_tool


def test_fashioniq_table_poster_columns_rows_and_numbers():
    rows = fashioniq_rows()
    table = tables.fashioniq_table(rows, backbone="RN50", context=("cited", "published"))
    metrics = [f"{g}_recall@{k}" for g in ("shirt", "dress", "toptee", "average") for k in (10, 50)]
    assert list(table.columns) == ["source", "backbone", "method", "split", "cited_from"] + \
        [x for c in metrics for x in (c, f"{c}_ci_low", f"{c}_ci_high")]
    assert tables.metric_columns(table) == metrics
    assert list(table.columns) == tables.table_columns("fashioniq")
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
    rows = fashioniq_rows(with_average=False)
    table = tables.fashioniq_table(rows, context=())
    assert len(table) == 3 and set(table["source"]) == {"this run"}
    r = rows["zero-shot sum"]
    expect = (r["dress"]["recall@50"] + r["shirt"]["recall@50"] + r["toptee"]["recall@50"]) / 3
    assert table.iloc[0]["average_recall@50"] == pytest.approx(expect)


def test_cirr_table_subset_of_methods_and_default_context():
    rows = cirr_rows()
    table = tables.cirr_table({"stage 1 + Combiner": rows["stage 1 + Combiner"], "zero-shot sum": rows["zero-shot sum"]})
    assert tables.metric_columns(table) == ["recall@1", "recall@5", "recall@10", "recall@50", "recall_subset@1",
                                            "recall_subset@2", "recall_subset@3"]
    assert list(table["source"]) == ["published", "published", "this run", "this run"]
    assert list(table["method"][2:]) == ["zero-shot sum", "stage 1 + Combiner"]
    assert list(table["split"]) == ["test1", "test1", "val", "val"]
    assert table.iloc[2]["recall_subset@2"] == rows["zero-shot sum"]["recall_subset@2"]
    assert table.iloc[0]["recall@1"] == PAPER_RESULTS["cirr"]["RN50"]["recall@1"]


def test_bad_rows_are_refused():
    with pytest.raises(ConfigError, match="unknown method"):
        tables.cirr_table({"stage one": cirr_rows()["stage 1 sum"]})
    broken = cirr_rows()
    del broken["stage 1 sum"]["recall@5"]
    with pytest.raises(ConfigError, match="recall@5"):
        tables.cirr_table(broken)
    rows = fashioniq_rows()
    del rows["zero-shot sum"]["toptee"]
    with pytest.raises(ConfigError, match="toptee"):
        tables.fashioniq_table(rows)
    with pytest.raises(ConfigError, match="context"):
        tables.cirr_table(cirr_rows(), context=("paper",))


def test_table_intervals_come_from_the_ranks_and_must_match_them():
    methods = tables.METHODS + ("stage 1 text only",)
    rows, ranks = cirr_ranked(methods)
    table = tables.cirr_table(rows, backbone="RN50", ranks=ranks, n_boot=200, seed=3)
    boot = intervals.cirr_intervals(ranks, n_boot=200, seed=3)
    ours = table[table["source"] == "this run"].set_index("method")
    for m in methods:
        for c in tables.CIRR_COLUMNS:
            assert ours.loc[m, c + "_ci_low"] == boot.low[m][c] and ours.loc[m, c + "_ci_high"] == boot.high[m][c]
    assert table[table["source"] == "published"]["recall@1_ci_low"].isna().all()
    off = {m: dict(v) for m, v in rows.items()}
    off["stage 1 sum"]["recall@10"] += 1.0
    with pytest.raises(ConfigError, match="stage 1 sum.*recall@10"):
        tables.cirr_table(off, ranks=ranks, n_boot=20)
    with pytest.raises(ConfigError, match="no row"):
        tables.cirr_table({m: rows[m] for m in tables.METHODS}, ranks=ranks, n_boot=20)
    f_rows, f_ranks = fashioniq_ranked(tables.METHODS)
    f_table = tables.fashioniq_table(f_rows, ranks=f_ranks, n_boot=50, context=())
    f_boot = intervals.fashioniq_intervals(f_ranks, n_boot=50)
    assert f_table.iloc[2]["average_recall@50_ci_high"] == f_boot.high["stage 1 + Combiner"]["average_recall@50"]


def test_difference_rows_are_labelled_correct_and_paired():
    methods = tables.METHODS + ("zero-shot image only",)
    rows, ranks = cirr_ranked(methods, seed=4)
    table = tables.cirr_table(rows, backbone="RN50", ranks=ranks, n_boot=150, seed=1)
    diff = tables.difference_table(table).set_index("comparison")
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
    plain = tables.difference_table(tables.cirr_table(rows, context=()))
    assert len(plain) == 3 and plain.iloc[:, 1:].filter(like="_ci_").isna().all().all()


def test_marks_best_and_second_per_split_ablations_excluded(tmp_path):
    keys = list(tables.CIRR_COLUMNS)
    rows = {"zero-shot sum": dict.fromkeys(keys, 10.0), "stage 1 sum": dict.fromkeys(keys, 20.0),
            "stage 1 + Combiner": dict.fromkeys(keys, 30.0), "stage 1 text only": dict.fromkeys(keys, 99.0)}
    test_file = tmp_path / "test1.json"
    test_file.write_text(json.dumps({"RN50": {"stage 1 + Combiner": dict.fromkeys(keys, 1.0)}}))
    table = tables.cirr_table(rows, backbone="RN50", test_results=tables.read_cirr_test_results(test_file))
    md = table_formats.to_markdown(table)
    lines = {line.split(" | ")[2] + "/" + line.split(" | ")[3]: line for line in md.splitlines() if line.startswith("| ")}
    assert "**30.00**" in lines["stage 1 + Combiner/val"] and "<u>20.00</u>" in lines["stage 1 sum/val"]
    assert "**" not in lines["stage 1 text only (ablation)/val"] and "<u>" not in lines["zero-shot sum/val"]
    # test1 rows compete with the published test1 rows only: RN50x4 best, RN50 second, ours unmarked
    assert "**" not in lines["stage 1 + Combiner/test1"] and "<u>" not in lines["stage 1 + Combiner/test1"]
    assert "**38.53**" in md and "<u>35.81</u>" in md
    # FashionIQ: all rows on val, so this run's rows compete with the published ones unless kept apart
    f_rows = {m: {c: {"recall@10": v, "recall@50": v} for c in CATEGORIES}
              for m, v in (("zero-shot sum", 10.0), ("stage 1 sum", 20.0), ("stage 1 + Combiner", 30.0))}
    f_table = tables.fashioniq_table(f_rows)
    together = table_formats.to_markdown(f_table)
    assert "**30.00**" not in together and "<u>20.00</u>" not in together and "**39.99**" in together
    apart = table_formats.to_markdown(f_table, separate_marks=True)
    assert "**30.00**" in apart and "<u>20.00</u>" in apart and "**39.99**" in apart  # both groups marked
    assert r"\textbf{30.00}" in table_formats.to_latex(f_table, separate_marks=True)
    tex = table_formats.to_latex(table)
    assert r"\textbf{30.00}" in tex and r"\underline{20.00}" in tex and r"\textbf{99.00}" not in tex
    assert "stage 1 text only (ablation)" in tex


def test_cirr_test_results_rows_beside_val_and_file_errors(tmp_path):
    keys = list(tables.CIRR_COLUMNS)
    good = {"_note": "server, 2026-12-01", "RN50": {"stage 1 + Combiner": dict.fromkeys(keys, 42.0)},
            "RN50x4": {"stage 1 sum": dict.fromkeys(keys, 41.0)}}
    path = tmp_path / "cirr_test1.json"
    path.write_text(json.dumps(good))
    tests = tables.read_cirr_test_results(path)
    assert set(tests) == {"RN50", "RN50x4"} and tests["RN50"]["stage 1 + Combiner"]["recall@50"] == 42.0
    table = tables.cirr_table(cirr_rows(), backbone="RN50", context=(), test_results=tests)
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
            tables.read_cirr_test_results(path)
        assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match="RN50/stage 1 sum.*recall@5"):
        tables.cirr_table(cirr_rows(), test_results={"RN50": {"stage 1 sum": {"recall@1": 3.0}}})
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        tables.read_cirr_test_results(path)
    with pytest.raises(ConfigError, match="not found"):
        tables.read_cirr_test_results(tmp_path / "absent.json")


def test_several_backbones_in_one_table():
    rows50, ranks50 = cirr_ranked(tables.METHODS, seed=1)
    rows4, ranks4 = cirr_ranked(tables.METHODS[1:], seed=2)
    table = tables.cirr_table({"RN50": rows50, "RN50x4": rows4}, ranks={"RN50": ranks50, "RN50x4": ranks4},
                              context=(), n_boot=30)
    assert list(table["backbone"]) == ["RN50"] * 3 + ["RN50x4"] * 2
    assert table["recall@1_ci_low"].notna().all()
    labels = list(tables.difference_table(table)["comparison"])
    assert "this run (RN50x4, val): stage 1 + Combiner - stage 1 sum" in labels and len(labels) == 4
    assert "backbone" in table_formats.to_markdown(table).splitlines()[0]


def test_write_table_round_trips_and_writes_every_file(tmp_path):
    rows, ranks = fashioniq_ranked(tables.METHODS + ("stage 1 image only",))
    table = tables.fashioniq_table(rows, backbone="RN50", ranks=ranks, context=("cited", "published"), n_boot=50)
    meta = {"profile": "test", "runs": {"fashioniq stage 1": {"recipe": "smoke", "epochs": 1}},
            "environment": runs.environment_info("cpu"), "root": tmp_path}
    paths = table_formats.write_table(table, tmp_path / "tables", "fashioniq", title="FashionIQ val",
                               notes=["not the paper's data"], meta=meta)
    assert {p.name for p in paths.values()} == {"fashioniq.csv", "fashioniq_differences.csv", "fashioniq.md",
                                                "fashioniq.tex", "fashioniq.meta.json"}
    back = pd.read_csv(paths["csv"], keep_default_na=False, na_values=[""])
    assert list(back.columns) == list(table.columns)
    assert list(back["method"]) == list(table["method"])
    numbers = tables.metric_columns(table)
    np.testing.assert_allclose(back[numbers].to_numpy(float), table[numbers].to_numpy(float), rtol=1e-5)
    assert back["shirt_recall@10_ci_low"].isna().sum() == 9  # the cited and published rows: blank
    # a table read back from its CSV renders the same (blank cells stay blank: no dagger, no bounds)
    assert table_formats.to_markdown(back) == table_formats.to_markdown(table)
    diff = pd.read_csv(paths["differences"])
    assert list(diff.columns) == list(tables.difference_table(table).columns)
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
        rows, ranks = fashioniq_ranked(tables.METHODS + ("stage 1 image only",))
        table = tables.fashioniq_table(rows, backbone="RN50", ranks=ranks, context=("cited", "published"), n_boot=50)
        meta = {"profile": "test", "runs": {"fashioniq-finetune": {"recipe": "smoke", "lr": 1e-3}},
                "environment": runs.environment_info("cpu"), "data_root": str(tmp_path)}
        written.append(table_formats.write_table(table, tmp_path / attempt, "fashioniq", title="FashionIQ val",
                                          notes=["a note"], meta=meta))
    first, second = written
    assert set(first) == {"csv", "differences", "md", "tex", "meta"}
    for key in first:
        assert first[key].read_bytes() == second[key].read_bytes(), f"{key} differs between identical reruns"
    assert not {"created", "written"} & set(json.loads(first["meta"].read_text())["environment"])


def test_seed_table_keeps_every_row_of_this_run_with_mean_and_std():
    """The composer rows and the ablations are tabulated across seeds too, not only the main rows;
    the mean and std are those of the per-seed values."""
    from cir_lib.methods import ABLATION_METHODS, COMPOSER_METHODS, MAIN_METHODS

    labels = [m.label for m in MAIN_METHODS + COMPOSER_METHODS + ABLATION_METHODS]
    per_seed = {seed: tables.cirr_table(cirr_rows(labels), context=()) for seed in (0, 1, 2)}
    table = tables.seed_table(per_seed)
    for stat in ("mean", "std"):
        assert set(table[table["seed"] == stat]["method"]) == set(labels)
    label = COMPOSER_METHODS[0].label
    values = [float(per_seed[s].set_index("method").loc[label, "recall@1"]) for s in (0, 1, 2)]
    mean = table[(table["seed"] == "mean") & (table["method"] == label)]["recall@1"].iloc[0]
    std = table[(table["seed"] == "std") & (table["method"] == label)]["recall@1"].iloc[0]
    assert mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))


def test_seed_table_writes_its_record_beside_it(tmp_path):
    labels = [m for m in tables.METHODS]
    table = tables.seed_table({s: tables.cirr_table(cirr_rows(labels), context=()) for s in (0, 1)})
    files = table_formats.write_seed_table(table, tmp_path, "cirr", meta={"seeds": [0, 1], "profile": "mini"})
    assert json.loads(files["meta"].read_text()) == {"profile": "mini", "seeds": [0, 1]}
    assert "meta" not in table_formats.write_seed_table(table, tmp_path / "bare", "cirr")


def test_seed_comparisons_tool_reads_the_written_seed_table(tmp_path):
    """tools/seed_comparisons.py (the README's "Over the seeds" reading) reads the library's seed
    tables: differences of the seed means, resolved when the mean ± std ranges do not overlap."""
    from cir_lib.methods import ABLATION_METHODS, COMPOSER_METHODS, MAIN_METHODS

    tool = load_tool("seed_comparisons")
    labels = [m.label for m in MAIN_METHODS + COMPOSER_METHODS + ABLATION_METHODS]
    per_seed = {}
    for seed in (0, 1, 2):
        table = tables.cirr_table(cirr_rows(labels), context=())
        shift = {"stage 1 + Combiner": 5.0 + seed, "stage 1 + TIRG": 4.0 + 2 * seed}  # spreads 1.0 and 2.0
        for method, value in shift.items():
            table.loc[table["method"] == method, "recall@10"] = value
        per_seed[seed] = table
    table_formats.write_seed_table(tables.seed_table(per_seed), tmp_path, "cirr")
    results = {(r["comparison"], r["metric"]): r for r in tool.compare(tool.read_series(tmp_path))}
    vs_tirg = results[("stage 1 + Combiner - stage 1 + TIRG", "recall@10")]
    assert vs_tirg["difference"] == pytest.approx(6.0 - 6.0) and not vs_tirg["resolved"]
    assert vs_tirg["std_a"] == pytest.approx(1.0) and vs_tirg["std_b"] == pytest.approx(2.0)
    assert "| stage 1 + Combiner - stage 1 + TIRG | CIRR R@10 | +0.00 (±1.00/±2.00) no |" in tool.format_table(
        ["x"], [list(results.values())])
    with pytest.raises(SystemExit, match="seeds=0,1,2"):
        tool.main([str(tmp_path / "empty")])
