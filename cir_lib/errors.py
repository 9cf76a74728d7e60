"""The kit's exceptions. Each message names the file / entry at fault and says what to do."""


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
