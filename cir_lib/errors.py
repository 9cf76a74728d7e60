"""The kit's exceptions. Each message names the file / entry at fault and says what to do."""

from __future__ import annotations


class CirError(Exception):
    """Base class of the kit's user-facing errors (the CLI prints them without a traceback)."""


class AnnotationError(CirError):
    """A missing or malformed annotation file or entry."""


class ImageError(CirError):
    """A missing or unreadable image."""


class ConfigError(CirError):
    """An unknown name, an inconsistent setting, or a checkpoint that does not match."""


class InputError(ConfigError, ValueError):
    """Tensors or indices handed to a computation with the wrong shape, type or range
    (also a ValueError, so plain Python callers can catch it as one)."""


class TrainingError(CirError):
    """Training cannot go on (e.g. a NaN loss); the message names the epoch and step."""


class SubmissionError(CirError):
    """A CIRR test-server submission file that the server would reject."""


class PipelineError(CirError):
    """A notebook of the series failed, or a profile's inputs are missing."""


class UnsafeFileError(ConfigError):
    """A file the kit refuses to load because loading it could run code it carries (a pickle naming
    Python objects other than tensors and plain containers, or a TorchScript archive not allowed)."""


class StorageError(CirError):
    """The file system refused a read or write (disk full, read-only, permission denied, name too long,
    a symlink loop, ...): the message names the path and the operating system's reason
    (`cir_lib.storage.storage_error`)."""

    def __init__(self, message: str, path=None, errno: int | None = None):
        super().__init__(message)
        self.path = path
        self.errno = errno


class LockedError(CirError):
    """A folder another process is writing (a run folder, a results folder): the message names the
    folder and the holder's process id (`cir_lib.locks`)."""


# The interface the user is in ("python" or "cli"), so that advice names the option they can type
# (`allow_torchscript=True` in Python, `--allow-torchscript` on the command line). The CLI sets it.
_INTERFACE = {"name": "python"}


def set_interface(name: str) -> None:
    """Say which interface messages address: "python" (the default) or "cli" (`cir-lib` sets it)."""
    if name not in ("python", "cli"):
        raise ValueError(f"interface must be 'python' or 'cli', got {name!r}")
    _INTERFACE["name"] = name


def option_name(python: str, cli: str) -> str:
    """How the user spells an option in the interface they are in.

    Example:
        >>> option_name("allow_torchscript=True", "--allow-torchscript")
        'allow_torchscript=True'
    """
    return cli if _INTERFACE["name"] == "cli" else python
