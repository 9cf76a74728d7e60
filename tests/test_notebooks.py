"""The notebook series and the papermill pipeline (`cir-lib reproduce`).

Static checks (fast): the .ipynb files are the source: each is normalized (tools/normalize_notebooks.py,
`make notebooks`), opens with a markdown cell saying so, has exactly one `parameters` cell whose names
match what the pipeline injects, and no def/class. The normalizer strips outputs, execution counts,
widget state and foreign metadata, and keeps every edit to the cells.
Pipeline checks (fast): unknown profiles and the paper profile without data are refused, naming what
is missing. Marked `notebooks` (a Jupyter kernel each): a failing notebook is named with its cell
and error; the smoke profile runs all five notebooks and writes tables that hold numbers.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from cir_lib import notebook, profiles, tables
from cir_lib import reproduce as runner
from cir_lib.errors import PipelineError
from cir_lib.errors import CirError, ConfigError
from cir_lib.settings import KNOBS, parse_seeds, rel_text, result_paths, setup

from tool_modules import load_tool

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"


normalizer = load_tool("normalize_notebooks")


def _read(name: str) -> dict:
    """The notebook file as stored (plain JSON, the source a student edits)."""
    return json.loads((NOTEBOOK_DIR / f"{name}.ipynb").read_text(encoding="utf-8"))


def _text(cell: dict) -> str:
    return "".join(cell["source"])


def _parameters_cells(nb):
    return [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]


def test_the_series_is_the_notebooks_folder():
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(runner.NOTEBOOKS)
    assert not list(NOTEBOOK_DIR.glob("*.py")), "the .ipynb files are the source: no generator script"


@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_notebook_shape(name):
    nb = _read(name)
    nbformat.validate(nbformat.from_dict(nb))
    params = _parameters_cells(nb)
    assert len(params) == 1, f"{name}: {len(params)} parameters cells"
    assert params[0]["cell_type"] == "code"
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and _text(first).startswith("# ")
    assert "notebook is the source" in _text(first) and "make notebooks" in _text(first)
    assert nb["metadata"]["kernelspec"] == {"display_name": "Python 3 (ipykernel)", "language": "python",
                                            "name": "python3"}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        assert not cell["outputs"] and cell["execution_count"] is None, f"{name}: stored outputs"
        tree = ast.parse(_text(cell))
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        assert not defs, f"{name}: defines {[d.name for d in defs]} (notebooks stay thin over cir_lib)"


def test_notebooks_are_normalized():
    bad = normalizer.unclean(sorted(NOTEBOOK_DIR.glob("*.ipynb")))
    assert not bad, f"{[p.name for p in bad]} not normalized: run `make notebooks` (python tools/normalize_notebooks.py)"


def test_language_info_is_what_the_kernel_reports():
    from ipykernel.ipkernel import IPythonKernel

    reported = {k: v for k, v in IPythonKernel.language_info.items() if k != "version"}
    for name in runner.NOTEBOOKS:
        stored = dict(_read(name)["metadata"]["language_info"])
        assert stored.pop("version") and stored == reported, name


def _dirty(nb: dict) -> dict:
    """A notebook as JupyterLab and papermill leave it after a run and a few edits."""
    nb = copy.deepcopy(nb)
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"x": {}}, "version_major": 2}}
    nb["metadata"]["papermill"] = {"duration": 3.0}
    del nb["metadata"]["language_info"]["codemirror_mode"]
    code = next(c for c in nb["cells"] if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", []))
    code["source"] = _text(code) + "\nprint('my edit')"
    code["execution_count"] = 7
    code["outputs"] = [{"output_type": "stream", "name": "stderr", "text": "50%|#####     | 1/2\r"},
                       {"output_type": "display_data", "metadata": {},
                        "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2,
                                                                               "version_minor": 0},
                                 "text/plain": "HBox()"}}]
    code["metadata"].update({"execution": {"iopub.status.busy": "2026-12-01"}, "scrolled": True,
                             "papermill": {"status": "completed"}})
    params = _parameters_cells(nb)[0]
    params["metadata"]["tags"].append("mine")
    new = {"cell_type": "markdown", "id": "b2c1f3e0-0000-4000-8000-000000000000", "metadata": {}, "source": "## my note"}
    nb["cells"].insert(2, new)
    nb["cells"][3]["id"] = nb["cells"][1]["id"]  # a duplicate id (copy-pasted cell)
    return nb


def test_normalizer_strips_outputs_and_keeps_edits(tmp_path):
    path = tmp_path / "03_evaluation.ipynb"
    dirty = _dirty(_read("03_evaluation"))
    path.write_text(json.dumps(dirty, indent=2))
    assert normalizer.main(["--check", str(path)]) == 1
    assert normalizer.unclean([path]) == [path]
    assert normalizer.main([str(path)]) == 0
    clean = json.loads(path.read_text())
    assert normalizer.unclean([path]) == []  # idempotent
    assert [_text(c) for c in clean["cells"]] == [_text(c) for c in dirty["cells"]]  # every edit kept
    assert "print('my edit')" in "".join(_text(c) for c in clean["cells"])
    assert set(clean["metadata"]) == {"kernelspec", "language_info"}  # no widget state, no papermill record
    assert clean["metadata"]["language_info"] == _read("03_evaluation")["metadata"]["language_info"]
    for cell in clean["cells"]:
        assert set(cell["metadata"]) <= {"tags"}
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    assert _parameters_cells(clean)[0]["metadata"]["tags"] == ["parameters", "mine"]
    ids = [c["id"] for c in clean["cells"]]
    assert len(set(ids)) == len(ids) and ids[2] == "b2c1f3e0-0000-4000-8000-000000000000"  # kept
    assert ids[1] == _read("03_evaluation")["cells"][1]["id"]  # the first of the duplicates keeps its id
    assert path.read_text().endswith("}\n") and '\n "cells": [\n  {\n' in path.read_text()  # Jupyter's layout


def test_normalizer_check_names_the_command(tmp_path, capsys):
    path = tmp_path / "01_stage1_finetune.ipynb"
    path.write_text(json.dumps(_dirty(_read("01_stage1_finetune"))))
    assert normalizer.main(["--check", str(path)]) == 1
    message = capsys.readouterr().err
    assert "01_stage1_finetune.ipynb" in message and "make notebooks" in message


@pytest.fixture(autouse=True)
def _kit_logging_restored():
    """setup routes the kit's logs to stdout (as in a notebook); undo it after each test."""
    import logging

    kit = logging.getLogger("cir_lib")
    state = (list(kit.handlers), kit.propagate, kit.level)
    yield
    kit.handlers[:], kit.propagate = state[0], state[1]
    kit.setLevel(state[2])


def _declared(name: str) -> dict:
    """{parameter: default} of a notebook's parameters cell (plain literal assignments only)."""
    tree = ast.parse(_text(_parameters_cells(_read(name))[0]))
    assert all(isinstance(node, ast.Assign) for node in tree.body), f"{name}: parameters must be plain assignments"
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body}  # literals: papermill overrides them


@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_parameters_cell_is_the_profile_and_this_notebooks_knobs(name):
    declared = _declared(name)
    assert list(declared)[0] == "profile", f"{name}: the parameters cell starts with profile"
    assert declared["profile"] is None, (
        f"notebooks/{name}.ipynb: the parameters cell says profile = {declared['profile']!r}; set it back to "
        "profile = None before committing. Choose the profile once for all five notebooks instead: write it in "
        "local_profile.txt at the project root (ignored by git) or start `make lab PROFILE=smoke` "
        "(README 'One switch')")
    knobs = set(declared) - {"profile"}
    assert knobs <= set(KNOBS), f"{name}: {knobs - set(KNOBS)} are not knobs setup() resolves"
    assert all(declared[k] is None for k in knobs), f"{name}: a knob defaults to None, 'the profile's value'"
    code = "".join(_text(c) for c in _read(name)["cells"] if c["cell_type"] == "code")
    assert f'settings = setup(profile, "{name}"' in code
    for knob in knobs:  # each declared knob reaches setup()
        assert f"{knob}={knob}" in code, f"{name}: {knob} is declared but not passed to setup"
    for cell in _read(name)["cells"]:  # and is read nowhere else: the cells use settings.<knob>, resolved
        if cell["cell_type"] == "code" and "settings = setup(" not in _text(cell) and cell not in _parameters_cells(_read(name)):
            read = {n.id for n in ast.walk(ast.parse(_text(cell))) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
            assert not read & (set(KNOBS) | {"profile"}), f"{name}: reads {read & set(KNOBS)} unresolved"


@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_every_imported_name_is_used(name):
    cells = [ast.parse(_text(c)) for c in _read(name)["cells"] if c["cell_type"] == "code"]
    imported = {(a.asname or a.name).split(".")[0] for tree in cells for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    used = {n.id for tree in cells for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    assert not imported - used, f"{name}: imports {sorted(imported - used)} without using them"


def test_one_switch_outside_the_notebooks(tmp_path, monkeypatch):
    from cir_lib import project

    (tmp_path / "notebooks").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "cir_lib"\n')
    monkeypatch.chdir(tmp_path / "notebooks")  # where a notebook's kernel runs
    monkeypatch.delenv(project.PROFILE_ENV_VAR, raising=False)
    monkeypatch.delenv(project.PROJECT_ENV_VAR, raising=False)
    assert project.chosen_profile() == ("mini", "default")
    (tmp_path / project.PROFILE_FILE).write_text("# the profile of the five notebooks\nsmoke\n")
    assert project.chosen_profile() == ("smoke", project.PROFILE_FILE)
    settings = setup(None, None)  # a notebook's profile = None
    assert settings.profile == "smoke" and settings.paths.root == tmp_path / "results" / "smoke"
    assert setup("mini", None).profile == "mini"  # papermill's injected profile wins
    monkeypatch.setenv(project.PROFILE_ENV_VAR, "paper")  # make lab PROFILE=paper: wins over the file
    assert project.chosen_profile() == ("paper", "$CIR_LIB_PROFILE")
    monkeypatch.setenv(project.PROFILE_ENV_VAR, "smol")
    with pytest.raises(ConfigError, match="smol.*CIR_LIB_PROFILE"):
        setup(None, None)
    readme = (ROOT / "README.md").read_text()
    assert project.PROFILE_FILE in readme and "make lab PROFILE=smoke" in readme
    assert project.PROFILE_FILE in _text(_read("00_data_prep")["cells"][0])
    assert f"/{project.PROFILE_FILE}" in (ROOT / ".gitignore").read_text().splitlines()


def test_a_reused_run_shows_the_same_results_as_the_run_that_trained_it(tmp_path):
    def executed(training, score="35.1"):
        nb = {"cells": [{"cell_type": "code", "source": "notebook.run_summary(stage1)", "outputs": [
            {"output_type": "execute_result", "data": {"text/plain": f"cirr  {score}  {training}"}}]}]}
        path = tmp_path / f"{training}-{score}.ipynb"
        path.write_text(json.dumps(nb))
        return path

    assert runner.same_results(executed("52.1 s"), executed("reused"))  # the rerun keeps the first notebook
    assert not runner.same_results(executed("52.1 s"), executed("reused", score="bad"))


def test_notebooks_declare_only_what_they_use():
    used = {name: set(_declared(name)) - {"profile"} for name in runner.NOTEBOOKS}
    assert "stage1_epochs" in used["01_stage1_finetune"] and "stage1_epochs" not in used["03_evaluation"]
    assert "combiner_epochs" in used["02_combiner_training"] and "top_k" in used["04_qualitative"]
    assert "interactive" in used["04_qualitative"] and "interactive" not in used["00_data_prep"]
    assert set().union(*used.values()) == set(KNOBS)


def test_reproduce_injects_only_what_each_notebook_declares(tmp_path, monkeypatch):
    calls = {}
    monkeypatch.setattr(runner, "run_notebook", lambda name, output, parameters, **kw: calls.setdefault(name, dict(parameters)) and 0.0)
    monkeypatch.setattr(runner, "_write_summary", lambda summary: None)
    runner.reproduce("smoke", results_dir=tmp_path, parameters={"stage1_epochs": 3, "top_k": 2})
    assert list(calls) == list(runner.NOTEBOOKS)
    for name, injected in calls.items():
        assert set(injected) <= set(_declared(name)), name
        assert injected["profile"] == "smoke" and injected["results_dir"] == str(tmp_path.resolve() / "smoke")
        assert "data_root" not in injected  # not given: the notebook resolves the profile's own
    assert calls["01_stage1_finetune"]["stage1_epochs"] == 3 and "stage1_epochs" not in calls["03_evaluation"]
    assert calls["04_qualitative"]["top_k"] == 2 and calls["04_qualitative"]["interactive"] is False
    with pytest.raises(ConfigError, match=r"unknown notebook parameter\(s\) \['epochs'\]"):
        runner.reproduce("smoke", results_dir=tmp_path, parameters={"epochs": 1, "top_k": 2})
    with pytest.raises(ConfigError, match="--profile"):
        runner.reproduce("smoke", results_dir=tmp_path, parameters={"profile": "mini"})


def test_setup_resolves_the_profile(tmp_path):
    settings = setup("smoke", None)  # no notebook: nothing checked
    smoke = profiles.PROFILES["smoke"]
    assert (settings.stage1_epochs, settings.top_k, settings.recipes) == (smoke.stage1_epochs, smoke.top_k, dict(smoke.recipes))
    assert settings.data_root == ROOT / "data" / "smoke" and settings.paths.root == ROOT / "results" / "smoke"
    assert settings.rel(settings.paths.root / "runs") == "results/smoke/runs" and str(ROOT) not in repr(settings)
    mine = setup("smoke", None, stage1_epochs=5, datasets=["cirr"], results_dir=tmp_path / "r")
    assert (mine.stage1_epochs, mine.datasets, mine.recipes, mine.paths.root) == (5, ("cirr",), {"cirr": "smoke"}, tmp_path / "r")
    assert setup("mini", None).stage1_epochs is None  # the mini profile keeps the recipe's epochs
    with pytest.raises(ConfigError, match="unknown notebook parameter"):
        setup("smoke", None, epochs=3)
    with pytest.raises(ConfigError, match="no recipe"):
        setup("smoke", None, datasets=["shoes"])
    with pytest.raises(PipelineError, match="data_root"):
        setup("paper", "00_data_prep")


def test_out_of_order_names_the_notebook_to_run_first(tmp_path, smoke_root):
    kwargs = dict(data_root=tmp_path / "fresh", results_dir=tmp_path / "results")
    setup("smoke", "00_data_prep", **kwargs)  # the first one needs nothing
    with pytest.raises(PipelineError, match=r"run notebooks/00_data_prep.ipynb first"):
        setup("smoke", "03_evaluation", **kwargs)  # a fresh clone
    data = tmp_path / "data"
    shutil.copytree(smoke_root, data)
    (data / "cir-mini.pt").write_bytes(b"")  # what 00 leaves for the mini profiles
    kwargs["data_root"] = data
    setup("smoke", "01_stage1_finetune", **kwargs)
    with pytest.raises(PipelineError, match=r"run notebooks/01_stage1_finetune.ipynb first") as err:
        setup("smoke", "03_evaluation", **kwargs)
    assert "fashioniq" in str(err.value) and "cir-lib reproduce --profile smoke" in str(err.value)
    for dataset in ("fashioniq", "cirr"):
        run = tmp_path / "results" / "runs" / f"{dataset}-finetune"
        run.mkdir(parents=True)
        (run / "best.pt").write_bytes(b"")
    with pytest.raises(PipelineError, match=r"run notebooks/02_combiner_training.ipynb first"):
        setup("smoke", "04_qualitative", **kwargs)


def test_ordering_line_and_links(tmp_path, monkeypatch):
    keys = list(tables.CIRR_COLUMNS)
    rows = {"zero-shot sum": dict.fromkeys(keys, 10.0), "stage 1 sum": dict.fromkeys(keys, 20.0),
            "stage 1 + Combiner": dict.fromkeys(keys, 30.0)}
    smoke = notebook.ordering_line(setup("smoke", None), rows, "cirr")
    assert "too small to show the ordering" in smoke and "ascending" not in smoke
    assert notebook.ordering_line(setup("mini", None), rows, "cirr").endswith("-> ascending")
    monkeypatch.chdir(ROOT / "notebooks")  # the kernel's folder in JupyterLab
    shown = notebook.show_files([ROOT / "results" / "smoke" / "tables" / "cirr.md"]).data
    assert "[results/smoke/tables/cirr.md](../results/smoke/tables/cirr.md)" in shown and str(ROOT) not in shown
    assert rel_text(f"run {ROOT / 'results' / 'x'}") == "run results/x"


def test_results_readme_names_every_notebook():
    text = (ROOT / "results" / "README.md").read_text()
    for name in runner.NOTEBOOKS:
        assert name in text
    for product in ("tables/fashioniq.{csv,md,tex}", "tables/cirr.{csv,md,tex}", "executed/", "retrieval_grid_",
                    "lambda_distribution", "training_curves", "recall_bars_"):
        assert product in text


def test_profiles_and_refusals(tmp_path):
    assert set(profiles.PROFILES) == {"smoke", "mini", "mini-x2", "paper"}
    with pytest.raises(ConfigError, match="unknown profile"):
        runner.reproduce("tiny", results_dir=tmp_path)
    with pytest.raises(CirError, match="--data-root"):
        runner.reproduce("paper", results_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown notebook parameter"):
        runner.reproduce("smoke", data_root=tmp_path / "d", results_dir=tmp_path, parameters={"epochs": 1})


def test_paper_profile_without_data_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "openai_weights_location", lambda model: None)
    monkeypatch.setattr(runner, "network_reachable", lambda *a, **k: False)
    root = tmp_path / "real"
    (root / "cirr_dataset").mkdir(parents=True)
    with pytest.raises(PipelineError) as err:
        runner.reproduce("paper", data_root=root, results_dir=tmp_path / "results")
    message = str(err.value)
    assert "fashionIQ_dataset" in message and "cap.rc2.train.json" in message
    assert "OpenAI's RN50 weights" in message and "check-data" in message
    assert not (tmp_path / "results" / "paper" / "executed").exists()  # refused before running anything


def test_cli_parses_reproduce():
    from cir_lib.cli import build_parser

    args = build_parser().parse_args(["reproduce", "--profile", "smoke", "--data-root", "d", "--results", "r",
                                      "--set", "stage1_epochs=3"])
    assert (args.profile, args.data_root, args.results, args.set) == ("smoke", "d", "r", ["stage1_epochs=3"])


def test_ensure_mini_reuses_and_refuses(tmp_path, smoke_root):
    root = tmp_path / "data"
    shutil.copytree(smoke_root, root)
    before = (root / "MINI_BENCHMARK.json").stat().st_mtime_ns
    manifest = notebook.ensure_mini(root, "smoke", seed=0)  # same preset and seed: reused as is
    assert manifest["preset"] == "smoke" and (root / "MINI_BENCHMARK.json").stat().st_mtime_ns == before
    with pytest.raises(PipelineError, match="holds the 'smoke' mini benchmark"):
        notebook.ensure_mini(root, "mini", seed=0)


def test_helpers_for_the_notebooks(tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    config = notebook.stage_config("smoke", "finetune", "cirr")
    for fresh in (False, True):  # not a run folder: never deleted, even when asked to start over
        with pytest.raises(PipelineError, match="not a run folder"):
            notebook.train_or_reuse("finetune", tmp_path, config, other, fresh=fresh)
    assert (other / "keep.txt").exists()
    assert parse_seeds("0,1,2") == parse_seeds([0, 1, 2]) == (0, 1, 2)
    assert parse_seeds(3) == (3,)
    for bad in ("a,b", "1,1", "-1", ""):
        with pytest.raises(ConfigError, match="seeds"):
            parse_seeds(bad)
    config = notebook.stage_config("smoke", "combiner", "cirr", epochs=3, cache_dir=tmp_path / "c")
    assert (config.epochs, config.dataset, config.cache_dir) == (3, "cirr", str(tmp_path / "c"))
    assert notebook.stage_config("smoke", "finetune", "cirr").epochs == notebook.stage_config("smoke", "finetune", "cirr", epochs=None).epochs
    keys = list(tables.CIRR_COLUMNS)
    rows = {"zero-shot sum": dict.fromkeys(keys, 10.0), "stage 1 sum": dict.fromkeys(keys, 20.0),
            "stage 1 + Combiner": dict.fromkeys(keys, 30.0)}
    assert notebook.ordering(rows, "cirr") == {"scores": {"zero-shot sum": 10.0, "stage 1 sum": 20.0,
                                                          "stage 1 + Combiner": 30.0}, "ascending": True}
    rows["stage 1 + Combiner"] = dict.fromkeys(keys, 15.0)  # below stage 1 sum (recalls are never negative)
    assert not notebook.ordering(rows, "cirr")["ascending"]
    notes = notebook.table_notes(profiles.PROFILES["mini"], "cirr")
    assert any("not the paper's data" in n for n in notes) and any("test1" in n for n in notes)
    assert not any("not the paper's data" in n for n in notebook.table_notes(profiles.PROFILES["paper"], "fashioniq"))


@pytest.mark.notebooks
def test_failing_notebook_is_named_with_its_cell(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("y = x + 1"), nbformat.v4.new_code_cell("raise ValueError(f'boom {x}')")]
    source = tmp_path / "broken.ipynb"
    nbformat.write(nb, source)
    with runner.pipeline_kernel() as kernel:
        with pytest.raises(PipelineError) as err:
            runner.run_notebook("broken", tmp_path / "out" / "broken.ipynb", {"x": 7}, kernel_name=kernel,
                                  cwd=tmp_path, source=source, progress=False)
    message = str(err.value)
    assert "broken.ipynb" in message and "ValueError: boom 7" in message and "cell" in message
    assert (tmp_path / "out" / "broken.failed.ipynb").is_file()  # kept beside, with its traceback
    assert not (tmp_path / "out" / "broken.ipynb").exists() and "broken.failed.ipynb" in message


@pytest.mark.notebooks
def test_the_series_kernel_keeps_its_imports_but_no_notebook_sees_another_ones_variables(tmp_path):
    """reproduce runs the series in one kernel (the library imported once): each notebook starts
    from an empty namespace and execution count 1, a failure is reported as with a kernel of its
    own, and the next notebook still runs on the same kernel."""
    def notebook_of(*sources):
        nb = nbformat.v4.new_notebook()
        params = nbformat.v4.new_code_cell("x = 1")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [params, *(nbformat.v4.new_code_cell(src) for src in sources)]
        return nb

    first = notebook_of("import os, json\nos.environ['CIR_SERIES_PID'] = str(os.getpid())\nleaked = x")
    second = notebook_of("import os\nassert 'leaked' not in dir() and 'json' not in dir(), dir()\n"
                         "print(os.environ['CIR_SERIES_PID'] == str(os.getpid()), x)")
    broken = notebook_of("raise ValueError(f'boom {x}')")
    for name, nb in (("first", first), ("second", second), ("broken", broken)):
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    with runner.pipeline_kernel() as kernel, runner.series_kernel(kernel, tmp_path) as km:
        for name in ("first", "second"):
            runner.run_notebook(name, tmp_path / "out" / f"{name}.ipynb", {"x": 7}, kernel_name=kernel,
                                source=tmp_path / f"{name}.ipynb", progress=False, km=km)
        with pytest.raises(PipelineError, match="ValueError: boom 3"):
            runner.run_notebook("broken", tmp_path / "out" / "broken.ipynb", {"x": 3}, kernel_name=kernel,
                                source=tmp_path / "broken.ipynb", progress=False, km=km)
        runner.run_notebook("second", tmp_path / "out" / "again.ipynb", {"x": 9}, kernel_name=kernel,
                            source=tmp_path / "second.ipynb", progress=False, km=km)
        assert km.is_alive()
    assert not km.is_alive()  # shut down with the series
    done = nbformat.read(tmp_path / "out" / "second.ipynb", as_version=4)
    code = [c for c in done.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # counted from 1 again
    assert code[-1].outputs[0]["text"] == "True 7\n"  # the same kernel process, its own parameters
    again = nbformat.read(tmp_path / "out" / "again.ipynb", as_version=4)
    assert [c for c in again.cells if c.cell_type == "code"][-1].outputs[0]["text"] == "True 9\n"


@pytest.mark.notebooks
def test_smoke_profile_runs_every_notebook(smoke_pipeline, tmp_path, monkeypatch):
    project = smoke_pipeline.project  # run once in a project skeleton (tests/conftest.py)
    data_root, summary, seconds, out = (smoke_pipeline.data_root, smoke_pipeline.summary, smoke_pipeline.seconds,
                                        smoke_pipeline.out)
    assert list(summary["executed"]) == list(runner.NOTEBOOKS)
    for name in runner.NOTEBOOKS:  # small, no widget state, no frozen bars: final progress lines only
        executed = out / "executed" / f"{name}.ipynb"
        text = executed.read_text()
        assert executed.stat().st_size < 1_000_000, (name, executed.stat().st_size)
        assert "application/vnd.jupyter.widget" not in text, f"{name}: widget state or views"
        assert not re.search(r"(?<![0-9])0%\|", text), f"{name}: a progress bar frozen at 0%"
    assert "too small to show the ordering" in (out / "executed" / "03_evaluation.ipynb").read_text()
    for dataset, columns in tables.TABLE_COLUMNS.items():
        table = pd.read_csv(out / "tables" / f"{dataset}.csv")
        assert {"source", "method", *columns} <= set(table.columns)  # plus backbone and the intervals' bounds
        ours = table[(table["source"] == "this run") & table["method"].isin(tables.METHODS)]
        assert list(ours["method"]) == list(tables.METHODS)
        values = ours[list(columns)].to_numpy(float)
        assert ((values >= 0) & (values <= 100)).all() and not pd.isna(values).any()
        for ext in ("md", "tex", "meta.json"):
            assert (out / "tables" / f"{dataset}.{ext}").stat().st_size > 100
        meta = json.loads((out / "tables" / f"{dataset}.meta.json").read_text())
        assert f"{dataset}-finetune" in meta["runs"] and meta["environment"]["packages"]["torch"]
    figures = {p.name for p in (out / "figures").iterdir()}
    for stem in ("recall_bars_fashioniq", "recall_bars_cirr", "training_curves", "lambda_distribution",
                 "retrieval_grid_fashioniq", "retrieval_grid_cirr"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= figures, stem
    assert {str(p) for p in summary["tables"]} >= {str(out / "tables" / "cirr.csv")}
    print(f"smoke reproduce: {seconds:.1f} s", {k: round(v, 1) for k, v in summary["seconds"].items()})
    _explorer_checks(data_root, out)
    before = _tracked_files(out)
    records = [out / name for name in before if Path(name).suffix in (".json", ".ipynb", ".md", ".csv", ".tex")]
    assert not [p.name for p in records if str(project.parent) in p.read_text()], "an absolute path in a record"
    moved = tmp_path / "second" / "clone"  # the same project at another path: the rerun there changes nothing
    shutil.copytree(project, moved)
    hidden = project.with_name(project.name + "-hidden")  # the original out of reach while the copy reruns
    project.rename(hidden)  # (put back afterwards: other tests read the shared run)
    try:
        monkeypatch.chdir(moved / "notebooks")
        monkeypatch.delenv("CIR_LIB_PROJECT", raising=False)
        _rerun_checks(before, moved / "results" / "smoke")
    finally:
        hidden.rename(project)


def _tracked_files(out) -> dict:
    """What git tracks of a profile's results (results/README.md): everything but checkpoints,
    caches, TensorBoard event files and timing.json."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*"))
            if p.is_file() and p.suffix != ".pt" and "cache" not in p.parts and p.name != "timing.json"
            and not p.name.startswith("events.out.tfevents.")}


def _rerun_checks(before, out):
    """A rerun (here in a copy of the project at another path) reuses the finished runs and leaves
    every tracked file byte-identical (tables, figures with their PDFs, metrics, executed notebooks,
    run records); --from 03 trains nothing."""
    best = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("best.pt")}
    runner.reproduce("smoke", progress=False, log_output=False)
    after = _tracked_files(out)
    assert {k for k in before if before[k] != after.get(k)} == set() and set(after) == set(before)
    runner.reproduce("smoke", progress=False, log_output=False, start="03")
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("best.pt")} == best


def _explorer_checks(data_root, out):
    """The explorer over the smoke runs: own queries, a typed caption over another reference, widgets."""
    from cir_lib import explore

    paths = result_paths(out)
    ex = explore.Explorer(data_root, "cirr", paths.run("cirr", "combiner"), notebook.eval_config(paths))
    q = ex.query("cirr", 0)
    own = ex.rank("cirr", 0, k=3)
    assert set(own) == {"stage 1 sum", "stage 1 + Combiner", "lambda"} and 0 < own["lambda"] < 1
    assert all(name != q["reference"] for name, _ in own["stage 1 sum"])  # CIRR never ranks the reference
    other = ex.sets["cirr"].split.image_names[-1]
    typed = ex.example("cirr", 0, k=3, caption="add two red cars", reference=other)
    assert typed["target"] is None and typed["reference"].name.startswith(other)
    assert len(ex.lambdas()["cirr"]) == len(ex.sets["cirr"].split.queries)
    k = 5
    for i in range(len(ex.sets["cirr"].split.queries)):  # the printed target rank agrees with the top-k drawn
        own_ex = ex.example("cirr", i, k=k)
        assert own_ex["target_path"].name.startswith(own_ex["target"])
        for method, ranking in own_ex["rankings"].items():
            names = [name for name, _ in ranking]
            r = own_ex["target_ranks"][method]
            assert r >= 1 and ((r <= k) == (own_ex["target"] in names)), (i, method, r, names)
            if r <= k:
                assert names[r - 1] == own_ex["target"]
    tabs = explore.explorer_tabs({"cirr": ex}, k=3)
    widget = tabs.children[0]
    (_, index, top), reference, caption, go, message, ranked = widget.children[0].children, *widget.children[1:6]
    index.value = 1  # choose query 1: the reference and caption follow, the ranking is shown at once
    assert caption.value == ex.query("cirr", 1)["caption"]
    assert ranked.value.count("<br>") == 1 and ranked.value.count(",") == 2 * (3 - 1)  # two methods, top-3
    top.value = 2  # applied at once, without the retrieve button
    assert ranked.value.count(",") == 2 * (2 - 1)
    listed = ranked.value
    reference.value = "no-such-image"  # what Enter in the box sends: checked at once, no button
    assert "unknown reference image" in message.value and "no-such-image" in message.value
    assert ranked.value == listed  # nothing retrieved for it
    go.click()
    assert "unknown reference image" in message.value and ranked.value == listed
    reference.value = ex.query("cirr", 1)["reference"]
    assert message.value == ""
    caption.value = "add two red cars and remove the dog"  # Enter in the caption box retrieves
    assert message.value == "" and ranked.value != listed
    assert not caption.continuous_update and not reference.continuous_update  # the value arrives on Enter


@pytest.mark.notebooks
def test_data_prep_notebook_honours_skip_missing(tmp_path, smoke_root):
    from cir_lib.data import load_split

    data_root = tmp_path / "smoke"
    shutil.copytree(smoke_root, data_root)
    train = load_split(data_root, "fashioniq", "train")
    missing = Path(train.image_paths[train.name_to_index[train.queries[0].reference]])
    missing.unlink()
    kwargs = dict(data_root=data_root, results_dir=tmp_path / "results", notebooks=["00_data_prep"], progress=False)
    with pytest.raises(PipelineError, match=missing.name):
        runner.reproduce("smoke", **kwargs)
    summary = runner.reproduce("smoke", parameters={"skip_missing": True}, **kwargs)
    assert list(summary["executed"]) == ["00_data_prep"]


def test_make_lab_opens_the_series_in_order():
    lab = load_tool("lab")
    paths = lab.notebooks()
    assert paths == [f"notebooks/{name}.ipynb" for name in runner.NOTEBOOKS]
    layout = lab.workspace(paths)["data"]["layout-restorer:data"]["main"]
    assert layout["dock"]["widgets"] == [f"notebook:{p}" for p in paths] and layout["current"] == f"notebook:{paths[0]}"
    command = lab.command(["--port", "8890"])
    assert f"--ServerApp.root_dir={ROOT}" in command and command[-2:] == ["--port", "8890"]
    assert "lab:" in (ROOT / "Makefile").read_text() and "make lab" in (ROOT / "README.md").read_text()
