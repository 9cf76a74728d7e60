"""The project a user works in: where the notebooks, `data/` and `results/` are, and the profile
chosen for it.

**The project root** is found from where the code runs, never from where the library is installed:

1. `$CIR_LIB_PROJECT`, when set (a folder holding the kit's `notebooks/` and `pyproject.toml`);
2. otherwise the nearest folder, from the current working directory upward, that holds the kit's
   `notebooks/` and a `pyproject.toml` naming `cir_lib`. A notebook's kernel runs in `notebooks/`
   (JupyterLab and `cir-lib reproduce` alike), so its project is the checkout it was opened from.

**The profile of the notebooks** (`profile = None` in their parameters cell) is chosen once, outside
the tracked notebooks: `$CIR_LIB_PROFILE` (`make lab PROFILE=smoke` sets it), else the first word
of the untracked file `local_profile.txt` at the project root, else "mini".

**Records** (config.json, .meta.json) hold paths relative to the project root when they are under
it (`portable`), so a checkout at another path writes the same bytes; `resolve_recorded` reads them
back.

Example:
    >>> project_root()
    PosixPath('/home/me/cir-lib')
    >>> portable({"data_root": "/home/me/cir-lib/data/mini"})
    {'data_root': 'data/mini'}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from cir_lib.errors import ConfigError, PipelineError

PROJECT_ENV_VAR = "CIR_LIB_PROJECT"
PROFILE_ENV_VAR = "CIR_LIB_PROFILE"
PROFILE_FILE = "local_profile.txt"  # at the project root, ignored by git: a student's own choice
DEFAULT_PROFILE = "mini"


def is_project(folder: Path) -> bool:
    """True when `folder` holds the kit's notebooks/ and a pyproject.toml naming cir_lib."""
    pyproject = folder / "pyproject.toml"
    if not ((folder / "notebooks").is_dir() and pyproject.is_file()):
        return False
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return False
    return 'name = "cir_lib"' in text or 'name = "cir-lib"' in text


def find_project_root(start: Optional[str | os.PathLike] = None) -> Optional[Path]:
    """The project root (see the module docstring), or None when there is none.

    Args:
        start: where to start looking (default: the current working directory).

    Raises:
        ConfigError: `$CIR_LIB_PROJECT` names a folder that is not a project.
    """
    env = os.environ.get(PROJECT_ENV_VAR, "").strip()
    if env:
        folder = Path(env).expanduser().resolve()
        if not is_project(folder):
            raise ConfigError(f"{PROJECT_ENV_VAR}={env} is not a checkout of the kit (no notebooks/ and "
                              "pyproject.toml there); point it at the project folder, or unset it")
        return folder
    try:
        here = Path(start if start is not None else os.getcwd()).expanduser().resolve()
    except OSError:  # the working directory was deleted
        return None
    return _nearest_project(here)


_FOUND: dict = {}  # {folder: its project root}: log lines ask at every message


def _nearest_project(here: Path) -> Optional[Path]:
    if here in _FOUND and is_project(_FOUND[here]):
        return _FOUND[here]
    for folder in (here, *here.parents):
        if is_project(folder):
            _FOUND[here] = folder
            return folder
    return None


def project_root(start: Optional[str | os.PathLike] = None) -> Path:
    """The project root; PipelineError saying what to do when there is none.

    Example:
        >>> project_root() / "results"
    """
    root = find_project_root(start)
    if root is None:
        where = Path(start) if start is not None else Path.cwd()
        raise PipelineError(
            f"no project found from {where}: run from a checkout of the kit (a folder holding notebooks/ "
            f"and pyproject.toml, or one below it), or set {PROJECT_ENV_VAR}=DIR, or give the folders "
            "explicitly (--data-root, --results)")
    return root


def chosen_profile(root: Optional[Path] = None) -> tuple[str, str]:
    """The profile of a notebook whose `profile` is None, and where it came from.

    Returns:
        (profile, source): source is "$CIR_LIB_PROFILE", "local_profile.txt" or "default".
    """
    env = os.environ.get(PROFILE_ENV_VAR, "").strip()
    if env:
        return env, f"${PROFILE_ENV_VAR}"
    root = root if root is not None else find_project_root()
    path = root / PROFILE_FILE if root is not None else None
    if path is not None and path.is_file():
        words = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
        words = [w for w in words if w]
        if words:
            return words[0], PROFILE_FILE
    return DEFAULT_PROFILE, "default"


def relative_to_project(path: str | os.PathLike, root: Optional[Path] = None) -> str:
    """`path` relative to the project root when under it (POSIX separators), else as given."""
    root = root if root is not None else find_project_root()
    if root is None:
        return str(path)
    try:
        return Path(path).expanduser().resolve().relative_to(root).as_posix()
    except (ValueError, OSError):
        return str(path)


def portable(record: Any, root: Optional[Path] = None) -> Any:
    """A JSON record with every absolute path under the project root made relative to it.

    Strings are rewritten only when they are absolute paths under the root; other values (names,
    numbers, "{data_root}/cir-mini.pt", paths elsewhere) are kept as given.
    """
    root = root if root is not None else find_project_root()
    if root is None:
        return record
    if isinstance(record, dict):
        return {k: portable(v, root) for k, v in record.items()}
    if isinstance(record, (list, tuple)):
        return [portable(v, root) for v in record]
    if isinstance(record, os.PathLike):
        record = os.fspath(record)
    if isinstance(record, str) and os.path.isabs(record):
        return relative_to_project(record, root)
    return record


def resolve_recorded(value: str, root: Optional[Path] = None) -> str:
    """A path read from a record: a relative one that exists under the project root becomes that
    absolute path; anything else (absolute paths, names such as "openai") is returned as it is."""
    if not value or os.path.isabs(value) or "{" in value:
        return value
    root = root if root is not None else find_project_root()
    if root is not None and (root / value).exists():
        return str(root / value)
    return value
