"""CLIP backbones through open_clip: any open_clip model name, the kit's tiny `cir-mini`, and
checkpoints in three formats (the kit's own, a plain open_clip/OpenAI state dict, and the original
CLIP4Cir fine-tuned format `{"CLIP": state_dict}`).

`cir-mini` is registered with open_clip from `cir_lib/model_configs/cir-mini.json`: the same CLIP class
as RN50 (a small ModifiedResNet image tower, a small text transformer), sized for a 64 px input on CPU.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import open_clip
import torch

from cir_lib import serialization
from cir_lib.constants import MINI_NAME
from cir_lib.errors import ConfigError, UnsafeFileError
from cir_lib.runs import atomic_torch_save
from cir_lib.storage import link_problem

logger = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
CHECKPOINT_FORMAT = "cir_lib.backbone/1"  # marks files written by save_backbone_checkpoint
NO_WEIGHTS = ("none", "")  # values of `pretrained` (any case) meaning random initialization
# Keys that OpenAI's TorchScript CLIP state dicts carry but the model does not.
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


_OPEN_CLIP_DIR = str(Path(open_clip.__file__).resolve().parent)


class _OpenClipToDebug(logging.Filter):
    """Turns open_clip's root-logger chatter (INFO lines, the expected 'initialized randomly' warning,
    download errors that the kit re-raises as ConfigError) into this module's DEBUG messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(Path(record.pathname).resolve()).startswith(_OPEN_CLIP_DIR):
            logger.debug("open_clip: %s", record.getMessage())
            return False
        return True


@contextlib.contextmanager
def _quiet_open_clip():
    flt = _OpenClipToDebug()
    logging.root.addFilter(flt)
    try:
        yield
    finally:
        logging.root.removeFilter(flt)


def register_model_configs() -> None:
    """Add the kit's model configs (`cir-mini`) to open_clip's registry (idempotent).

    Example:
        >>> register_model_configs(); "cir-mini" in open_clip.list_models()
        True
    """
    if MINI_NAME not in open_clip.list_models():
        open_clip.add_model_config(MODEL_CONFIG_DIR)


register_model_configs()


@dataclass
class Backbone:
    """A CLIP model with its tokenizer and the facts the rest of the kit needs.

    `weights_key` is a hash of the architecture config and of every parameter and buffer; it is cached
    and recomputed only when a tensor was modified in place (optimizer steps, `load_state_dict`), so it
    is cheap to read before every feature extraction.
    """

    name: str  # open_clip model name ("RN50", "cir-mini", ...)
    pretrained: str  # "none", an open_clip tag, or the checkpoint path it was loaded from
    model: torch.nn.Module = field(repr=False)  # an open_clip CLIP
    tokenizer: Any = field(repr=False)  # open_clip tokenizer at the model's context length, truncating
    image_size: int  # input side in pixels
    embed_dim: int  # feature dimension d
    open_clip_config: dict = field(repr=False, default_factory=dict)  # kwargs that built the model
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where the model lives
    _key_cache: tuple = field(default=(None, None), repr=False, compare=False)
    _image_key_cache: tuple = field(default=(None, None), repr=False, compare=False)

    @property
    def context_length(self) -> int:
        return int(self.open_clip_config.get("text_cfg", {}).get("context_length", 77))

    @property
    def weights_key(self) -> str:
        """Hex digest identifying the config and the current weights (for feature caches)."""
        return self._cached_hash("_key_cache", self.model, self.open_clip_config)

    @property
    def image_weights_key(self) -> str:
        """Hex digest of the image tower alone (its config and weights): image features depend on
        nothing else, so a text-only fine-tune keeps the zero-shot image-feature cache valid."""
        config = {k: self.open_clip_config.get(k) for k in ("embed_dim", "vision_cfg", "quick_gelu")}
        return self._cached_hash("_image_key_cache", self.model.visual, config)

    def _cached_hash(self, slot: str, module: torch.nn.Module, config: dict) -> str:
        """`_hash_weights`, recomputed only when a tensor of `module` changed (storage, version,
        shape or dtype), so asking for a key between training steps costs no hashing."""
        fingerprint = tuple(
            (n, t.data_ptr(), t._version, tuple(t.shape), str(t.dtype)) for n, t in _named_tensors(module)
        )
        cached = getattr(self, slot)
        if cached[0] != fingerprint:
            cached = (fingerprint, _hash_weights(module, config))
            setattr(self, slot, cached)
        return cached[1]

    def tokenize(self, captions: Union[str, Sequence[str]]) -> torch.Tensor:
        """Token ids [N, context_length] (LongTensor); captions longer than the context are truncated."""
        if isinstance(captions, str):
            captions = [captions]
        return self.tokenizer(list(captions))


def _named_tensors(model: torch.nn.Module):
    yield from model.named_parameters()
    yield from model.named_buffers()


def _hash_weights(model: torch.nn.Module, config: dict) -> str:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy() if t.numel() else b"")
    return digest.hexdigest()[:32]


def _unknown_name_error(name: str) -> ConfigError:
    close = difflib.get_close_matches(name, open_clip.list_models(), n=5, cutoff=0.5)
    hint = f" Close names: {', '.join(close)}." if close else ""
    return ConfigError(
        f"unknown open_clip model name {name!r}.{hint} See every available name with "
        f"`python -c \"import open_clip; print(open_clip.list_models())\"` "
        f"(the paper's are RN50 and RN50x4; the kit's tiny CPU model is {MINI_NAME})."
    )


def _model_config(name: str) -> dict:
    register_model_configs()
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise _unknown_name_error(name)
    return cfg


@functools.lru_cache(maxsize=8)
def _tokenizer(name: str, context_length: int):
    """open_clip's tokenizer of a model, built once per (name, context length): building one reads
    and parses the BPE vocabulary (about half a second on a CPU), and a tokenizer holds no state
    but a memo of the words it has split, so every backbone of a model shares one."""
    if name in open_clip.list_models():
        with _quiet_open_clip():
            return open_clip.get_tokenizer(name, context_length=context_length)
    return open_clip.SimpleTokenizer(context_length=context_length)  # a name this open_clip does not know


def _make_backbone(name: str, pretrained: str, model: torch.nn.Module, cfg: dict, device) -> Backbone:
    context_length = int(cfg.get("text_cfg", {}).get("context_length", 77))
    tokenizer = _tokenizer(name, context_length)
    image_size = cfg.get("vision_cfg", {}).get("image_size", 224)
    if isinstance(image_size, (tuple, list)):
        image_size = image_size[0]
    place_model(model, device)
    model.eval()
    return Backbone(
        name=name,
        pretrained=str(pretrained),
        model=model,
        tokenizer=tokenizer,
        image_size=int(image_size),
        embed_dim=int(cfg["embed_dim"]),
        open_clip_config=cfg,
        device=torch.device(device),
    )


def place_model(model: torch.nn.Module, device) -> torch.nn.Module:
    """Move a CLIP model to `device`; on CUDA also to channels_last (faster convolutions).

    Done once, where a model is placed, never while encoding: an optimizer's state must keep the
    layout its parameters had when it was created (fused AdamW refuses mismatched strides).
    """
    device = torch.device(device)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def model_from_config(cfg: dict, device, precision: str) -> torch.nn.Module:
    """Build an open_clip model from a full config dict alone (as stored in the kit's checkpoints)."""
    cfg = copy.deepcopy(cfg)
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    if "hf_model_name" in cfg.get("text_cfg", {}):
        cfg["text_cfg"]["hf_model_pretrained"] = False  # the weights come from the file
    if custom_text:
        cls = open_clip.CoCa if "multimodal_cfg" in cfg else open_clip.CustomTextCLIP
    else:
        cls = open_clip.CLIP
    model = cls(**cfg, cast_dtype=open_clip.get_cast_dtype(precision))
    model.to(device)
    if precision in ("fp16", "bf16", "pure_fp16", "pure_bf16"):
        dtype = torch.bfloat16 if "bf16" in precision else torch.float16
        open_clip.model.convert_weights_to_lp(model, dtype=dtype)
    return model


def _read_checkpoint(path: Path, allow_torchscript: Optional[bool] = None) -> Any:
    """A checkpoint file's content, read without running code (see `cir_lib.serialization`).

    TorchScript archives (OpenAI's released CLIP files) give {name: tensor} read from the archive's data;
    only an archive that cannot be read that way is handed to torch.jit.load, and only when allowed.
    """
    if serialization.is_torchscript(path):
        try:
            return serialization.read_torchscript_weights(path)
        except UnsafeFileError:
            if not serialization.torchscript_allowed(allow_torchscript):
                raise
            logger.warning("loading TorchScript archive %s with torch.jit.load (allowed explicitly)", path)
            try:
                return serialization.jit_load(path)
            except Exception as err:
                raise ConfigError(f"cannot read TorchScript archive {path}: {err}") from err
    try:
        return serialization.load_file(path, "backbone checkpoint")
    except UnsafeFileError:
        raise
    except ConfigError as err:
        raise ConfigError(
            f"{err}. Pass a backbone checkpoint: the kit's (a run's best.pt, cir-mini.pt), an open_clip/OpenAI "
            f"state dict, or CLIP4Cir's {{'CLIP': ...}}."
        ) from None


def _strip_module(state_dict: dict) -> dict:
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def _describe_state_dict(sd: dict) -> dict:
    """Guess the architecture facts a CLIP state dict carries (for error messages)."""
    facts: dict = {}
    if "text_projection" in sd:
        facts["embed_dim"] = int(sd["text_projection"].shape[-1])
    if "token_embedding.weight" in sd:
        facts["text_width"] = int(sd["token_embedding.weight"].shape[1])
    if "positional_embedding" in sd:
        facts["context_length"] = int(sd["positional_embedding"].shape[0])
    blocks = {k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")}
    if blocks:
        facts["text_layers"] = len(blocks)
    if "visual.conv1.weight" in sd and "visual.attnpool.positional_embedding" in sd:  # ModifiedResNet
        facts["vision"] = "ModifiedResNet"
        facts["vision_width"] = int(sd["visual.conv1.weight"].shape[0]) * 2
        facts["vision_layers"] = [
            len({k.split(".")[2] for k in sd if k.startswith(f"visual.layer{i}.")}) for i in range(1, 5)
        ]
        spacial = int(round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5))
        facts["image_size"] = spacial * 32
    elif "visual.conv1.weight" in sd:  # ViT
        facts["vision"] = "ViT"
        facts["vision_width"] = int(sd["visual.conv1.weight"].shape[0])
        facts["patch_size"] = int(sd["visual.conv1.weight"].shape[-1])
    return facts


def _config_facts(cfg: dict) -> dict:
    vc, tc = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    facts = {
        "embed_dim": cfg.get("embed_dim"),
        "text_width": tc.get("width", 512),
        "context_length": tc.get("context_length", 77),
        "text_layers": tc.get("layers", 12),
    }
    if isinstance(vc.get("layers"), (list, tuple)):
        facts.update(vision="ModifiedResNet", vision_width=vc.get("width", 64),
                     vision_layers=list(vc["layers"]), image_size=vc.get("image_size", 224))
    elif "timm_model_name" not in vc:
        facts.update(vision="ViT", vision_width=vc.get("width", 768), patch_size=vc.get("patch_size", 16))
    return facts


def _matching_names(facts: dict) -> list:
    """open_clip model names whose config agrees with every fact guessed from a state dict."""
    if not facts:
        return []
    names = []
    for name in open_clip.list_models():
        cfg = open_clip.get_model_config(name) or {}
        cf = _config_facts(cfg)
        if all(cf.get(k) == v for k, v in facts.items()):
            names.append(name)
    return names


def _mismatch_error(path, name: str, sd: dict, detail: str) -> ConfigError:
    facts = _describe_state_dict(sd)
    names = [n for n in _matching_names(facts) if n != name]
    described = ", ".join(f"{k}={v}" for k, v in facts.items()) or "an unrecognized layout"
    if names:
        advice = f"load it as {' / '.join(names[:4])} (name={names[0]!r}, e.g. `--backbone {names[0]}`)"
    else:
        advice = "pass the open_clip model name that the checkpoint was trained with"
    return ConfigError(
        f"checkpoint {path} does not match backbone {name!r}: the file carries {described} ({detail}). "
        f"Either {advice}, or pass a checkpoint of {name}."
    )


def _clean_state_dict(sd: dict, reference: dict, non_persistent: set) -> dict:
    """Strip DataParallel prefixes, OpenAI's TorchScript-only keys and non-persistent buffers (which
    TorchScript archives store, e.g. attn_mask); match logit_scale's rank."""
    drop = set(_OPENAI_EXTRA_KEYS) | non_persistent
    sd = {k: v for k, v in _strip_module(sd).items() if k not in drop}
    shape = reference.get("logit_scale")
    if "logit_scale" in sd and shape is not None and sd["logit_scale"].ndim != len(shape):
        sd["logit_scale"] = sd["logit_scale"].reshape(shape)
    return sd


def _expected_shapes(cfg: dict) -> tuple:
    """Shapes of the state dict of the model `cfg` builds, and the names of its non-persistent
    buffers (built on the meta device: no memory, instant)."""
    with torch.device("meta"):
        model = model_from_config(cfg, "meta", "fp32")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return shapes, {k for k, _ in model.named_buffers()} - set(shapes)


def _check_state_dict(sd: dict, expected: dict, path, name: str) -> None:
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [k for k in expected if k in sd and tuple(sd[k].shape) != expected[k]]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches, e.g. {k}: file {tuple(sd[k].shape)} vs "
                         f"{name} {expected[k]}")
        if missing:
            parts.append(f"{len(missing)} missing keys, e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[0]}")
        raise _mismatch_error(path, name, sd, "; ".join(parts))


def _model_with_state_dict(cfg: dict, sd: dict, path, name: str, device, precision: str) -> torch.nn.Module:
    """Check `sd` against the model `cfg` describes (before allocating it), then build and load it."""
    expected, non_persistent = _expected_shapes(cfg)
    sd = _clean_state_dict(sd, expected, non_persistent)
    if "positional_embedding" in sd and "text.positional_embedding" in expected:
        sd = open_clip.model.convert_to_custom_text_state_dict(sd)  # old layout -> CustomTextCLIP
    _check_state_dict(sd, expected, path, name)
    model = model_from_config(cfg, device, precision)
    model.load_state_dict(sd, strict=True)
    return model


def _tag_error(name: str, tag: str, err: Exception) -> ConfigError:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE as hf_cache
    except Exception:  # pragma: no cover - huggingface_hub absent
        hf_cache = "~/.cache/huggingface/hub"
    return ConfigError(
        f"the {tag!r} weights of {name} could not be downloaded ({type(err).__name__}: {err}). "
        f"open_clip caches downloaded weights in the Hugging Face hub cache ({hf_cache}; set HF_HOME or "
        f"HF_HUB_CACHE to move it) or, for URL downloads, in ~/.cache/clip. Either connect to the network "
        f"once, copy the cached files from a machine that has them, or download the checkpoint elsewhere "
        f"and pass its local path as pretrained (e.g. `--pretrained /path/to/{name}.pt`); "
        f"`--pretrained none` gives random weights."
    )


def _backbone_from_tag(name: str, tag: str, cfg: dict, device, precision: str) -> Backbone:
    """Weights published under an open_clip tag (downloaded, or found in open_clip's cache)."""
    tag_cfg = open_clip.get_pretrained_cfg(name, tag)
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))  # OpenAI's weights were trained with QuickGELU
    if quick_gelu:
        cfg["quick_gelu"] = True
    try:
        with _quiet_open_clip():
            model = open_clip.create_model(
                name, pretrained=tag, precision=precision, device=device, force_quick_gelu=quick_gelu
            )
    except RuntimeError as err:
        if "download" in str(err).lower():
            raise _tag_error(name, tag, err) from err
        if "torchscript" in str(err).lower():  # open_clip fell back to a URL file: OpenAI's TorchScript archive
            raise ConfigError(
                f"open_clip found the {tag!r} weights of {name} only as a TorchScript archive, which it "
                f"refuses to load weights-only. Pass that file's path as pretrained (e.g. `--pretrained "
                f"~/.cache/clip/{name}.pt`): the kit reads its weights without running its code."
            ) from err
        raise
    return _make_backbone(name, tag, model, cfg, device)


def load_backbone(
    name: Optional[str],
    pretrained: Optional[str] = "none",
    device: Union[str, torch.device] = "cpu",
    precision: str = "fp32",
    allow_torchscript: Optional[bool] = None,
) -> Backbone:
    """Build an open_clip CLIP model with its tokenizer.

    Args:
        name: any open_clip model name (`open_clip.list_models()`), e.g. "RN50", "RN50x4", "cir-mini";
            None for a file written by `save_backbone_checkpoint`, which names its model itself.
        pretrained: "none" (random init), an open_clip tag such as "openai" (downloaded or taken from
            open_clip's cache), or a local checkpoint path: a file written by `save_backbone_checkpoint`
            (rebuilt from the config it carries), an open_clip / OpenAI state dict, or the original
            CLIP4Cir fine-tuned format `{"CLIP": state_dict}` (OpenAI-format weights, QuickGELU).
        device: where the model is put.
        precision: open_clip precision ("fp32", "fp16", "bf16", "amp", ...).
        allow_torchscript: files are read weights-only (no code they carry is run). TorchScript archives
            (OpenAI's released RN50.pt) are read from their data without loading their code; an archive
            that cannot be read that way is loaded with torch.jit.load, which runs its code, only when
            this is True (None: the environment variable CIR_LIB_ALLOW_TORCHSCRIPT=1 allows it).
            An open_clip tag such as "openai" downloads weights that open_clip itself loads weights-only
            (safetensors from the Hugging Face hub; a TorchScript fallback file is refused by torch).

    Returns:
        A `Backbone` in eval mode.

    Raises:
        UnsafeFileError: the file could run code when loaded (a pickle of other objects than tensors
            and plain containers, or a TorchScript archive that needs torch.jit.load, not allowed).

    Example:
        >>> bb = load_backbone("cir-mini")            # random weights
        >>> bb = load_backbone("RN50", "openai")      # OpenAI's weights via open_clip
        >>> bb = load_backbone("cir-mini", "data/cir-mini.pt")
    """
    register_model_configs()
    device = torch.device(device)
    random_init = pretrained is None or str(pretrained).strip().lower() in NO_WEIGHTS
    pretrained_str = "none" if random_init else str(pretrained)
    path = Path(pretrained_str).expanduser()
    ckpt = _read_checkpoint(path, allow_torchscript) if not random_init and path.is_file() else None
    if not random_init and path.is_dir():
        raise ConfigError(f"pretrained={pretrained_str!r} is a folder, not a checkpoint file")

    other_kit_file = serialization.kit_file_kind(ckpt)
    if other_kit_file and not str(ckpt["format"]).startswith(CHECKPOINT_FORMAT.split("/")[0] + "/"):
        what, where = other_kit_file
        raise ConfigError(f"{path} is {what}, not a backbone checkpoint; {where}")
    if isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT:
        # the kit's own format: rebuilt from the config inside, whatever open_clip's registry holds
        file_cfg = ckpt["config"]
        file_name = file_cfg["name"]
        if name is not None and file_name != name:
            raise ConfigError(
                f"checkpoint {path} carries a {file_name!r} backbone (embed_dim "
                f"{file_cfg['open_clip_config'].get('embed_dim')}), not {name!r}: pass "
                f"name={file_name!r} (`--backbone {file_name}`), or a checkpoint of {name}."
            )
        model = _model_with_state_dict(
            file_cfg["open_clip_config"], ckpt["state_dict"], path, name, device, precision
        )
        return _make_backbone(file_name, str(path), model, file_cfg["open_clip_config"], device)

    if name is None:
        raise ConfigError(f"{pretrained_str} is not a checkpoint written by this kit, so it does not say which "
                          "model it holds: give the backbone name (--backbone; RN50 or RN50x4 for the "
                          "original code's checkpoints)")
    cfg = _model_config(name)  # raises ConfigError for unknown names
    if random_init:
        with _quiet_open_clip():
            model = open_clip.create_model(name, pretrained=None, precision=precision, device=device)
        return _make_backbone(name, "none", model, cfg, device)

    if ckpt is None:
        if open_clip.pretrained.is_pretrained_cfg(name, pretrained_str):
            return _backbone_from_tag(name, pretrained_str, cfg, device, precision)
        link = link_problem(pretrained_str)
        if link:
            raise ConfigError(f"pretrained file {pretrained_str} is unreadable: {link}; replace it with the "
                              "checkpoint file or a valid link")
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ConfigError(
            f"pretrained={pretrained_str!r} is neither an existing checkpoint file nor an open_clip tag of "
            f"{name} ({'tags: ' + ', '.join(tags) if tags else 'it has no tags'}). Pass 'none' for random "
            f"weights, a tag, or the path of a checkpoint file."
        )

    openai_format = False
    if isinstance(ckpt, torch.jit.ScriptModule):  # a TorchScript archive loaded with torch.jit.load
        sd, openai_format = ckpt.state_dict(), True
    elif serialization.is_torchscript(path):  # OpenAI's released archives, read weights-only
        sd, openai_format = ckpt, True
    elif isinstance(ckpt, dict) and "CLIP" in ckpt and isinstance(ckpt["CLIP"], dict):
        sd, openai_format = ckpt["CLIP"], True  # CLIP4Cir: {"epoch": e, "CLIP": clip_model.state_dict()}
    elif isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        sd = ckpt["state_dict"]  # open_clip training checkpoints
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        sd = ckpt
    else:
        keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ConfigError(
            f"checkpoint {path} is not a CLIP checkpoint the kit knows (top-level: {keys}). Pass a file written "
            f"by save_backbone_checkpoint, an open_clip/OpenAI state dict, or CLIP4Cir's {{'CLIP': state_dict}}."
        )
    if any(k in sd for k in _OPENAI_EXTRA_KEYS):
        openai_format = True
    if openai_format and not cfg.get("quick_gelu", False):
        cfg["quick_gelu"] = True  # OpenAI's CLIP uses QuickGELU; open_clip's plain configs use GELU
        logger.info("%s holds OpenAI-format weights: building %s with QuickGELU", path, name)
    model = _model_with_state_dict(cfg, sd, path, name, device, precision)
    return _make_backbone(name, str(path), model, cfg, device)


def load_backbone_checkpoint(
    path: Union[str, Path], device: Union[str, torch.device] = "cpu", precision: str = "fp32",
    allow_torchscript: Optional[bool] = None,
) -> Backbone:
    """Rebuild a backbone from a file written by `save_backbone_checkpoint`, reading its name from the file.

    Example:
        >>> bb = load_backbone_checkpoint("data/cir-mini.pt")
    """
    return load_backbone(None, str(path), device=device, precision=precision, allow_torchscript=allow_torchscript)


def checkpoint_config(path: Union[str, Path]) -> dict:
    """The config a kit backbone checkpoint carries ({"name", "open_clip_config", ...}) plus its "extra"."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint file {path} not found; pass the path of an existing checkpoint")
    ckpt = _read_checkpoint(path, allow_torchscript=False)
    if not (isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT):
        raise ConfigError(
            f"{path} is not a cir_lib backbone checkpoint (no config inside); load it with "
            f"load_backbone(NAME, {str(path)!r}) naming its open_clip model."
        )
    return {**ckpt["config"], "extra": ckpt.get("extra") or {}}


def save_backbone_checkpoint(backbone: Backbone, path: Union[str, Path], extra: Optional[dict] = None) -> Path:
    """Write `{"format", "config": {"name", "open_clip_config", "pretrained"}, "state_dict", "extra"}` atomically.

    The file alone rebuilds the model: `load_backbone(name, path)` or `load_backbone_checkpoint(path)`.

    Args:
        backbone: the backbone to save (weights are copied to the CPU).
        path: destination file.
        extra: small JSON-like dict stored beside (e.g. the pretraining config and history).

    Returns:
        The path written.
    """
    state_dict = {k: v.detach().cpu().clone() for k, v in backbone.model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": {
            "name": backbone.name,
            "open_clip_config": copy.deepcopy(backbone.open_clip_config),
            "pretrained": backbone.pretrained,
        },
        "state_dict": state_dict,
        "extra": extra or {},
    }
    return atomic_torch_save(payload, path)
