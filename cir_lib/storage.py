"""What the file system refuses, said in one line: the path, the operating system's reason, what to do.

Every writer of the kit (checkpoints, caches, tables, figures, executed notebooks, submissions,
generated data) goes through `writing(path, what)` or `storage_error`, so a full disk, a read-only
file system, a permission problem or a name too long ends in one `StorageError` naming the path,
never in a traceback from deep inside torch, matplotlib or PIL (torch, for one, wraps a full disk
as `RuntimeError: [enforce fail at inline_container.cc:...]`; the `OSError` is found in the chain).

    os_error_in(exc)            -> the OSError behind an exception (itself, its cause or context), or None
    describe_os_error(err)      -> "No space left on device: PATH; the disk is full: free space or ..."
    storage_error(err, path, what) -> StorageError
    writing(path, what)         a context manager translating what the body raises
    read_only(path)             whether the nearest existing folder of `path` is on a read-only mount
    check_name(text, option)    refuse a name that becomes part of a file name but would leave its folder
    link_problem(path)          why a symbolic link leads to no file (a loop, a missing target), or None
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
from pathlib import Path
from typing import Iterator, Optional

from cir_lib.errors import ConfigError, StorageError

# What to do, by errno (the reason itself is the operating system's text).
ADVICE = {
    _errno.ENOSPC: "the disk is full: free space or choose a folder on another disk",
    _errno.EDQUOT: "the disk quota is exceeded: free space or choose a folder on another disk",
    _errno.EROFS: "the file system is read-only: choose a folder on a writable disk",
    _errno.EACCES: "choose a folder you can write (or fix its permissions)",
    _errno.EPERM: "choose a folder you can write (or fix its permissions)",
    _errno.ENAMETOOLONG: "the name is too long for the file system: choose a shorter name or folder",
    _errno.ELOOP: "a symbolic link points to itself (a loop): replace it with the file or a valid link",
    _errno.EISDIR: "give a file path, not a folder",
    _errno.ENOTDIR: "a part of the path is a file, not a folder: check the path",
    _errno.ENOENT: "check the path",
    _errno.EIO: "the disk reported an input/output error: check the disk",
}


def os_error_in(exc: BaseException | None) -> Optional[OSError]:
    """The OSError behind `exc`: itself, or the first in its chain of causes and contexts."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _reason_and_advice(err: OSError, path=None) -> tuple:
    """(the operating system's reason, what to do, errno) for `err`; EACCES on a read-only mount is
    said as the read-only file system it is (some file systems answer EACCES there)."""
    reason = err.strerror or str(err) or type(err).__name__
    code = err.errno
    if code in (_errno.EACCES, _errno.EPERM) and read_only(err.filename or path):
        code, reason = _errno.EROFS, os.strerror(_errno.EROFS)
    return reason, ADVICE.get(code, "check the path and try again (--debug shows the traceback)"), code


def describe_os_error(err: OSError, path=None) -> str:
    """One line for an OSError: the operating system's reason, the path(s), what to do.

    Example:
        >>> describe_os_error(OSError(28, "No space left on device"), "runs/x/last.pt")
        'No space left on device: runs/x/last.pt; the disk is full: free space or choose a folder on another disk'
    """
    named = [p for p in (err.filename, err.filename2) if p is not None]
    paths = " -> ".join(str(p) for p in named) or (str(path) if path is not None else "a file")
    reason, advice, _ = _reason_and_advice(err, path)
    return f"{reason}: {paths}; {advice}"


def storage_error(err: OSError, path, what: str = "") -> StorageError:
    """A StorageError for `err` met while writing `what` at `path`.

    Example:
        >>> raise storage_error(err, "runs/x/last.pt", "checkpoint")
        StorageError: cannot write checkpoint runs/x/last.pt: No space left on device; the disk is full: ...
    """
    reason, advice, code = _reason_and_advice(err, path)
    where = f" ({err.filename})" if err.filename and str(err.filename) != str(path) else ""
    label = f"{what} " if what else ""
    return StorageError(f"cannot write {label}{path}: {reason}{where}; {advice}", path=path, errno=code)


@contextlib.contextmanager
def writing(path, what: str = "") -> Iterator[None]:
    """Translate what the body raises into a StorageError naming `path` when an OSError is behind it
    (a plain OSError, or one wrapped by torch / PIL / matplotlib); anything else passes unchanged.

    Example:
        >>> with writing("results/mini/figures/x.png", "figure"):
        ...     fig.savefig(...)
    """
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:  # noqa: BLE001 - only exceptions with an OSError behind them are translated
        err = os_error_in(exc)
        if err is None:
            raise
        raise storage_error(err, path, what) from exc


def read_only(path) -> bool:
    """Whether the nearest existing folder of `path` is on a read-only mount (False when unknown)."""
    if path is None:
        return False
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        return bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


NAME_MAX_BYTES = 200  # a name part's limit: most file systems allow 255 bytes per name, prefix included


def check_name(text: str, option: str) -> str:
    """Refuse a name that becomes part of a file name (a submission tag, ...) but is not one: a path
    separator or `..` (it would write outside its folder), a leading dot, control characters, or
    more than NAME_MAX_BYTES bytes.

    Returns:
        The name.

    Raises:
        ConfigError: naming the option, the value and what is allowed.

    Example:
        >>> check_name("RN50x4-openai", "--tag")
        'RN50x4-openai'
    """
    bad = None
    if not isinstance(text, str) or not text:
        bad = "it is empty"
    elif "/" in text or "\\" in text or os.sep in text or ".." in text:
        bad = "it holds a path separator or '..', so the file would be written outside its folder"
    elif text.startswith("."):
        bad = "it starts with a dot (a hidden file)"
    elif any(ord(c) < 32 or c == "\x7f" for c in text):
        bad = "it holds control characters"
    elif len(text.encode("utf-8")) > NAME_MAX_BYTES:
        bad = f"it is longer than {NAME_MAX_BYTES} bytes, too long for a file name"
    if bad:
        raise ConfigError(f"{option} {text!r} cannot be part of a file name: {bad}; use letters, digits, "
                          "'-', '_' and '.' (e.g. RN50x4-combiner)")
    return text


def link_problem(path) -> Optional[str]:
    """Why `path`, a symbolic link, leads to no file: it loops, or its target is missing (None when
    `path` is no such link). Said instead of "not found": the name is there, the file behind it is not."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == _errno.ELOOP:
            return "a symbolic link that loops (it points, through links, back to itself)"
        return f"a symbolic link to {os.readlink(path)}, which is {(err.strerror or 'unreadable').lower()}"
    return None
