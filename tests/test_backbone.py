"""Backbones through open_clip: cir-mini, checkpoints in three formats, and the bad-input errors."""

from __future__ import annotations

import os

import open_clip
import pytest
import torch

from cir_lib.backbone import (
    model_from_config,
    Backbone,
    checkpoint_config,
    load_backbone,
    load_backbone_checkpoint,
    save_backbone_checkpoint,
)
from cir_lib.errors import ConfigError
from cir_lib.features import text_features


@pytest.fixture(scope="module")
def mini():
    torch.manual_seed(0)
    return load_backbone("cir-mini")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cir_mini_is_a_small_open_clip_clip(mini):
    assert "cir-mini" in open_clip.list_models()
    assert type(mini.model) is open_clip.CLIP
    assert type(mini.model.visual).__name__ == "ModifiedResNet"
    assert mini.image_size == 64 and mini.embed_dim == 128 and mini.context_length == 32
    n_params = sum(p.numel() for p in mini.model.parameters())
    n_embedding = mini.model.token_embedding.weight.numel()  # the standard 49408-token vocabulary
    assert 1e6 < n_params - n_embedding < 5e6
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert mini.model.encode_image(images).shape == (2, 128)


def test_tokenize_truncates_at_the_context_length(mini):
    tokens = mini.tokenize(["a red dress", "very " * 100 + "long"])
    assert tokens.dtype == torch.long and tokens.shape == (2, 32)
    sot, eot = mini.tokenizer.sot_token_id, mini.tokenizer.eot_token_id
    assert tokens[1, 0] == sot and tokens[1, -1] == eot  # truncated, still ends with end-of-text
    assert tokens[0, 0] == sot and (tokens[0] == eot).nonzero().item() == 4  # sot a red dress eot
    assert open_clip.get_tokenizer("cir-mini").context_length == 32


def test_text_features_are_raw_batched_and_restore_mode(mini):
    captions = [f"caption number {i}" for i in range(7)]
    mini.model.train()
    full = text_features(mini, captions, batch_size=256)
    assert mini.model.training  # mode restored
    mini.model.eval()
    batched = text_features(mini, captions, batch_size=3)
    assert full.shape == (7, 128) and full.dtype == torch.float32
    assert torch.allclose(full, batched, atol=1e-5)
    assert not torch.allclose(full.norm(dim=-1), torch.ones(7))  # raw, not normalized
    assert torch.allclose(text_features(mini, mini.tokenize(captions)), full, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(mini.model.encode_text(mini.tokenize(captions)), full, atol=1e-5)  # open_clip's own


def test_weights_key_follows_the_weights(mini):
    other = load_backbone("cir-mini")
    key = mini.weights_key
    assert mini.weights_key == key  # cached, stable
    assert other.weights_key != key  # other random init
    other.model.load_state_dict(mini.model.state_dict())
    assert other.weights_key == key  # same weights, same key
    with torch.no_grad():
        other.model.ln_final.weight.add_(1e-3)  # an in-place change (as an optimizer step)
    assert other.weights_key != key


def test_checkpoint_round_trip_restores_from_the_file_alone(tmp_path):
    # A config that differs from the registered cir-mini: only the file can rebuild it.
    cfg = open_clip.get_model_config("cir-mini")
    cfg["text_cfg"]["layers"] = 1
    torch.manual_seed(1)
    model = model_from_config(cfg, "cpu", "fp32")
    custom = Backbone("cir-mini", "none", model, open_clip.get_tokenizer("cir-mini"), 64, 128, cfg)
    path = save_backbone_checkpoint(custom, tmp_path / "sub" / "mini.pt", extra={"epochs": 2})
    assert [p.name for p in path.parent.iterdir()] == ["mini.pt"]  # no temporary file left behind
    loaded = load_backbone("cir-mini", str(path))
    assert len(loaded.model.transformer.resblocks) == 1
    assert _same_weights(loaded.model, custom.model)
    assert loaded.weights_key == custom.weights_key
    again = load_backbone_checkpoint(path)
    assert again.name == "cir-mini" and _same_weights(again.model, custom.model)
    assert checkpoint_config(path)["extra"] == {"epochs": 2}


def test_checkpoint_of_an_unregistered_name_needs_only_the_file(tmp_path, mini):
    cfg = open_clip.get_model_config("cir-mini")
    cfg["embed_dim"] = 96
    model = model_from_config(cfg, "cpu", "fp32")
    custom = Backbone("my-clip", "none", model, open_clip.get_tokenizer("cir-mini"), 64, 96, cfg)
    path = save_backbone_checkpoint(custom, tmp_path / "my.pt")
    assert "my-clip" not in open_clip.list_models()
    loaded = load_backbone_checkpoint(path)
    assert loaded.name == "my-clip" and loaded.embed_dim == 96 and _same_weights(loaded.model, model)
    assert loaded.tokenize(["word " * 50]).shape == (1, 32)
    assert torch.allclose(text_features(loaded, ["a red dress"]), text_features(custom, ["a red dress"]), atol=1e-6)
    assert load_backbone("cir-mini", "None").pretrained == "none"


def test_interrupted_save_keeps_the_previous_file(tmp_path, mini, monkeypatch):
    path = save_backbone_checkpoint(mini, tmp_path / "mini.pt")
    before = path.read_bytes()

    def failing_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        save_backbone_checkpoint(mini, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["mini.pt"]


def test_clip4cir_original_format(tmp_path, mini):
    # CLIP4Cir saved {"epoch": e, "CLIP": clip_model.state_dict()} of an OpenAI-format model
    # (possibly through DataParallel: "module." prefixes).
    state = {f"module.{k}": v.clone() for k, v in mini.model.state_dict().items()}
    torch.save({"epoch": 7, "CLIP": state}, tmp_path / "tuned_clip_best.pt")
    loaded = load_backbone("cir-mini", str(tmp_path / "tuned_clip_best.pt"))
    assert _same_weights(loaded.model, mini.model)
    # OpenAI's CLIP uses QuickGELU: the model is built with it.
    assert loaded.open_clip_config["quick_gelu"] is True
    assert type(loaded.model.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def test_plain_state_dict(tmp_path, mini):
    torch.save(mini.model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ConfigError, match="does not say which model"):
        load_backbone(None, str(tmp_path / "plain.pt"))  # only the kit's own files name their model
    loaded = load_backbone("cir-mini", str(tmp_path / "plain.pt"))
    assert _same_weights(loaded.model, mini.model)
    assert loaded.weights_key == mini.weights_key  # same config (GELU) and weights
    text = ["a blue shirt with stripes"]
    assert torch.allclose(text_features(loaded, text), text_features(mini, text), atol=1e-6)


def test_checkpoint_of_another_backbone_is_refused(tmp_path, mini):
    path = save_backbone_checkpoint(mini, tmp_path / "mini.pt")
    with pytest.raises(ConfigError, match=r"carries a 'cir-mini' backbone.*--backbone cir-mini"):
        load_backbone("RN50", str(path))


def test_state_dict_of_another_architecture_is_refused(tmp_path, mini):
    torch.save({"CLIP": mini.model.state_dict()}, tmp_path / "clip.pt")
    with pytest.raises(ConfigError) as err:
        load_backbone("RN50", str(tmp_path / "clip.pt"))
    message = str(err.value)
    assert "does not match backbone 'RN50'" in message and "shape mismatches" in message
    assert "embed_dim=128" in message and "cir-mini" in message  # says what the file carries and what to pass

    cfg = open_clip.get_model_config("cir-mini")
    cfg["text_cfg"]["width"] = 64
    torch.save(model_from_config(cfg, "cpu", "fp32").state_dict(), tmp_path / "narrow.pt")
    with pytest.raises(ConfigError, match=r"text_width=64.*pass the open_clip model name"):
        load_backbone("cir-mini", str(tmp_path / "narrow.pt"))


def test_unknown_name_says_how_to_list_models():
    with pytest.raises(ConfigError) as err:
        load_backbone("RN05")
    assert "open_clip.list_models()" in str(err.value) and "RN50" in str(err.value)


def test_bad_pretrained_values(tmp_path):
    with pytest.raises(ConfigError, match="neither an existing checkpoint file nor an open_clip tag"):
        load_backbone("cir-mini", str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a checkpoint the kit can read"):
        load_backbone("cir-mini", str(tmp_path / "junk.pt"))
    torch.save({"model": [1, 2]}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a CLIP checkpoint"):
        load_backbone("cir-mini", str(tmp_path / "other.pt"))


@pytest.fixture
def no_network(monkeypatch):
    """Only the network download fails (Hugging Face hub and plain URLs); records what was asked."""
    calls = []

    def hf_download(*args, **kwargs):
        calls.append(("hf", kwargs.get("repo_id"), kwargs.get("filename")))
        raise ConnectionError("network is unreachable")

    def url_download(url, *args, **kwargs):
        calls.append(("url", url, None))
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", hf_download)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_url", url_download)
    return calls


def test_openai_without_network_is_a_clear_error(no_network):
    with pytest.raises(ConfigError) as err:
        load_backbone("RN50", "openai")
    message = str(err.value)
    assert "could not be downloaded" in message
    assert "cache" in message and "--pretrained /path/to/RN50.pt" in message
    # open_clip resolved the tag to OpenAI's RN50 weights before the download was tried
    expected = open_clip.get_pretrained_cfg("RN50", "openai")
    asked = {c[1] for c in no_network}
    assert expected["hf_hub"].rstrip("/") in asked or expected["url"] in asked


def test_a_tag_loads_through_open_clip(tmp_path, mini, monkeypatch):
    # A registered tag whose download is served from a local file: the whole open_clip path but the network.
    torch.save(mini.model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    tags = {"testtag": {"hf_hub": "example/cir-mini-test/", "quick_gelu": True}}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "cir-mini", tags)
    asked = []

    def hf_download(repo_id, filename, **kwargs):
        asked.append((repo_id, filename))
        if filename.endswith(".safetensors"):
            raise FileNotFoundError(filename)
        return str(tmp_path / filename)

    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", hf_download)
    loaded = load_backbone("cir-mini", "testtag")
    assert ("example/cir-mini-test", "open_clip_pytorch_model.bin") in asked
    assert loaded.pretrained == "testtag" and _same_weights(loaded.model, mini.model)
    assert loaded.open_clip_config["quick_gelu"] is True
    assert type(loaded.model.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def test_openai_torchscript_archive(tmp_path, mini):
    # OpenAI released CLIP as TorchScript archives; their weights load with QuickGELU.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(mini.model).save(str(tmp_path / "RN-tiny.pt"))
    loaded = load_backbone("cir-mini", str(tmp_path / "RN-tiny.pt"))
    assert _same_weights(loaded.model, mini.model)
    assert loaded.open_clip_config["quick_gelu"] is True
