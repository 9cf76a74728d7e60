"""Loading files without running code they carry.

Every file the kit reads with torch goes through `load_file` (`torch.load(weights_only=True)`): tensors,
dicts, lists, tuples and numbers load; a pickle that names any other Python object (which could run code
while loading) is refused with `UnsafeFileError`.

TorchScript archives (OpenAI's released `RN50.pt`, `RN50x4.pt`) carry Python-like code beside their
weights. `read_torchscript_weights` reads their tensors from the archive's `data.pkl` with an unpickler
that knows only tensors and plain containers, so the code is never loaded nor run. An archive that this
reader cannot read (e.g. quantized tensors) loads only with `torch.jit.load`, which runs the archive's
code; the kit does that only when asked: `allow_torchscript=True` on the loading functions, or the
environment variable `CIR_LIB_ALLOW_TORCHSCRIPT=1`.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

from cir_lib.errors import ConfigError, UnsafeFileError, option_name
from cir_lib.storage import link_problem

ALLOW_TORCHSCRIPT_ENV = "CIR_LIB_ALLOW_TORCHSCRIPT"  # "1" / "true" / "yes" allows torch.jit.load
_TRUE = ("1", "true", "yes", "on")


def torchscript_allowed(allow: Optional[bool] = None) -> bool:
    """Whether `torch.jit.load` may run a TorchScript archive's code.

    Args:
        allow: the caller's explicit choice; None reads the environment variable
            `CIR_LIB_ALLOW_TORCHSCRIPT` ("1", "true", "yes" allow).

    Returns:
        True only when explicitly allowed.
    """
    if allow is not None:
        return bool(allow)
    return os.environ.get(ALLOW_TORCHSCRIPT_ENV, "").strip().lower() in _TRUE


def unsafe_file_error(path, what: str, reason: str) -> UnsafeFileError:
    """The error for a file that the kit will not load because loading it could run code."""
    return UnsafeFileError(
        f"{what} {path} is not a file the kit can load safely: {reason}. Loading it could run code it "
        f"carries, so it was not loaded. Use a checkpoint written by the kit (or a plain state dict of "
        f"tensors saved with torch.save); if you did not write this file, delete it."
    )


def load_file(path, what: str = "checkpoint", map_location="cpu") -> Any:
    """`torch.load(path, weights_only=True)`, with the kit's errors.

    Args:
        path: the file.
        what: what the file should be, for messages ("checkpoint", "Combiner checkpoint", ...).
        map_location: where tensors are loaded.

    Returns:
        The loaded object (dicts, lists, tuples, tensors, numbers, strings).

    Raises:
        UnsafeFileError: the file is a pickle naming objects outside torch's weights-only allowlist, or
            a TorchScript archive (read those with `read_torchscript_weights`).
        ConfigError: missing, truncated or not a torch file.

    Example:
        >>> payload = load_file("runs/x/last.pt", "run checkpoint")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        link = link_problem(path)
        if link:
            raise ConfigError(f"{what} {path} is unreadable: {link}; replace it with the file or a valid link")
        raise ConfigError(f"{what} {path} not found" + (" (it is a folder)" if path.is_dir() else ""))
    if is_torchscript(path):
        raise unsafe_file_error(path, what, "it is a TorchScript archive, which carries code")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"GLOBAL ([\w.]+)", str(err))
        if refused is None:  # not a pickle torch understands: garbage, not a threat
            raise unreadable_file_error(path, what, _first_line(err)) from None
        # weights-only refusal: the pickle names other Python objects than tensors and containers
        raise unsafe_file_error(path, what, f"it holds Python objects other than tensors and plain "
                                f"containers (it names {refused.group(1)})") from None
    except Exception as err:  # truncated / not a torch file
        raise unreadable_file_error(path, what, f"{type(err).__name__}: {_first_line(err)}") from None


def check_file(path, what: str = "checkpoint") -> None:
    """Refuse, before any work, a file `load_file` would refuse (unsafe, unreadable), without reading
    its tensors: the archive is memory-mapped, so a multi-gigabyte checkpoint costs milliseconds.

    Raises:
        UnsafeFileError, ConfigError: as `load_file`.
    """
    path = Path(path)
    if not path.is_file() or is_torchscript(path):
        load_file(path, what)  # raises, naming the problem
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        load_file(path, what)  # the same refusal, with load_file's message
    except Exception:  # noqa: BLE001 - not a zip archive (the legacy format cannot be mapped): read it
        load_file(path, what)


def unreadable_file_error(path, what: str, detail: str) -> ConfigError:
    """The error for a file that is not a torch file at all (empty, text, random bytes, truncated)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        head = None
    if head == b"":
        reason = "the file is empty"
    elif head and _is_text(head):
        reason = "it is a text file"
    else:
        reason = f"torch cannot read it: {detail}"
    return ConfigError(f"{what} {path} is unreadable, not a checkpoint the kit can read ({reason}); it may be "
                       "truncated, or not a file written by torch.save")


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\n\r\t" for c in text)


# How the kit marks the files it writes ("format" key): what each is, and where it goes.
KIT_FILE_KINDS = {
    "cir_lib.backbone/": ("a backbone (CLIP) checkpoint written by the kit",
                          "pass it as --clip-checkpoint (or --pretrained / pretrained=FILE)"),
    "cir_lib.combiner/": ("a Combiner checkpoint written by the kit", "pass it as --combiner-checkpoint"),
    "cir_lib.run/": ("a run's last.pt written by the kit (training state, for --resume)",
                     "pass its run folder as --run, or the run's best.pt"),
}


def kit_file_kind(payload: Any) -> Optional[tuple]:
    """(what the file is, where it goes) for a file the kit wrote (it carries a "format" key), else None."""
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if not isinstance(fmt, str):
        return None
    return next((kind for prefix, kind in KIT_FILE_KINDS.items() if fmt.startswith(prefix)), None)


def _first_line(err: Exception) -> str:
    """The gist of an exception message, without torch's advice to load the file unsafely."""
    text = str(err)
    gist = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    if gist:
        return gist.group(1).split(". Please")[0].strip()[:200]
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and "weights_only" not in ln.lower() and "weights only" not in ln.lower()]
    return (lines[0] if lines else type(err).__name__)[:200]


# ----------------------------------------------------------------------------- TorchScript archives


def is_torchscript(path) -> bool:
    """True when `path` is a zip archive with TorchScript code (`code/` or `constants.pkl`)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


class _ScriptedModule:
    """Stands for a TorchScript class while reading: it only records the attributes it is given."""

    def __setstate__(self, state):
        self.__dict__["_attributes"] = state if isinstance(state, dict) else {}


_STORAGE_DTYPES = {
    f"{prefix}Storage": dtype for prefix, dtype in [
        ("Float", torch.float32), ("Double", torch.float64), ("Half", torch.float16),
        ("BFloat16", torch.bfloat16), ("Long", torch.int64), ("Int", torch.int32), ("Short", torch.int16),
        ("Char", torch.int8), ("Byte", torch.uint8), ("Bool", torch.bool),
    ]
}


# TorchScript's typed-list markers (torch/jit/_pickle.py): plain data, rebuilt without torch's code
_JIT_DATA_BUILDERS = {
    **{f"build_{kind}list": list for kind in ("int", "tensor", "double", "bool")},
    "restore_type_tag": lambda value, type_str: value,
}


class _WeightsUnpickler(pickle.Unpickler):
    """Knows tensors, OrderedDict and stand-ins for TorchScript classes; refuses every other global."""

    def __init__(self, file, zf: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(file)
        self._zf, self._prefix, self._path = zf, prefix, path

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptedModule
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if module == "torch.jit._pickle" and name in _JIT_DATA_BUILDERS:  # each returns its argument
            return _JIT_DATA_BUILDERS[name]
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"the archive's data names {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"unexpected storage type {dtype!r}")
        data = self._zf.read(f"{self._prefix}/data/{key}")
        untyped = torch.UntypedStorage.from_buffer(data, dtype=torch.uint8) if data else torch.UntypedStorage(0)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _collect(obj, prefix: str, out: dict) -> None:
    for name, value in obj.__dict__.get("_attributes", {}).items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptedModule):
            _collect(value, f"{prefix}{name}.", out)


def read_torchscript_weights(path) -> dict:
    """The tensors of a TorchScript archive (its parameters and buffers), read without loading its code.

    Args:
        path: a file written by `torch.jit.save` (e.g. OpenAI's RN50.pt).

    Returns:
        {dotted name: tensor}, as `torch.jit.load(path).state_dict()` would give (plus non-persistent
        buffers, which TorchScript stores too).

    Raises:
        UnsafeFileError: the archive's data names objects other than tensors and TorchScript modules
            (load it with torch.jit.load only if you trust it: see `torchscript_allowed`).

    Example:
        >>> sd = read_torchscript_weights("~/.cache/clip/RN50.pt")  # doctest: +SKIP
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            data_pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if not data_pkl:
                raise pickle.UnpicklingError("no data.pkl in the archive")
            prefix = data_pkl[0].split("/")[0]
            byteorder = f"{prefix}/byteorder"
            if byteorder in zf.namelist() and zf.read(byteorder).decode().strip() != "little":
                raise pickle.UnpicklingError("big-endian archive")
            with zf.open(data_pkl[0]) as f, warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation
                root = _WeightsUnpickler(f, zf, prefix, path).load()
    except (pickle.UnpicklingError, AttributeError, TypeError, ValueError, KeyError, EOFError) as err:
        raise UnsafeFileError(
            f"TorchScript archive {path} could not be read without running the code it carries ({err}). "
            f"TorchScript files carry code; load it with torch.jit.load only if you trust its source: pass "
            f"{option_name('allow_torchscript=True', '--allow-torchscript')}, or set {ALLOW_TORCHSCRIPT_ENV}=1."
        ) from None
    if not isinstance(root, _ScriptedModule):
        raise UnsafeFileError(f"TorchScript archive {path} holds no module (top level: {type(root).__name__})")
    out: dict = {}
    _collect(root, "", out)
    return out


def jit_load(path) -> torch.jit.ScriptModule:
    """`torch.jit.load` on the CPU (runs the archive's code: call only when `torchscript_allowed()`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")
