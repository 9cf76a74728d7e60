"""User mistakes through the command line: each ends with one `error: ...` line (the first line of
stderr), a non-zero exit status and no traceback, and the mistakes that can be seen before any work
are refused before it (the heavy steps are replaced by functions that fail the test if reached)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cir_lib.cli import main
from cir_lib.recipes import CombinerTrainConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMOKE_TRAIN = ["--recipe", "smoke", "--dataset", "fashioniq"]


def run_cli(capsys, *argv) -> tuple[int, str]:
    """(exit status, stderr) of `cir-lib argv...`, in this process."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    return code, capsys.readouterr().err


def expect_error(capsys, argv, *words, status=1) -> str:
    """Run the command; check the status, the `error:` first line holding `words`, no traceback."""
    code, err = run_cli(capsys, *argv)
    lines = err.splitlines()
    assert lines, f"nothing on stderr for {argv}"
    first = lines[0]
    assert first.startswith("error: "), err
    for word in words:
        assert word.lower() in first.lower(), f"{word!r} not in {first!r}"
    assert "Traceback" not in err and "weights_only" not in err, err
    assert code == status, err
    return first


def no_heavy_work(*_args, **_kwargs):
    raise AssertionError("heavy work started before the mistake was reported")


@pytest.fixture()
def no_training(monkeypatch):
    """Reading the training data, encoding or loading a model fails the test."""
    import cir_lib.cli.submit
    import cir_lib.finetune
    import cir_lib.pretrain
    import cir_lib.train_combiner

    monkeypatch.setattr(cir_lib.finetune, "load_train_split", no_heavy_work)
    monkeypatch.setattr(cir_lib.train_combiner, "load_train_split", no_heavy_work)
    monkeypatch.setattr(cir_lib.cli.submit, "resolve_models", no_heavy_work)
    monkeypatch.setattr(cir_lib.pretrain, "_read_pool", no_heavy_work)


@pytest.fixture(scope="module")
def files(tmp_path_factory, smoke_root):
    """Junk files, kit checkpoints of both kinds, and run folders of the wrong kinds."""
    from cir_lib.backbone import load_backbone, save_backbone_checkpoint
    from cir_lib.composers import Combiner, save_combiner_checkpoint

    root = tmp_path_factory.mktemp("cli_errors")
    f = {"root": root, "data": smoke_root}
    f["file"] = root / "a_file.txt"
    f["file"].write_text("not a folder\n")
    f["random"] = root / "random.pt"
    f["random"].write_bytes(bytes(range(256)) * 3)
    f["text"] = root / "text.pt"
    f["text"].write_text("hello, I am not a checkpoint\n")
    f["empty"] = root / "empty.pt"
    f["empty"].write_bytes(b"")
    backbone = load_backbone("cir-mini", "none")
    f["backbone"] = save_backbone_checkpoint(backbone, root / "backbone.pt")
    f["combiner"] = save_combiner_checkpoint(Combiner(backbone.embed_dim, 16, 32), root / "combiner.pt")
    f["not_run"] = root / "not_a_run"
    f["not_run"].mkdir()
    # a Combiner run whose stage-1 run was deleted
    f["orphan"] = root / "orphan-combiner"
    f["orphan"].mkdir()
    (f["orphan"] / "config.json").write_text(json.dumps({
        "kind": "combiner", "config": dataclasses.asdict(CombinerTrainConfig(backbone="cir-mini")),
        "clip": {"run": str(root / "deleted-finetune"), "backbone": "cir-mini", "weights_key": "x"}}))
    (f["orphan"] / "best.pt").write_bytes(b"")
    f["last"] = root / "last.pt"  # a run's training state
    torch.save({"format": "cir_lib.run/1", "kind": "finetune", "epoch": 1}, f["last"])
    # a finetune run folder that already holds checkpoints
    f["used_run"] = root / "used-finetune"
    f["used_run"].mkdir()
    (f["used_run"] / "best.pt").write_bytes(b"")
    return f


def train(files, command="finetune", *extra):
    clip = ["--clip-run", files["root"] / "no-stage1"] if command == "train-combiner" else []
    return [command, "--data-root", files["data"], *SMOKE_TRAIN, "--out", files["root"] / "new-run", *clip, *extra]


# ----------------------------------------------------------------------------- output paths


@pytest.mark.parametrize("command", ["finetune", "train-combiner"])
def test_out_is_a_file_refused_before_training(capsys, files, no_training, command):
    argv = [command, "--data-root", files["data"], *SMOKE_TRAIN, "--out", files["file"]]
    if command == "train-combiner":
        argv += ["--clip-run", files["root"] / "no-stage1"]
    expect_error(capsys, argv, "--out", str(files["file"]), "is a file")


def test_submit_out_is_a_file_refused_before_encoding(capsys, files, no_training):
    expect_error(capsys, ["submit-cirr", "--data-root", files["data"], "--backbone", "cir-mini", "--pretrained",
                          "none", "--out", files["file"]], "--out", "is a file")


def test_make_mini_out_is_a_file(capsys, files):
    expect_error(capsys, ["make-mini", "--out", files["file"], "--preset", "smoke"], str(files["file"]), "is a file")


def test_pretrain_out_is_not_replaced_unless_it_is_a_kit_checkpoint(capsys, files, no_training):
    base = ["pretrain-mini", "--data-root", files["data"], "--epochs", "1", "--out"]
    expect_error(capsys, base + [files["file"]], "exists and is not a backbone checkpoint")
    assert files["file"].read_text() == "not a folder\n"
    expect_error(capsys, base + [files["not_run"]], "is a folder")
    with pytest.raises(AssertionError, match="heavy work"):  # a kit checkpoint is replaced: work starts
        main([str(a) for a in base + [files["backbone"]]])


def test_cache_dir_that_is_a_file_refused_before_encoding(capsys, files, no_training, monkeypatch):
    import cir_lib.backbone

    monkeypatch.setattr(cir_lib.backbone, "load_backbone", no_heavy_work)
    model = ["--backbone", "cir-mini", "--pretrained", "none", "--cache-dir", files["file"]]
    expect_error(capsys, ["evaluate", "--data-root", files["data"], "--dataset", "cirr", *model],
                 "--cache-dir", "is a file")
    expect_error(capsys, ["submit-cirr", "--data-root", files["data"], *model, "--out", files["root"] / "sub"],
                 "--cache-dir", "is a file")
    expect_error(capsys, train(files, "finetune", "--set", f"cache_dir={files['file']}"), "cache_dir", "is a file")


def test_reproduce_paths_that_are_files_refused_before_a_notebook_runs(capsys, files, monkeypatch):
    import cir_lib.reproduce

    monkeypatch.setattr(cir_lib.reproduce, "reproduce", no_heavy_work)
    expect_error(capsys, ["reproduce", "--profile", "smoke", "--data-root", files["file"]], "--data-root", "is a file")
    expect_error(capsys, ["reproduce", "--profile", "smoke", "--data-root", files["data"], "--results", files["file"]],
                 "--results", "is a file")


def test_check_data_workers(capsys, files):
    expect_error(capsys, ["check-data", "--data-root", files["data"], "--workers", "0"], "--workers", ">= 1")


def test_existing_run_with_checkpoints_refused_before_training(capsys, files, no_training):
    argv = ["finetune", "--data-root", files["data"], *SMOKE_TRAIN, "--out", files["used_run"]]
    expect_error(capsys, argv, "not a run folder", "nothing was deleted", "--out folder")


def test_read_only_output_folder_named_before_work(capsys, files, no_training, monkeypatch):
    import cir_lib.runs

    locked = files["root"] / "locked"
    locked.mkdir(exist_ok=True)
    if os.geteuid() != 0:  # a real read-only folder (root writes anyway: then simulated below)
        locked.chmod(0o555)
        try:
            expect_error(capsys, train(files)[:-2] + ["--out", locked / "run"], "permission denied", str(locked))
        finally:
            locked.chmod(0o755)
    real_access = os.access
    monkeypatch.setattr(cir_lib.runs.os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    argv = ["finetune", "--data-root", files["data"], *SMOKE_TRAIN, "--out", locked / "run"]
    expect_error(capsys, argv, "permission denied", str(locked))
    expect_error(capsys, ["submit-cirr", "--data-root", files["data"], "--backbone", "cir-mini", "--pretrained",
                          "none", "--out", locked / "sub"], "permission denied", str(locked))
    expect_error(capsys, ["pretrain-mini", "--data-root", files["data"], "--out", locked / "m.pt"],
                 "permission denied", str(locked))


def test_os_errors_are_one_line_naming_the_path(capsys, files, monkeypatch):
    import cir_lib.mini

    target = files["root"] / "denied"

    def denied(out, **_kw):
        raise PermissionError(13, "Permission denied", str(out))

    monkeypatch.setattr(cir_lib.mini, "make_mini", denied)
    expect_error(capsys, ["make-mini", "--out", target, "--preset", "smoke"], "permission denied", str(target))

    def full(out, **_kw):
        raise OSError(28, "No space left on device", str(out))

    monkeypatch.setattr(cir_lib.mini, "make_mini", full)
    expect_error(capsys, ["make-mini", "--out", target], "no space left", str(target), "disk is full")
    monkeypatch.setattr(cir_lib.mini, "make_mini", denied)
    with pytest.raises(PermissionError):  # --debug shows the traceback
        main(["--debug", "make-mini", "--out", str(target)])


def test_keyboard_interrupt_is_one_line(capsys, files, monkeypatch):
    import cir_lib.check

    def interrupted(*_a, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(cir_lib.check, "check_data", interrupted)
    expect_error(capsys, ["check-data", "--data-root", files["data"]], "interrupted", status=130)


# ----------------------------------------------------------------------------- devices and settings


def test_cuda_without_a_gpu(capsys, files, no_training, monkeypatch):
    import cir_lib.backbone

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cir_lib.backbone, "load_backbone", no_heavy_work)
    expect_error(capsys, ["evaluate", "--data-root", files["data"], "--dataset", "cirr", "--backbone", "cir-mini",
                          "--pretrained", "none", "--device", "cuda"], "cuda", "not available", "cpu")
    expect_error(capsys, train(files, "finetune", "--set", "device=cuda"), "cuda", "not available")


@pytest.mark.parametrize("command, setting, words", [
    ("finetune", "lr=nan", ("lr", "finite")),
    ("finetune", "lr=inf", ("lr", "finite")),
    ("finetune", "lr=-inf", ("lr", "finite")),
    ("finetune", "lr=0", ("lr", "> 0")),
    ("finetune", "lr=-1e-5", ("lr", "> 0")),
    ("finetune", "epochs=0", ("epochs", ">= 1")),
    ("finetune", "batch_size=-1", ("batch_size", ">= 2")),
    ("finetune", "weight_decay=nan", ("weight_decay", "finite")),
    ("finetune", "weight_decay=-0.1", ("weight_decay", ">= 0")),
    ("finetune", "betas=1.5,0.9", ("betas", "[0, 1)")),
    ("finetune", "eps=0", ("eps", "> 0")),
    ("finetune", "preprocess_ratio=nan", ("preprocess_ratio", "finite")),
    ("finetune", "validate_every=0", ("validate_every", ">= 1")),
    ("finetune", "encode_batch_size=0", ("encode_batch_size", ">= 1")),
    ("finetune", "num_workers=-2", ("num_workers", ">= 0")),
    ("finetune", "threads=0", ("threads", ">= 1")),
    ("train-combiner", "dropout=1", ("dropout", "[0, 1)")),
    ("train-combiner", "dropout=-0.1", ("dropout", "[0, 1)")),
    ("train-combiner", "dropout=nan", ("dropout", "finite")),
    ("train-combiner", "lr=inf", ("lr", "finite")),
    ("train-combiner", "proj_dim=0", ("proj_dim", ">= 1")),
])
def test_out_of_range_settings_are_refused_by_name(capsys, files, no_training, command, setting, words):
    expect_error(capsys, train(files, command, "--set", setting), *words)


def test_pretrain_and_evaluate_numbers(capsys, files, no_training, monkeypatch):
    import cir_lib.backbone

    monkeypatch.setattr(cir_lib.backbone, "load_backbone", no_heavy_work)
    pretrain = ["pretrain-mini", "--data-root", files["data"], "--out", files["root"] / "m.pt"]
    expect_error(capsys, pretrain + ["--lr", "nan"], "lr", "finite")
    expect_error(capsys, pretrain + ["--epochs", "0"], "epochs", ">= 1")
    expect_error(capsys, ["evaluate", "--data-root", files["data"], "--dataset", "cirr", "--backbone", "cir-mini",
                          "--pretrained", "none", "--batch-size", "0"], "batch_size", ">= 1")


@pytest.mark.parametrize("setting, words, status", [
    (["--recipe", "no-such-recipe"], ("unknown recipe", "no-such-recipe"), 1),
    (["--set", "no_such_key=1"], ("no field", "no_such_key"), 1),
    (["--set", "epochs"], ("key=value",), 1),
    (["--set", "epochs=abc"], ("epochs", "abc"), 1),
    (["--dataset", "fashion"], ("--dataset", "invalid choice"), 2),
])
def test_recipe_and_set_mistakes(capsys, files, no_training, setting, words, status):
    argv = ["finetune", "--data-root", files["data"], "--out", files["root"] / "r"]
    argv += setting if "--recipe" in setting else [*SMOKE_TRAIN, *setting]
    if "--recipe" in setting:
        argv += ["--dataset", "fashioniq"]
    expect_error(capsys, argv, *words, status=status)


def test_argument_mistakes_name_the_commands_help(capsys, files):
    first = expect_error(capsys, ["finetune", "--data-root", files["data"], "--bogus"], "--bogus", status=2)
    assert "cir-lib finetune --help" in first
    expect_error(capsys, ["no-such-command"], "invalid choice", status=2)
    expect_error(capsys, ["finetune", "--recipe", "smoke"], "missing", "--data-root", "--out")
    expect_error(capsys, ["evaluate", "--data-root", files["data"], "--dataset", "cirr"], "--backbone")


def test_help_shows_the_required_options_as_required(capsys):
    for command, required in (("finetune", "--data-root DIR --recipe RECIPE --out DIR"),
                              ("train-combiner", "--data-root DIR --recipe RECIPE --out DIR --clip-run RUN")):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        usage = capsys.readouterr().out.split("\n\n")[0]
        assert f"cir-lib {command} {required}" in usage  # not in [brackets]
        assert f"cir-lib {command} --list-recipes" in usage


# ----------------------------------------------------------------------------- data roots and runs


def test_data_root_mistakes(capsys, files, monkeypatch):
    import cir_lib.backbone

    monkeypatch.setattr(cir_lib.backbone, "load_backbone", no_heavy_work)
    model = ["--backbone", "cir-mini", "--pretrained", "none"]
    for root, state in ((files["root"] / "nowhere", "does not exist"), (files["file"], "is a file")):
        expect_error(capsys, ["evaluate", "--data-root", root, "--dataset", "cirr", *model], "data root", state)
        expect_error(capsys, ["finetune", "--data-root", root, *SMOKE_TRAIN, "--out", files["root"] / "r"],
                     "data root", state)
        expect_error(capsys, ["check-data", "--data-root", root], "data root", state)
        expect_error(capsys, ["submit-cirr", "--data-root", root, *model, "--out", files["root"] / "s"],
                     "data root", state)
    expect_error(capsys, ["pretrain-mini", "--data-root", files["root"] / "nowhere"], "mini_pool", "make-mini")


def test_run_folder_mistakes(capsys, files):
    base = ["evaluate", "--data-root", files["data"], "--dataset", "fashioniq", "--run"]
    expect_error(capsys, base + [files["not_run"]], "not a run folder")
    expect_error(capsys, base + [files["file"]], "not a run folder")
    expect_error(capsys, base + [files["orphan"]], "stage-1 run", "no longer there")
    expect_error(capsys, base + [files["orphan"] / "best.pt"], "a run is named by its folder", str(files["orphan"]))
    combiner = ["train-combiner", "--data-root", files["data"], *SMOKE_TRAIN, "--out", files["root"] / "c"]
    expect_error(capsys, combiner + ["--clip-run", files["not_run"]], "not a run folder")
    expect_error(capsys, combiner + ["--clip-run", files["orphan"]], "'combiner' run", "stage-1")


def test_duplicate_annotation_entries(capsys, files, tmp_path):
    root = tmp_path / "dup"
    shutil.copytree(files["data"], root)
    captions = root / "fashionIQ_dataset" / "captions" / "cap.dress.val.json"
    entries = json.loads(captions.read_text())
    captions.write_text(json.dumps(entries + entries[:1]))
    expect_error(capsys, ["finetune", "--data-root", root, *SMOKE_TRAIN, "--out", tmp_path / "run"],
                 "annotation problem", "dress val")


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("junk, reason", [("random", "torch cannot read it"), ("text", "text file"),
                                          ("empty", "empty")])
@pytest.mark.parametrize("option", ["--pretrained", "--clip-checkpoint", "--combiner-checkpoint"])
def test_junk_weights_files(capsys, files, junk, reason, option):
    argv = ["evaluate", "--data-root", files["data"], "--dataset", "cirr", "--backbone", "cir-mini"]
    argv += [option, files[junk]] if option != "--combiner-checkpoint" else ["--pretrained", "none", option, files[junk]]
    expect_error(capsys, argv, str(files[junk]), "not a checkpoint the kit can read", reason)


def test_kit_checkpoints_given_to_the_wrong_option_say_what_they_are(capsys, files):
    base = ["evaluate", "--data-root", files["data"], "--dataset", "cirr"]
    expect_error(capsys, base + ["--clip-checkpoint", files["combiner"]],
                 "is a Combiner checkpoint written by the kit", "--combiner-checkpoint")
    expect_error(capsys, base + ["--backbone", "cir-mini", "--pretrained", files["combiner"]],
                 "is a Combiner checkpoint written by the kit", "--combiner-checkpoint")
    expect_error(capsys, base + ["--backbone", "cir-mini", "--pretrained", "none", "--combiner-checkpoint",
                                 files["backbone"]], "is a backbone (CLIP) checkpoint written by the kit",
                 "--clip-checkpoint")
    for option in ("--clip-checkpoint", "--combiner-checkpoint"):
        extra = ["--backbone", "cir-mini", "--pretrained", "none"] if option == "--combiner-checkpoint" else []
        expect_error(capsys, base + extra + [option, files["last"]], "run's last.pt written by the kit", "--run")


# ----------------------------------------------------------------------------- advice in messages


def test_submission_advice_names_no_option_it_lacks(capsys, files, tmp_path):
    from cir_lib.cli import build_parser

    root = tmp_path / "data"
    shutil.copytree(files["data"], root)
    image = sorted((root / "cirr_dataset" / "test1").glob("*.png"))[0]
    image.unlink()
    first = expect_error(capsys, ["submit-cirr", "--data-root", root, "--backbone", "cir-mini", "--pretrained",
                                  "none", "--out", tmp_path / "sub"], "missing")
    err = first.lower()
    assert "skip" not in err and "check-data" in err and "every test1 image" in err
    options = {a for action in build_parser(["submit-cirr"])._subparsers._group_actions[0].choices["submit-cirr"]
               ._actions for a in action.option_strings}
    assert "--skip-missing" not in options  # the reason the advice must not name it


def test_skip_missing_advice_names_existing_options():
    """Each option the data reader's advice names exists on the command it names."""
    from cir_lib.cli import build_parser
    from cir_lib.data import SKIP_MISSING_CLI
    from cir_lib.recipes import FinetuneConfig

    commands = build_parser()._subparsers._group_actions[0].choices
    for part in SKIP_MISSING_CLI.split(";"):
        where, _, how = part.partition(":")
        for name in re.findall(r"[a-z][a-z-]+", where.replace("cir-lib", "")):
            if name in commands:
                options = {a for action in commands[name]._actions for a in action.option_strings}
                option = how.split()[0]
                assert option in options, (name, option)
                if option == "--set":
                    assert how.split()[1].split("=")[0] in {f.name for f in dataclasses.fields(FinetuneConfig)}


def test_readme_sections_cited_by_messages_exist():
    headings = {re.sub(r"^\d+\.\s*", "", line.lstrip("#").strip())
                for line in (PROJECT_ROOT / "README.md").read_text().splitlines() if line.startswith("#")}
    cited = set()
    for path in (PROJECT_ROOT / "cir_lib").rglob("*.py"):
        cited |= {(m, path.name) for m in re.findall(r"README(?:'s)?:?\s+[*'\"]([^*'\"]+)[*'\"]", path.read_text())}
    assert cited, "the pattern finds no citation: update it"
    missing = sorted((title, name) for title, name in cited if title not in headings)
    assert not missing, f"README sections cited but absent: {missing}"


# ----------------------------------------------------------------------------- a real process


def test_a_real_process_prints_one_line_and_no_traceback(files):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "cir_lib", *map(str, train(files, "finetune", "--set", "lr=nan"))],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == "error: FinetuneConfig: lr must be a finite number, got nan"
    assert "Traceback" not in done.stderr
