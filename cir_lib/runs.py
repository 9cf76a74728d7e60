"""Run folders: resolved config, per-epoch history, and atomically written checkpoints.

A run folder (stage 1 or stage 2) holds:

    config.json   {"kind": "finetune"|"combiner", "config": {...}, "environment": {...}, "written", ...}
    history.csv   one row per epoch: epoch, loss, the validation metrics (when validated),
                  score (the model-selection number; CIRR also score_arithmetic, score_harmonic,
                  score_geometric), seconds
    best.pt       the checkpoint with the best validation score (carries its config)
    best_<mean>.pt  CIRR: the best by each mean (arithmetic, harmonic, geometric), as the original
                  code keeps them; best.pt is a hard link to the one the config's `selection` names
    last.pt       the latest epoch's checkpoint, with optimizer and RNG state (for --resume)

Checkpoints are written to a temporary file in the same folder, then renamed over the old one
(`os.replace`), so an interrupted save never leaves a truncated `best.pt` or `last.pt`.
`cir_lib.rebuild.load_run` rebuilds the trained models from a folder alone; checkpoints are read
weights-only (`cir_lib.serialization`), so loading a run never runs code.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from cir_lib.errors import ConfigError, option_name
from cir_lib.project import find_project_root, portable
from cir_lib.serialization import check_file, load_file
from cir_lib.storage import read_only, writing

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
BEST_FILE = "best.pt"
LAST_FILE = "last.pt"
RUN_KINDS = ("finetune", "combiner")
_TMP_PREFIX = ".tmp-"

# Fields that may change when a run is resumed: they do not change the numbers.
RESUMABLE_CHANGES = {"epochs", "num_workers", "device", "cache_dir", "encode_batch_size", "threads",
                     "tensorboard"}
# Records of `extra` that a resumed run must share with the run it continues (the data it reads).
# "annotations" is `cir_lib.data.annotation_fingerprint(data_root, dataset)`.
RESUME_INPUTS = ("data_root", "dataset", "annotations")
MAX_LISTED = 5  # changed files named in one message


# ----------------------------------------------------------------------------- atomic writes

def atomic_write(path, write: Callable[[Any], None], binary: bool = True) -> Path:
    """Write a file atomically: `write(fileobj)` fills a temp file beside `path`, then rename.

    Args:
        path: final file path.
        write: called with an open file object (binary unless `binary=False`).
        binary: open the temp file in binary mode.

    Returns:
        The final path, with the usual permissions (0666 less the umask; mkstemp makes 0600).
        On any exception the temp file is removed and `path` is left untouched.

    Raises:
        StorageError: the file system refused (disk full, read-only, permission denied, name too
            long), naming the path and the operating system's reason (`cir_lib.storage`).
    """
    path = Path(path)
    with writing(path):  # a full disk, a read-only folder, ...: one StorageError naming the path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX + path.name + ".", dir=path.parent)
        try:
            with os.fdopen(fd, "wb" if binary else "w",
                           **({} if binary else {"newline": "", "encoding": "utf-8"})) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _default_file_mode())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
    return path


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_text(path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically (see `atomic_write`)."""
    return atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_torch_save(obj: Any, path) -> Path:
    """`torch.save(obj, path)`, atomically (temp file in the same folder, then `os.replace`).

    Example:
        >>> atomic_torch_save({"epoch": 3}, "runs/x/last.pt")  # doctest: +SKIP
    """
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint written by this module, weights-only (no code in the file can run).

    Raises:
        ConfigError: missing, truncated or not a torch file.
        UnsafeFileError: the file holds Python objects other than tensors and plain containers.
    """
    return load_file(path, "run checkpoint", map_location=map_location)


# ----------------------------------------------------------------------------- environment

# Packages whose versions go into every record.
PACKAGES = ("torch", "torchvision", "open_clip_torch", "numpy", "pandas", "matplotlib", "seaborn",
            "papermill", "pillow", "cir_lib")


def environment_info(device: Optional[str] = None) -> dict:
    """What produced a result: Python, platform, package versions, git state, device, threads.

    Stored in each run's config.json and beside each table (`.meta.json`).

    Args:
        device: the device the work used ("cpu", "cuda"); when None, CUDA's first GPU if any.

    Returns:
        {"python", "platform", "packages": {name: version}, "git_commit", "git_dirty" (tracked files
         changed outside results/), "device", "cpu_count", "cpu_threads" (torch's)}. No clock time:
        the same work on the same machine gives the same record (a table's `.meta.json` is
        byte-identical when rebuilt); a run's config.json records when it was written ("written").
    """
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    commit, dirty = git_state(find_project_root() or Path(__file__).resolve().parents[1])  # the project's
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "git_commit": commit,
        "git_dirty": dirty,
        "device": _device_name(device),
        "cpu_count": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(),
    }


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """(the commit of the code, whether tracked files outside results/ changed) of the checkout at `root`.

    results/ is left out of both: the run being recorded rewrites its own tables and notebooks there,
    so the commit is the last one that changed anything outside results/ (committing the results
    does not change it, and a rerun records the same). (None, None) outside a git checkout or
    without git.
    """
    commit = _git(root, "log", "-1", "--format=%H", "--", ".", ":(exclude)results")
    if not commit:
        commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    return commit, (bool(status) if status is not None else None)


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _device_name(device: str | None) -> str:
    if (device is None or str(device).startswith("cuda")) and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(torch.device(device or 'cuda'))}"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


# ----------------------------------------------------------------------------- run folder

@dataclasses.dataclass
class RunFolder:
    """A run folder on disk (see the module docstring). Create with `RunFolder.open`."""

    path: Path  # the folder
    kind: str  # "finetune" | "combiner"
    writer: bool = True  # False on non-zero ranks under torchrun: they never write
    last_saved_at: Optional[float] = dataclasses.field(default=None, repr=False, compare=False)  # perf_counter

    @property
    def best_path(self) -> Path:
        return self.path / BEST_FILE

    @property
    def last_path(self) -> Path:
        return self.path / LAST_FILE

    @property
    def history_path(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @classmethod
    def open(cls, path, kind: str, config, resume: bool, extra: Optional[dict] = None,
             device: Optional[str] = None, writer: bool = True, must_match: Optional[dict] = None) -> "RunFolder":
        """Create a run folder, or reopen one to resume.

        Args:
            path: the run folder.
            kind: "finetune" or "combiner".
            config: the resolved config dataclass, written to config.json.
            resume: continue from last.pt. Without it, a folder that already holds checkpoints is
                refused (choose another folder or pass resume) rather than overwritten.
            extra: more JSON-able facts for config.json (data root, clip run, ...). Its records
                "data_root", "dataset" and "annotations" (`data.annotation_fingerprint`) are the run's
                inputs: resuming with other values is refused (naming the difference), and a resume
                keeps the values config.json already holds.
            device: the device, for the environment record.
            writer: whether this process writes (rank 0).
            must_match: {record key: {field: value}} that a resumed run's config.json must hold besides
                its config, e.g. {"clip": {"weights_key": ...}}: a Combiner resumes only on the same
                stage-1 weights.

        Returns:
            The RunFolder. Stale temp files of interrupted saves are removed.
        """
        old = check_run_folder(path, kind, resume)
        run = cls(Path(path), kind, writer)
        has_ckpt = run.last_path.exists() or run.best_path.exists()
        # paths under the project root are recorded relative to it: the same run in a checkout at
        # another path writes the same record (cir_lib.project.portable)
        config_record, extra = portable(dataclasses.asdict(config)), portable(extra or {})
        if old is not None:
            old = portable(old)
            if resume and has_ckpt:
                _check_same_config(run.path, old.get("config", {}), config_record)
                _check_same_data(run.path, old, extra)
                _check_same_inputs(run.path, old, must_match or {})
                extra = {**(extra or {}), **{k: old[k] for k in RESUME_INPUTS if k in old}}
        if writer:
            run.path.mkdir(parents=True, exist_ok=True)
            stale_files = list(run.path.glob(_TMP_PREFIX + "*"))
            for stale in stale_files:
                logger.warning("removing %s, left by an interrupted save", stale)
                stale.unlink()
            record = {"kind": kind, "config": config_record,
                      "environment": environment_info(device), "written": _now()}
            record.update(extra or {})
            atomic_write(run.config_path, lambda f: f.write(
                json.dumps(record, indent=2, default=str).encode("utf-8")))
        return run

    def save_last(self, payload: dict) -> None:
        """Write last.pt atomically (rank 0 only)."""
        if self.writer:
            atomic_torch_save(payload, self.last_path)

    def write_history(self, rows: list) -> None:
        """Rewrite history.csv from all rows so far (atomically; rank 0 only)."""
        if self.writer:
            write_history(self.history_path, rows)

    def load_last(self) -> Optional[dict]:
        """The last.pt payload, or None when there is none."""
        return load_checkpoint(self.last_path) if self.last_path.exists() else None


def check_output_folder(path, option: str = "--out") -> Path:
    """Refuse, before any work, an output folder that cannot be written: an existing file, or a
    folder (or its nearest existing parent) without write permission.

    Args:
        path: the folder to write (created later if absent).
        option: how the user named it, for messages ("--out", "out_dir").

    Returns:
        The path.

    Raises:
        ConfigError: naming the path and what to do.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder: give a folder to write into "
                          "(a new one, or one this command wrote before)")
    _check_writable(path, option)
    return path


def check_output_file(path, option: str = "--out") -> Path:
    """Refuse, before any work, an output file that cannot be written: an existing folder, or a
    folder without write permission. An existing file is replaced (atomically) when written."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give the path of the file to write")
    _check_writable(path.parent, option, path)
    return path


def _check_writable(folder: Path, option: str, target: Optional[Path] = None) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"{option} {target or folder}: {existing} is a file, so no folder can be made under it")
    if read_only(existing):
        raise ConfigError(f"{option} {target or folder}: folder {existing} is on a read-only file system; "
                          "choose a folder on a writable disk")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {target or folder}: permission denied, folder {existing} is not writable "
                          "by this user; choose another folder (or fix its permissions)")


def check_run_folder(path, kind: str, resume: bool) -> Optional[dict]:
    """Check, before any work, that `path` can hold a `kind` run: a writable folder, without
    checkpoints unless resuming, and not holding another kind of run.

    Returns:
        The folder's config.json record when it has one, else None.

    Raises:
        ConfigError: naming the folder and what to do.
    """
    if kind not in RUN_KINDS:
        raise ConfigError(f"unknown run kind {kind!r}")
    path = check_output_folder(path)
    if resume and (path / LAST_FILE).exists():  # refused now, not after the features are encoded
        check_file(path / LAST_FILE, "run checkpoint")
    if (path / LAST_FILE).exists() or (path / BEST_FILE).exists():
        if not resume:
            raise ConfigError(
                f"run folder {path} already holds checkpoints; pass {option_name('resume=True', '--resume')} "
                f"to continue it, or choose another {option_name('out_dir', '--out')} folder")
    if not (path / CONFIG_FILE).exists():
        return None
    old = read_run_config(path)
    if old.get("kind") != kind:
        raise ConfigError(f"run folder {path} holds a {old.get('kind')!r} run, not a {kind!r} run; "
                          "choose another --out folder")
    return old


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_same_config(path: Path, old: dict, new: dict) -> None:
    diffs = [k for k in sorted(set(old) | set(new))
             if k not in RESUMABLE_CHANGES and jsonable(old.get(k)) != jsonable(new.get(k))]
    if diffs:
        detail = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diffs)
        raise ConfigError(
            f"cannot resume {path}: the config differs from the one it was started with ({detail}); "
            "resume with the same settings or start a new run folder")


def _check_same_data(path: Path, old: dict, new: dict) -> None:
    """Refuse to resume on another data root, dataset or annotation files (naming what differs)."""
    diffs = []
    for key in ("data_root", "dataset"):
        if key in old and key in new and jsonable(old[key]) != jsonable(new[key]):
            diffs.append(f"{key}: {old[key]!r} -> {new[key]!r}")
    was, now = old.get("annotations"), new.get("annotations")
    if isinstance(was, dict) and isinstance(now, dict) and was.get("sha256") != now.get("sha256"):
        before, after = was.get("files") or {}, now.get("files") or {}
        changed = [f for f in sorted(set(before) | set(after)) if before.get(f) != after.get(f)]
        shown = ", ".join(
            f"{f} ({'absent' if before.get(f) is None else str(before[f])[:12]} -> "
            f"{'absent' if after.get(f) is None else str(after[f])[:12]})" for f in changed[:MAX_LISTED])
        more = f" and {len(changed) - MAX_LISTED} more" if len(changed) > MAX_LISTED else ""
        diffs.append(f"annotation files changed: {shown or 'the file list'}{more}")
    elif "annotations" not in old and now is not None:
        logger.warning("%s was started without an annotation fingerprint: resuming without checking "
                       "that the annotation files are the same", path)
    if diffs:
        raise ConfigError(
            f"cannot resume {path}: it was started on other data ({'; '.join(diffs)}); resume with the "
            "data root and annotation files it was started with, or start a new run folder")


def _check_same_inputs(path: Path, old: dict, must_match: dict) -> None:
    diffs = [f"{key}.{field}: {(old.get(key) or {}).get(field)!r} -> {value!r}"
             for key, fields in must_match.items() for field, value in fields.items()
             if (old.get(key) or {}).get(field) != value]
    if diffs:
        raise ConfigError(
            f"cannot resume {path}: it was started on other inputs ({', '.join(diffs)}); resume with the "
            "same inputs (for a Combiner: the same --clip-run) or start a new run folder")


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)  # paths, devices, dtypes, anything else: its text


def jsonable(value: Any) -> Any:
    """`value` as plain JSON data (dicts, lists, str, numbers, bool, None).

    Dataclasses become dicts, numpy / torch scalars numbers, tuples and sets lists, and anything
    else (paths, devices, ...) its `str`; mapping keys become strings.

    Example:
        >>> jsonable({"path": Path("a/b"), "lr": np.float32(0.5), "ks": (1, 5)})
        {'path': 'a/b', 'lr': 0.5, 'ks': [1, 5]}
    """
    return json.loads(json.dumps(value, default=_json_default))


def read_run_config(run_dir) -> dict:
    """Read a run folder's config.json (kind, config, environment, ...)."""
    path = Path(run_dir) / CONFIG_FILE
    if Path(run_dir).is_file() and (Path(run_dir).parent / CONFIG_FILE).is_file():
        raise ConfigError(f"{run_dir} is a file of a run; a run is named by its folder: {Path(run_dir).parent}")
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder: {CONFIG_FILE} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON ({err})") from err


# ----------------------------------------------------------------------------- history

def write_history(path, rows: list) -> None:
    """Write per-epoch rows (dicts) as CSV, columns in first-seen order, atomically."""
    columns: list = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)

    def write(f):
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})

    atomic_write(path, write, binary=False)


def _fmt(value):
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return value


def read_history(run_dir):
    """A run's history.csv as a pandas DataFrame (one row per epoch)."""
    import pandas as pd  # here: 0.4 s (measured) that the stage and evaluate commands never need

    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: has the run finished an epoch?")
    return pd.read_csv(path)


# ----------------------------------------------------------------------------- RNG state

def rng_state(generator: torch.Generator) -> dict:
    """Everything random in a CPU run: the run's generator and torch's global CPU generator."""
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(generator: torch.Generator, state: dict) -> None:
    """Restore what `rng_state` saved."""
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- one best per CIRR mean

def best_file(mean: str) -> str:
    """The file name of a CIRR run's best checkpoint by `mean` ("arithmetic", "harmonic", "geometric")."""
    return f"best_{mean}.pt"


def link_file(source, path) -> Path:
    """Make `path` the same file as `source`, atomically: a hard link where the file system allows one
    (no second copy of a large checkpoint), else a copy. Replacing `source` later leaves `path` as it was.
    """
    source, path = Path(source), Path(path)
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.link")
    try:
        if tmp.exists():
            tmp.unlink()
        os.link(source, tmp)
        os.replace(tmp, path)
    except OSError:
        if tmp.exists():
            tmp.unlink()
        def copy(f):
            with open(source, "rb") as src:
                shutil.copyfileobj(src, f)

        atomic_write(path, copy)
    return path
