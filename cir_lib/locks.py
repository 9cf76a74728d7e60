"""One writer per folder: an advisory lock held while a process writes a run folder or a results folder.

    with folder_lock("runs/fiq-s1", "run folder"):   # a second process is refused at once
        ...

The lock is `flock` on `FOLDER/.cir-lib.lock`, a file holding the holder's process id. The operating
system releases it when the process ends, however it ends (a crash or a kill included), so a stale
lock never blocks the next run; the file is removed when the lock is released normally. A second
process asking for the same folder gets a `LockedError` at once, naming the folder and the holder's
process id. Within one process the lock is re-entrant (a notebook series run in-process, a run
folder inside a locked results folder).

`locked_folder(arg, what)` decorates a function that writes the folder named by its argument `arg`
(`finetune(..., out_dir)`), taking the lock for the call on the writing process only (rank 0 under
torchrun).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from pathlib import Path
from typing import Callable, Iterator

from cir_lib.errors import LockedError
from cir_lib.storage import writing

LOCK_FILE = ".cir-lib.lock"

_held: dict = {}  # resolved folder -> [file descriptor, depth] held by this process


def _holder(lock_path: Path) -> str:
    try:
        pid = lock_path.read_text(encoding="utf-8").strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


@contextlib.contextmanager
def folder_lock(folder, what: str = "folder") -> Iterator[Path]:
    """Hold the advisory lock of `folder` (created if absent) for the body.

    Args:
        folder: the folder to write.
        what: how messages name it ("run folder", "results folder").

    Yields:
        The folder's path.

    Raises:
        LockedError: another process holds it (naming the folder and that process's id).
        StorageError: the lock file cannot be created (read-only, permission, ...).
    """
    import fcntl  # here: POSIX only; the module imports everywhere

    folder = Path(folder)
    key = str(folder.resolve())
    if key in _held:  # re-entrant within this process
        _held[key][1] += 1
        try:
            yield folder
        finally:
            _held[key][1] -= 1
        return
    lock_path = folder / LOCK_FILE
    created = not folder.exists()
    with writing(folder, what):
        folder.mkdir(parents=True, exist_ok=True)
    while True:
        with writing(folder, what):
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(
                f"{what} {folder} is being written by {_holder(lock_path)} (lock {lock_path}); wait for it to "
                f"finish or stop it, or choose another folder") from None
        except OSError:
            os.close(fd)
            raise
        try:  # the holder before us may have removed the file we opened: lock the one on disk
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:  # a full disk: the lock holds all the same; only the id is not shown to others
        pass
    _held[key] = [fd, 1]
    try:
        yield folder
    finally:
        del _held[key]
        try:
            os.unlink(lock_path)  # before releasing: whoever waits then opens a fresh file
        except OSError:
            pass
        os.close(fd)
        if created:  # a call refused before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()


def is_main_process() -> bool:
    """Whether this process writes (rank 0 under torchrun; always outside it)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def locked_folder(arg: str, what: str = "run folder") -> Callable:
    """Decorate a function that writes the folder given as its argument `arg`: the call holds
    `folder_lock` on it (on the writing process only).

    Example:
        >>> @locked_folder("out_dir")
        ... def finetune(data_root, config, out_dir, resume=False): ...
    """
    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            folder = signature.bind(*args, **kwargs).arguments.get(arg)
            if folder is None or not is_main_process():
                return func(*args, **kwargs)
            _check_lockable(Path(folder))
            with folder_lock(folder, what):
                return func(*args, **kwargs)

        return wrapper

    return decorate


def _check_lockable(folder: Path) -> None:
    """A path that is a file is refused by the function's own checks, with its own message."""
    from cir_lib.runs import check_output_folder  # here: runs loads torch; mini (so datasets, recipes) imports locks

    check_output_folder(folder)
