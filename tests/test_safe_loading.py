"""Every file the kit loads is read weights-only: a pickle that would run code is refused, and
TorchScript archives are read from their data unless torch.jit.load is explicitly allowed."""

from __future__ import annotations

import builtins
import copy
import dataclasses
import math
import warnings
import zipfile

import pytest
import torch

from cir_lib import runs
from cir_lib.backbone import checkpoint_config, load_backbone, load_backbone_checkpoint
from cir_lib.composers import load_combiner_checkpoint
from cir_lib.errors import ConfigError, UnsafeFileError
from cir_lib.features import feature_cache_key, image_features
from cir_lib.recipes import get_recipe
from cir_lib.serialization import ALLOW_TORCHSCRIPT_ENV, read_torchscript_weights
from cir_lib.transform import PreprocessConfig


class _Evil:
    """Creates `marker` when unpickled (as a malicious checkpoint would run any code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.open, (self.marker, "w")


def _evil_file(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.zeros(2)}, "payload": _Evil(marker)}, path)
    return path


def _assert_refused(err, path, marker):
    text = str(err.value)
    assert str(path) in text and "not a file the kit can load safely" in text
    assert "weights_only" not in text and "weights only" not in text.lower()  # no advice to load unsafely
    assert "it names builtins.open" in text or "it names io.open" in text
    assert not marker.exists()


@pytest.fixture(scope="module")
def mini():
    torch.manual_seed(0)
    return load_backbone("cir-mini")


def test_the_malicious_fixture_runs_code_when_loaded_unsafely(tmp_path):
    # control: proves the refusals below are what keeps the marker from appearing
    marker = tmp_path / "marker"
    path = _evil_file(tmp_path / "x.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_malicious_last_pt_is_refused_on_resume(tmp_path):
    marker = tmp_path / "marker"
    run = runs.RunFolder(tmp_path / "run", "finetune")
    _evil_file(run.last_path, marker)
    with pytest.raises(UnsafeFileError) as err:
        run.load_last()
    _assert_refused(err, run.last_path, marker)
    with pytest.raises(UnsafeFileError) as err:
        runs.load_checkpoint(run.last_path)
    _assert_refused(err, run.last_path, marker)


def test_a_malicious_best_pt_is_refused_by_the_backbone_and_combiner_loaders(tmp_path):
    marker = tmp_path / "marker"
    path = _evil_file(tmp_path / "run" / "best.pt", marker)
    for load in (lambda: load_backbone("cir-mini", str(path)), lambda: load_backbone_checkpoint(path),
                 lambda: checkpoint_config(path), lambda: load_combiner_checkpoint(path)):
        with pytest.raises(UnsafeFileError) as err:
            load()
        _assert_refused(err, path, marker)


def test_a_malicious_pretrained_file_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = _evil_file(tmp_path / "RN50.pt", marker)
    with pytest.raises(UnsafeFileError) as err:
        load_backbone("RN50", str(path))
    _assert_refused(err, path, marker)


def test_a_malicious_combiner_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = _evil_file(tmp_path / "combiner.pt", marker)
    with pytest.raises(UnsafeFileError) as err:
        load_combiner_checkpoint(path, dim=128)
    _assert_refused(err, path, marker)


def test_a_malicious_feature_cache_entry_is_never_loaded_and_is_replaced(tmp_path, mini, caplog):
    from PIL import Image

    paths = []
    for i in range(3):
        p = tmp_path / "images" / f"{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.new("RGB", (64, 64), (40 * i, 0, 0)).save(p)
        paths.append(p)
    pre = PreprocessConfig("targetpad", image_size=64)
    cache = tmp_path / "cache"
    first = image_features(mini, paths, pre, cache_dir=cache)
    entry = cache / f"{feature_cache_key(mini, paths, pre)}.pt"
    assert entry.is_file()
    marker = tmp_path / "marker"
    _evil_file(entry, marker)
    again = image_features(mini, paths, pre, cache_dir=cache)
    assert torch.equal(first, again) and not marker.exists()
    assert "not a file the kit can load safely" in caplog.text
    assert isinstance(torch.load(entry, weights_only=True), torch.Tensor)  # replaced by the features


def test_a_torchscript_archive_carrying_a_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "marker"
    evil = _evil_file(tmp_path / "evil.pt", marker)
    path = tmp_path / "RN50.pt"
    with zipfile.ZipFile(evil) as src, zipfile.ZipFile(path, "w") as dst:
        dst.writestr("RN50/data.pkl", src.read(next(n for n in src.namelist() if n.endswith("data.pkl"))))
        dst.writestr("RN50/code/__torch__.py", "")
    with pytest.raises(UnsafeFileError, match="TorchScript files carry code") as err:
        load_backbone("cir-mini", str(path))
    assert str(path) in str(err.value) and not marker.exists()


def _script(module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(module).save(str(path))
    return path


def test_a_torchscript_archive_is_read_weights_only_without_torch_jit_load(tmp_path, mini, monkeypatch):
    path = _script(mini.model, tmp_path / "RN-tiny.pt")

    def refuse(*a, **k):
        raise AssertionError("torch.jit.load was called")

    monkeypatch.setattr(torch.jit, "load", refuse)
    sd = read_torchscript_weights(path)
    ref = mini.model.state_dict()
    assert set(ref) <= set(sd) and all(torch.equal(sd[k], ref[k]) for k in ref)
    loaded = load_backbone("cir-mini", str(path))
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in ref.items())
    assert loaded.open_clip_config["quick_gelu"] is True  # OpenAI's archives: QuickGELU


def test_torch_jit_load_only_when_explicitly_allowed(tmp_path, mini, monkeypatch):
    # an archive the weights-only reader cannot read (a quantized tensor), under a key the kit drops
    model = copy.deepcopy(mini.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensors are deprecated; all the test needs is one
        model.register_buffer("input_resolution", torch.quantize_per_tensor(torch.ones(1), 1.0, 0, torch.qint8))
    path = _script(model, tmp_path / "RN-quantized.pt")
    monkeypatch.delenv(ALLOW_TORCHSCRIPT_ENV, raising=False)
    with pytest.raises(UnsafeFileError) as err:
        load_backbone("cir-mini", str(path))
    text = str(err.value)
    assert str(path) in text and "TorchScript files carry code" in text
    assert "allow_torchscript=True" in text and ALLOW_TORCHSCRIPT_ENV in text
    loaded = load_backbone("cir-mini", str(path), allow_torchscript=True)
    assert all(torch.equal(loaded.model.state_dict()[k], v) for k, v in mini.model.state_dict().items())
    monkeypatch.setenv(ALLOW_TORCHSCRIPT_ENV, "1")
    assert load_backbone("cir-mini", str(path)).embed_dim == mini.embed_dim
    with pytest.raises(UnsafeFileError):
        load_backbone("cir-mini", str(path), allow_torchscript=False)  # the argument wins


def test_a_training_last_pt_loads_weights_only(tmp_path):
    # what stage 1 / stage 2 put in last.pt: config dict, optimizer, scaler, RNG state, history
    config = get_recipe("mini", stage="finetune", dataset="fashioniq")
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=config.betas)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(0)
    payload = {"format": "x", "config": dataclasses.asdict(config), "kind": "finetune",
               "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "scaler": torch.amp.GradScaler("cpu", enabled=True).state_dict(),
               "rng": runs.rng_state(generator), "epoch": 1, "best_score": -math.inf, "best_epoch": 0,
               "history": [{"epoch": 1, "loss": 0.5, "score": float("nan")}], "best_metrics": {"recall@10": 1.0},
               "clip": {"run": "zero-shot", "backbone": "cir-mini", "weights_key": "ab"}}
    run = runs.RunFolder(tmp_path, "finetune")
    run.save_last(payload)
    last = run.load_last()
    restored = torch.optim.AdamW(model.parameters(), lr=1e-3)
    restored.load_state_dict(last["optimizer"])
    runs.set_rng_state(torch.Generator(), last["rng"])
    assert last["config"] == dataclasses.asdict(config) and last["best_score"] == -math.inf


def test_a_truncated_checkpoint_is_an_unreadable_error_not_an_unsafe_one(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"w": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ConfigError, match="unreadable") as err:
        runs.load_checkpoint(path)
    assert not isinstance(err.value, UnsafeFileError)
    path.write_text("not a checkpoint at all")
    with pytest.raises(ConfigError, match="unreadable") as err:
        runs.load_checkpoint(path)
    assert not isinstance(err.value, UnsafeFileError) and "weights only" not in str(err.value).lower()
    assert "unreadable ()" not in str(err.value)  # the gist of the failure is kept


@pytest.mark.filterwarnings("ignore:'torch.load' received a zip file")
def test_a_tag_served_as_a_torchscript_url_file_points_to_the_weights_only_path(tmp_path, mini, monkeypatch):
    # open_clip's URL fallback for OpenAI's weights is the TorchScript archive: open_clip (weights-only)
    # refuses it, and the kit says how to load that file safely
    import open_clip

    archive = _script(mini.model, tmp_path / "cir-mini.pt")
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "cir-mini",
                        {"urltag": {"url": "https://example.invalid/cir-mini.pt", "quick_gelu": True}})
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_url", lambda url, *a, **k: str(archive))
    with pytest.raises(ConfigError, match="TorchScript archive") as err:
        load_backbone("cir-mini", "urltag")
    assert "~/.cache/clip/cir-mini.pt" in str(err.value)
    assert load_backbone("cir-mini", str(archive)).embed_dim == mini.embed_dim
