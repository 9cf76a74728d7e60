"""An adversarial user's cases, through the command line: full disks at each write, read-only
locations, two writers on one folder, image bombs and symbolic-link loops, interrupted generation,
incomplete data roots, hostile names. Each ends with one `error: ...` line (the first one on stderr,
after the log lines of the work done before it, and the last), the right exit status, no traceback,
and nothing half-written left where a later command would use it.

A full disk is a monkeypatched write raising OSError(ENOSPC) (torch then wraps it in a RuntimeError,
as on a real full disk); where the tests run as root and can mount one, a small tmpfs stands in
for it as well, and a read-only tmpfs for a read-only location.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import warnings
import zlib
from pathlib import Path

import pytest
import torch

from cir_lib.cli import main

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--recipe", "smoke", "--dataset", "fashioniq"]
ZERO_SHOT = ["--backbone", "cir-mini", "--pretrained", "none"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `cir-lib argv...`, in this process."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def error_line(capsys, argv, *words, status=1) -> str:
    """Run; check the status, one `error:` line holding `words` (the last line of stderr), no traceback."""
    code, _out, err = run_cli(capsys, *argv)
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert lines[-1] == errors[0], err
    for word in words:
        assert word.lower() in errors[0].lower(), f"{word!r} not in {errors[0]!r}"
    assert "Traceback" not in err and "RuntimeError" not in err and "enforce fail" not in err, err
    assert code == status, err
    return errors[0]


def no_heavy_work(*_args, **_kwargs):
    raise AssertionError("heavy work started before the refusal")


def leftovers(folder: Path) -> list:
    """Temporary and partial files left in `folder` (recursively)."""
    return [p for p in Path(folder).rglob("*") if p.name.startswith((".tmp-", ".partial-", ".make-mini-partial-"))]


@pytest.fixture()
def root(smoke_root, tmp_path) -> Path:
    """A copy of the smoke data root that a test may damage."""
    dst = tmp_path / "data"
    shutil.copytree(smoke_root, dst, symlinks=True)
    return dst


@pytest.fixture()
def full_disk(monkeypatch):
    """`full_disk("last.pt")`: writing a file whose name holds the text fails with ENOSPC after a few
    bytes (through the atomic writers: checkpoints, caches, tables, figures, submissions)."""
    import cir_lib.runs

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f, name):
            self._f, self._name, self._written = f, name, 0

        def write(self, data):
            self._written += len(data)
            if self._written > 64:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def arm(text: str):
        def fdopen(fd, *args, **kwargs):
            f = real_fdopen(fd, *args, **kwargs)
            name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
            return Full(f, name) if text in Path(name).name else f

        monkeypatch.setattr(cir_lib.runs.os, "fdopen", fdopen)

    return arm


def _mount_tmpfs(path: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.fixture()
def tmpfs(tmp_path):
    """`tmpfs(options)` -> a mounted tmpfs folder (unmounted after the test); skips without root."""
    mounted = []

    def mount(options: str) -> Path:
        path = tmp_path / f"fs{len(mounted)}"
        if not _mount_tmpfs(path, options):
            pytest.skip("mounting a tmpfs needs root and `mount -t tmpfs`")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def bomb_png(path: Path, width: int = 50000, height: int = 50000) -> Path:
    """A PNG of a few dozen bytes whose header declares width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


def cirr_val_image(root: Path) -> Path:
    split = json.loads((root / "cirr_dataset/cirr/image_splits/split.rc2.val.json").read_text())
    return root / "cirr_dataset" / next(iter(split.values()))


# ============================================================================ full disks


def test_full_disk_writing_last_pt_is_one_line_and_leaves_nothing_half_written(capsys, root, tmp_path, full_disk):
    out = tmp_path / "run"
    full_disk("last.pt")
    line = error_line(capsys, ["finetune", "--data-root", root, *SMOKE, "--out", out, "--set", "epochs=1"],
                      "no space left on device", str(out / "last.pt"), "disk is full")
    assert line.startswith("error: cannot write ")
    assert not (out / "last.pt").exists() and not leftovers(out)


def test_full_disk_writing_the_feature_cache_continues_without_it(capsys, root, tmp_path, full_disk, caplog):
    cache = tmp_path / "cache"
    full_disk(".pt")
    code, out, err = run_cli(capsys, "evaluate", "--data-root", root, "--dataset", "cirr", *ZERO_SHOT,
                             "--cache-dir", cache, "--json")
    assert code == 0, err
    assert "recall@1" in json.loads(out)["cirr"]
    warned = [r.getMessage() for r in caplog.records if "continuing without caching" in r.getMessage()]
    assert warned and "no space left on device" in warned[0].lower() and str(cache) in warned[0]
    assert not list(cache.glob("*.pt")) and not leftovers(cache)


def test_full_disk_writing_tables_figures_and_submissions(tmp_path, full_disk):
    from cir_lib.errors import StorageError
    from cir_lib.figures import save_figure
    from cir_lib.runs import atomic_write_text

    full_disk("")
    with pytest.raises(StorageError, match="No space left on device") as err:
        atomic_write_text(tmp_path / "tables" / "cirr.csv", "x" * 1000)
    assert str(tmp_path / "tables" / "cirr.csv") in str(err.value)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    with pytest.raises(StorageError, match="No space left on device"):
        save_figure(fig, tmp_path / "figures" / "bars", ("png",))
    assert not (tmp_path / "figures" / "bars.png").exists() and not leftovers(tmp_path)


def test_a_real_full_disk_make_mini(capsys, tmpfs):
    fs = tmpfs("size=256k")
    out = fs / "mini"
    error_line(capsys, ["make-mini", "--out", out, "--preset", "smoke"], "no space left on device", str(out))
    assert not out.exists() or not any(out.iterdir())  # no partial benchmark, no temporary folder


def test_a_real_full_disk_checkpoint(capsys, root, tmpfs):
    fs = tmpfs("size=600k")  # room for config.json and history.csv, not for a checkpoint
    out = fs / "run"
    error_line(capsys, ["finetune", "--data-root", root, *SMOKE, "--out", out, "--set", "epochs=1"],
               "no space left on device", str(out), "disk is full")
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists() and not leftovers(fs)


def test_a_read_only_location_is_named_as_such(capsys, root, tmpfs, monkeypatch):
    import cir_lib.finetune

    monkeypatch.setattr(cir_lib.finetune, "load_train_split", no_heavy_work)
    fs = tmpfs("ro,size=64k")
    error_line(capsys, ["finetune", "--data-root", root, *SMOKE, "--out", fs / "run"], "read-only file system")


def test_a_name_too_long(capsys, root, tmp_path, monkeypatch):
    import cir_lib.finetune

    monkeypatch.setattr(cir_lib.finetune, "load_train_split", no_heavy_work)
    out = tmp_path / ("x" * 300)
    error_line(capsys, ["finetune", "--data-root", root, *SMOKE, "--out", out], "name too long", "shorter name")


# ============================================================================ one writer per folder


HOLDER = textwrap.dedent("""
    import sys, time
    from cir_lib.locks import folder_lock
    with folder_lock(sys.argv[1], "folder"):
        print("held", flush=True)
        time.sleep(120)
""")


@pytest.fixture()
def holder():
    """`holder(folder)` -> a process holding the folder's lock (killed after the test)."""
    procs = []

    def start(folder: Path) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True,
                                env=env)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_writer_of_a_run_folder_is_refused_at_once(capsys, root, tmp_path, holder, monkeypatch):
    import cir_lib.finetune
    import cir_lib.train_combiner

    out = tmp_path / "run"
    proc = holder(out)
    monkeypatch.setattr(cir_lib.finetune, "load_train_split", no_heavy_work)
    monkeypatch.setattr(cir_lib.train_combiner, "load_train_split", no_heavy_work)
    error_line(capsys, ["finetune", "--data-root", root, *SMOKE, "--out", out], f"run folder {out}",
               f"process {proc.pid}")
    error_line(capsys, ["train-combiner", "--data-root", root, *SMOKE, "--clip-run", "zero-shot", "--out", out,
                        "--resume"], f"process {proc.pid}")
    # the operating system releases the lock of a process that dies: no stale lock
    proc.kill()
    proc.wait()
    from cir_lib.locks import folder_lock

    with folder_lock(out, "run folder"):
        pass


def test_two_finetunes_on_one_folder_one_refused(root, tmp_path):
    """Two real processes started together: one trains, the other is refused naming the first (or, when
    it starts after the first has finished, reports the finished run of the same settings)."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "cir_lib", "finetune", "--data-root", str(root), *SMOKE, "--out", str(out),
            "--set", "epochs=1"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while not (out / ".cir-lib.lock").exists() and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    first_out, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    if second.returncode == 0:  # it started after the first had finished: the same settings, reported
        assert "already finished" in second.stdout and "nothing trained" in second.stdout, second.stdout
    else:
        assert second.returncode == 1
        errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and f"process {first.pid}" in errors[0] and "Traceback" not in second.stderr
    assert (out / "best.pt").is_file() and not (out / ".cir-lib.lock").exists()


def test_a_second_series_on_one_results_folder_is_refused(capsys, tmp_path, holder):
    results = tmp_path / "results"
    proc = holder(results / "smoke")
    error_line(capsys, ["reproduce", "--profile", "smoke", "--results", results], f"results folder {results / 'smoke'}",
               f"process {proc.pid}")


def test_a_second_make_mini_on_one_folder_is_refused(capsys, tmp_path, holder):
    proc = holder(tmp_path / "mini")
    error_line(capsys, ["make-mini", "--out", tmp_path / "mini", "--preset", "smoke"], f"process {proc.pid}")


# ============================================================================ hostile images


def test_an_image_bomb(capsys, root, caplog):
    bomb = bomb_png(cirr_val_image(root))
    code, out, _err = run_cli(capsys, "check-data", "--data-root", root, "--dataset", "cirr")
    assert code == 1 and "too large to decode safely" in out and "CIR_LIB_MAX_IMAGE_PIXELS" in out
    assert re.search(r"cirr\s+val\s+-\s+\d+\s+\d+\s+0\s+1\n", out) and out.count("unreadable image") == 1
    error_line(capsys, ["evaluate", "--data-root", root, "--dataset", "cirr", *ZERO_SHOT], str(bomb),
               "too large to decode safely", "CIR_LIB_MAX_IMAGE_PIXELS", "skip_missing")
    code, out, err = run_cli(capsys, "evaluate", "--data-root", root, "--dataset", "cirr", *ZERO_SHOT,
                             "--skip-missing", "--json")
    assert code == 0, err
    assert any("1 unreadable" in r.getMessage() and bomb.name in r.getMessage() for r in caplog.records)


def test_a_symlink_loop_is_unreadable_not_absent(capsys, root):
    image = cirr_val_image(root)
    image.unlink()
    image.symlink_to(image.name)  # points to itself
    code, out, _err = run_cli(capsys, "check-data", "--data-root", root, "--dataset", "cirr")
    assert code == 1 and "symbolic link that loops" in out
    assert re.search(r"cirr\s+val\s+-\s+\d+\s+\d+\s+0\s+1\n", out), out  # 0 missing, 1 unreadable
    error_line(capsys, ["evaluate", "--data-root", root, "--dataset", "cirr", *ZERO_SHOT], str(image.name),
               "symbolic link that loops")


# ============================================================================ incomplete roots


def test_an_interrupted_make_mini_leaves_nothing_that_looks_finished(capsys, tmp_path, monkeypatch):
    import cir_lib.mini

    def interrupted(*_a, **_kw):
        raise KeyboardInterrupt

    out = tmp_path / "mini"
    monkeypatch.setattr(cir_lib.mini, "_make_cirr", interrupted)  # after FashionIQ was written
    line = error_line(capsys, ["make-mini", "--out", out, "--preset", "smoke"], "interrupted", status=130)
    assert "--resume" not in line
    assert not out.exists() or not any(out.iterdir())
    code, out_text, _err = run_cli(capsys, "check-data", "--data-root", out, "--dataset", "fashioniq")
    assert code == 1


def test_check_data_catches_missing_categories_and_splits(capsys, root):
    for path in (root / "fashionIQ_dataset").glob("*/*.toptee.*.json"):
        path.unlink()
    (root / "fashionIQ_dataset/captions/cap.shirt.val.json").unlink()
    (root / "fashionIQ_dataset/image_splits/split.shirt.val.json").unlink()
    code, out, _err = run_cli(capsys, "check-data", "--data-root", root, "--dataset", "fashioniq")
    assert code == 1
    assert "fashioniq shirt val: annotation files" in out
    assert all(f"fashioniq toptee {s}: annotation files" in out for s in ("train", "val", "test"))


def test_check_data_without_dataset_expects_both(capsys, root):
    shutil.rmtree(root / "fashionIQ_dataset")
    code, out, _err = run_cli(capsys, "check-data", "--data-root", root)
    assert code == 1 and "fashioniq: folder" in out and "--dataset cirr" in out
    code, out, _err = run_cli(capsys, "check-data", "--data-root", root, "--dataset", "cirr")
    assert code == 0


def test_empty_captions_are_named(capsys, root):
    cap = root / "cirr_dataset/cirr/captions/cap.rc2.val.json"
    entries = json.loads(cap.read_text())
    entries[3]["caption"] = ""
    cap.write_text(json.dumps(entries))
    code, out, _err = run_cli(capsys, "check-data", "--data-root", root, "--dataset", "cirr")
    assert code == 0 and "1 warning(s)" in out and "cap.rc2.val.json: 1 entry has an empty caption (entry 3)" in out


# ============================================================================ messages and early checks


def test_torchscript_advice_names_the_command_line_option(capsys, root, tmp_path, monkeypatch):
    from cir_lib.serialization import ALLOW_TORCHSCRIPT_ENV

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.register_buffer("q", torch.quantize_per_tensor(torch.ones(1), 1.0, 0, torch.qint8))

        def forward(self, x):
            return x

    monkeypatch.delenv(ALLOW_TORCHSCRIPT_ENV, raising=False)
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors and TorchScript are deprecated; one archive is needed
        torch.jit.save(torch.jit.script(Tiny()), str(path))
    line = error_line(capsys, ["evaluate", "--data-root", root, "--dataset", "cirr", "--backbone", "cir-mini",
                               "--pretrained", path], "--allow-torchscript")
    assert "allow_torchscript=True" not in line


@pytest.mark.parametrize("command, advice", [("evaluate", "run the same command again"),
                                             ("finetune", "--resume")])
def test_ctrl_c_advice_fits_the_command(capsys, root, tmp_path, monkeypatch, command, advice):
    import cir_lib.cli.evaluate
    import cir_lib.finetune

    def interrupted(*_a, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(cir_lib.finetune, "load_train_split", interrupted)
    monkeypatch.setattr(cir_lib.cli.evaluate, "resolve_models", interrupted)
    argv = (["evaluate", "--data-root", root, "--dataset", "cirr", *ZERO_SHOT] if command == "evaluate"
            else ["finetune", "--data-root", root, *SMOKE, "--out", tmp_path / "run"])
    line = error_line(capsys, argv, "interrupted", advice, status=130)
    if command == "evaluate":
        assert "--resume" not in line


@pytest.mark.parametrize("tag", ["../../escape", "a/b", ".hidden", "x" * 300])
def test_hostile_tags_are_refused_before_any_work(capsys, root, tmp_path, monkeypatch, tag):
    import cir_lib.cli.submit

    monkeypatch.setattr(cir_lib.cli.submit, "resolve_models", no_heavy_work)
    out = tmp_path / "out" / "sub"
    error_line(capsys, ["submit-cirr", "--data-root", root, *ZERO_SHOT, "--out", out, "--tag", tag], "--tag",
               "cannot be part of a file name")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out" / "escape").exists()


def test_a_malicious_last_pt_is_refused_before_any_work(capsys, root, tmp_path, monkeypatch):
    import cir_lib.finetune

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo PWNED",))

    out = tmp_path / "run"
    out.mkdir()
    torch.save({"format": "cir_lib.run/1", "evil": Evil()}, out / "last.pt")
    monkeypatch.setattr(cir_lib.finetune, "load_train_split", no_heavy_work)
    error_line(capsys, ["finetune", "--data-root", root, *SMOKE, "--out", out, "--resume"],
               str(out / "last.pt"), "not a file the kit can load safely")


# ============================================================================ the feature cache's key


def test_cache_content_check_sees_images_rewritten_in_place(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from cir_lib.features import CACHE_CHECK_ENV, feature_cache_key
    from cir_lib.transform import PreprocessConfig

    backbone = SimpleNamespace(image_weights_key="w", model=None)
    image = tmp_path / "a.png"
    image.write_bytes(b"one image")
    stamp = os.stat(image)
    preprocess = PreprocessConfig(image_size=32)
    before = {check: feature_cache_key(backbone, [image], preprocess, check=check) for check in ("stat", "content")}
    image.write_bytes(b"two image")  # same size, modification time preserved
    os.utime(image, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert feature_cache_key(backbone, [image], preprocess, check="stat") == before["stat"]  # documented limit
    assert feature_cache_key(backbone, [image], preprocess, check="content") != before["content"]
    monkeypatch.setenv(CACHE_CHECK_ENV, "content")
    assert feature_cache_key(backbone, [image], preprocess) == feature_cache_key(backbone, [image], preprocess,
                                                                                  check="content")
    monkeypatch.setenv(CACHE_CHECK_ENV, "sometimes")
    from cir_lib.errors import ConfigError

    with pytest.raises(ConfigError, match="stat, content"):
        feature_cache_key(backbone, [image], preprocess)


def test_full_disk_writing_an_executed_notebook(tmp_path, monkeypatch):
    import papermill

    from cir_lib.errors import StorageError
    from cir_lib.reproduce import run_notebook

    def full(_source, output, **_kw):
        Path(output).write_text("{half a notebook")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), output)

    monkeypatch.setattr(papermill, "execute_notebook", full)
    target = tmp_path / "executed" / "00_data_prep.ipynb"
    with pytest.raises(StorageError, match="No space left on device") as err:
        run_notebook("00_data_prep", target, {}, kernel_name="python3", progress=False)
    assert str(target) in str(err.value) and "disk is full" in str(err.value)
    assert not target.exists() and not leftovers(tmp_path)  # the partial output is kept as .failed only
    assert (tmp_path / "executed" / "00_data_prep.failed.ipynb").exists()


def test_symlink_loops_are_not_called_absent(capsys, root, tmp_path):
    loop = tmp_path / "loop"
    loop.symlink_to(loop.name)
    error_line(capsys, ["check-data", "--data-root", loop], "symbolic link that loops")
    error_line(capsys, ["evaluate", "--data-root", root, "--dataset", "cirr", "--backbone", "cir-mini",
                        "--pretrained", loop], str(loop), "symbolic link that loops")
    cap = root / "cirr_dataset/cirr/captions/cap.rc2.val.json"
    cap.unlink()
    cap.symlink_to(cap.name)
    error_line(capsys, ["evaluate", "--data-root", root, "--dataset", "cirr", *ZERO_SHOT], "symbolic link that loops")
