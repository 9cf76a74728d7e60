"""Both training stages on the smoke preset with a random-init cir-mini (tiny epochs)."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import stat

import pytest
import torch

from cir_lib import features, finetune as stage1, losses, runs, training, training_data
from cir_lib.finetune import Stage1Encoder, enable_grad_checkpointing, finetune, freeze_for_stage1
from cir_lib.rebuild import ZERO_SHOT, load_run
from cir_lib.train_combiner import train_combiner
from cir_lib.errors import CirError, ConfigError, TrainingError
from cir_lib.recipes import combiner_dims, get_recipe


# Image features of the frozen random-init cir-mini are shared by the tests through the on-disk cache
# (the key covers the weights, so a hit is exact); it keeps this file fast on 2 CPU cores.
_CACHE = {}


@pytest.fixture(scope="module", autouse=True)
def feature_cache(tmp_path_factory):
    _CACHE["dir"] = str(tmp_path_factory.mktemp("feature_cache"))
    yield _CACHE["dir"]
    _CACHE.clear()


def _stage1(dataset="cirr", **kw):
    base = dict(dataset=dataset, epochs=1, batch_size=16, encode_batch_size=128, cache_dir=_CACHE.get("dir"))
    base.update(kw)
    return get_recipe("smoke", **base)


def _stage2(dataset="cirr", **kw):
    base = dict(dataset=dataset, epochs=2, batch_size=32, encode_batch_size=128, cache_dir=_CACHE.get("dir"))
    base.update(kw)
    return get_recipe("smoke", stage="combiner", **base)


def _rows(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def stage1_run(smoke_root, tmp_path_factory):
    """A finished stage-1 run (FashionIQ, 2 epochs) shared by the stage-2 and loading tests."""
    out = tmp_path_factory.mktemp("runs") / "stage1"
    result = finetune(smoke_root, _stage1("fashioniq", epochs=2), out)
    return out, result


# ----------------------------------------------------------------------------- the loss and its gradients

@pytest.mark.parametrize("encoders", ["text", "image", "both"])
def test_gradients_reach_only_the_chosen_encoders(encoders):
    from cir_lib.backbone import load_backbone

    torch.manual_seed(0)
    bb = load_backbone("cir-mini", "none")
    model = bb.model.eval()
    freeze_for_stage1(model, encoders)
    enc = Stage1Encoder(model, train_image=encoders != "text")
    tokens = bb.tokenize(["a red dress", "a blue shirt", "has stripes", "is longer"])
    images = torch.randn(8, 3, bb.image_size, bb.image_size)
    text, image = enc(tokens, images)
    query = torch.nn.functional.normalize(image[:4] + text, dim=-1)
    losses.contrastive_loss(query, image[4:]).backward()

    text_names = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    for name, p in model.named_parameters():
        is_text, is_image = name.startswith(text_names), name.startswith("visual.")
        wanted = (is_text and encoders in ("text", "both")) or (is_image and encoders in ("image", "both"))
        got = p.grad is not None and bool(p.grad.abs().sum() > 0)
        if wanted:
            assert p.requires_grad, name
        else:
            assert not p.requires_grad and p.grad is None, name
        if name in ("token_embedding.weight", "text_projection", "visual.attnpool.c_proj.weight"):
            assert got == wanted, name
    assert not model.logit_scale.requires_grad


def test_gradient_checkpointing_gives_the_same_gradients_through_both_encoders(monkeypatch):
    import torch.utils.checkpoint as tuc
    from cir_lib.backbone import load_backbone

    def grads(checkpointing):
        torch.manual_seed(0)
        bb = load_backbone("cir-mini", "none")
        model = bb.model.eval()
        freeze_for_stage1(model, "both")
        if checkpointing:
            enable_grad_checkpointing(model)
        tokens = bb.tokenize(["a red dress", "a blue shirt", "has stripes"])
        images = torch.randn(6, 3, bb.image_size, bb.image_size, generator=torch.Generator().manual_seed(1))
        text, image = Stage1Encoder(model, train_image=True)(tokens, images)
        losses.contrastive_loss(torch.nn.functional.normalize(image[:3] + text, dim=-1), image[3:]).backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    calls = {"n": 0}
    real = tuc.checkpoint

    def counting(*a, **kw):
        calls["n"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(tuc, "checkpoint", counting)
    plain, ckpt = grads(False), grads(True)
    assert calls["n"] >= 4  # the four ModifiedResNet stages were recomputed (open_clip skips them)
    assert plain.keys() == ckpt.keys()
    for n in plain:
        assert torch.allclose(plain[n], ckpt[n], rtol=1e-4, atol=1e-6 * float(plain[n].abs().max()) + 1e-12), n


def test_text_encoding_trimmed_to_the_longest_caption_equals_open_clips(monkeypatch):
    from cir_lib.backbone import load_backbone

    torch.manual_seed(0)
    bb = load_backbone("cir-mini", "none")
    model = bb.model.eval()
    tokens = bb.tokenize(["red", "a red dress with long sleeves and a star", "has a logo", "blue"])
    assert features.text_length(model, tokens) < tokens.shape[1]  # trimming happens
    freeze_for_stage1(model, "text")
    trimmed = features.encode_text(model, tokens)
    assert model._cir_trim_checked is True
    full = model.encode_text(tokens)
    assert torch.allclose(trimmed, full, atol=1e-5)
    trimmed.square().sum().backward()
    g_trim = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    full.square().sum().backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(g_trim[n], p.grad, rtol=1e-4, atol=1e-5 * float(p.grad.abs().max())), n
    # a model whose trimmed result would differ falls back to open_clip's encode_text
    other = load_backbone("cir-mini", "none").model.eval()
    monkeypatch.setattr(features, "_encode_trimmed", lambda m, t, n: torch.zeros(len(t), bb.embed_dim))
    assert torch.allclose(features.encode_text(other, tokens), other.encode_text(tokens))
    assert other._cir_trim_checked is False


def test_contrastive_loss_is_cross_entropy_on_scaled_cosine_logits():
    torch.manual_seed(0)
    q, t = torch.randn(5, 8), torch.randn(5, 8)
    qn, tn = q / q.norm(dim=1, keepdim=True), t / t.norm(dim=1, keepdim=True)
    logits = 100 * qn @ tn.T
    naive = -torch.stack([logits[i].log_softmax(0)[i] for i in range(5)]).mean()
    assert torch.allclose(losses.contrastive_loss(q, t), naive, atol=1e-5)


# ----------------------------------------------------------------------------- caption augmentation

def test_each_fashioniq_caption_variant_is_drawn_a_quarter_of_the_time():
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(50):
        for _, v in training_data.epoch_batches(400, 4, 32, g):
            counts += torch.bincount(v, minlength=4)
    freq = counts / counts.sum()
    # 50 * 384 = 19,200 draws: the standard error of a frequency is ~0.003.
    assert torch.all((freq - 0.25).abs() < 0.015), freq
    # a CIRR query has one caption: variant 0 always
    assert all(int(v.max()) == 0 for _, v in training_data.epoch_batches(50, 1, 8, g))


def test_epoch_batches_are_a_seeded_permutation_without_the_last_partial_batch():
    a = training_data.epoch_batches(37, 4, 8, torch.Generator().manual_seed(3))
    b = training_data.epoch_batches(37, 4, 8, torch.Generator().manual_seed(3))
    assert [x.tolist() for x, _ in a] == [x.tolist() for x, _ in b]
    assert len(a) == 4 and all(len(q) == 8 for q, _ in a)
    seen = torch.cat([q for q, _ in a])
    assert len(set(seen.tolist())) == 32
    assert len(training_data.epoch_batches(5, 1, 128, torch.Generator())) == 1  # smaller than a batch: one batch


def test_training_captions_are_the_four_variants_tokenized_once(smoke_root):
    from cir_lib.backbone import load_backbone
    from cir_lib.data import fashioniq_caption_variants

    split = training_data.load_train_split(smoke_root, "fashioniq")
    variants = training_data.training_captions(split)
    q = split.queries[3]
    assert variants[3] == list(fashioniq_caption_variants(*q.captions))
    bb = load_backbone("cir-mini", "none")
    tokens = training_data.tokenize_variants(bb, variants[:5])
    assert tokens.shape == (5, 4, bb.context_length)
    assert torch.equal(tokens[3, 2], bb.tokenize([variants[3][2]])[0])
    cirr = training_data.training_captions(training_data.load_train_split(smoke_root, "cirr"))
    assert all(len(v) == 1 for v in cirr)


# ----------------------------------------------------------------------------- stage 1

def test_cached_image_features_give_the_numbers_of_re_encoding_images(smoke_root, tmp_path):
    cached = finetune(smoke_root, _stage1(cache_image_features=True), tmp_path / "cached")
    encoded = finetune(smoke_root, _stage1(cache_image_features=False), tmp_path / "encoded")
    a, b = cached.history[0], encoded.history[0]
    assert a["steps"] == b["steps"] > 1
    assert math.isclose(a["loss"], b["loss"], rel_tol=1e-5)
    wa = torch.load(tmp_path / "cached" / "last.pt", weights_only=False)["model"]
    wb = torch.load(tmp_path / "encoded" / "last.pt", weights_only=False)["model"]
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k


def test_stage1_writes_a_complete_run_folder(stage1_run):
    out, result = stage1_run
    for name in ("config.json", "history.csv", "best.pt", "last.pt"):
        assert (out / name).is_file(), name
    info = json.loads((out / "config.json").read_text())
    assert info["kind"] == "finetune" and info["config"]["encoders"] == "text"
    env = info["environment"]
    assert {"packages", "git_commit", "git_dirty", "device", "cpu_threads"} <= set(env)
    assert torch.__version__.startswith(env["packages"]["torch"]) and env["packages"]["open_clip_torch"]
    hist = runs.read_history(out)
    assert list(hist["epoch"]) == [1, 2]
    assert {"loss", "score", "seconds", "average_recall@10", "dress_recall@50"} <= set(hist.columns)
    best = hist.loc[hist["score"].idxmax()]
    assert result.best_epoch == int(best["epoch"])
    assert result.best_score == pytest.approx((best["average_recall@10"] + best["average_recall@50"]) / 2)
    # best.pt is a backbone checkpoint carrying its config: it loads on its own
    from cir_lib.backbone import checkpoint_config, load_backbone_checkpoint

    assert checkpoint_config(out / "best.pt")["extra"]["epoch"] == result.best_epoch
    assert load_backbone_checkpoint(out / "best.pt").name == "cir-mini"


def test_the_saved_best_model_reproduces_its_validation_metrics(stage1_run, smoke_root):
    from cir_lib.evaluate import evaluate_fashioniq
    from cir_lib.transform import PreprocessConfig

    out, result = stage1_run
    backbone, combiner, cfg = load_run(out)
    res = evaluate_fashioniq(smoke_root, backbone, combiner,
                             preprocess=PreprocessConfig(cfg.preprocess, backbone.image_size, cfg.preprocess_ratio))
    for key in ("recall@10", "recall@50"):
        assert res["average"][key] == pytest.approx(result.best_metrics[f"average_{key}"], abs=1e-6)


def test_cirr_stage1_validates_with_the_seven_cirr_metrics(smoke_root, tmp_path):
    result = finetune(smoke_root, _stage1("cirr", encoders="image", batch_size=28), tmp_path / "r")
    m = result.best_metrics
    keys = ["recall@1", "recall@5", "recall@10", "recall@50", "recall_subset@1", "recall_subset@2",
            "recall_subset@3"]
    assert result.best_score == pytest.approx(sum(m[k] for k in keys) / 7)


def test_resuming_gives_the_numbers_of_an_uninterrupted_run(smoke_root, tmp_path):
    straight = finetune(smoke_root, _stage1(epochs=2), tmp_path / "straight")
    finetune(smoke_root, _stage1(epochs=1), tmp_path / "split")
    resumed = finetune(smoke_root, _stage1(epochs=2), tmp_path / "split", resume=True)
    assert _rows(resumed.history) == _rows(straight.history)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=False)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert _rows(runs.read_history(tmp_path / "split").to_dict("records")) == \
        _rows(runs.read_history(tmp_path / "straight").to_dict("records"))


def test_a_run_folder_is_never_overwritten_and_resume_checks_the_config(stage1_run, smoke_root):
    out, _ = stage1_run
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        finetune(smoke_root, _stage1("fashioniq", epochs=2), out)
    with pytest.raises(ConfigError, match="lr"):
        finetune(smoke_root, _stage1("fashioniq", epochs=3, lr=1.0), out, resume=True)


def test_nan_loss_stops_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(smoke_root, tmp_path,
                                                                                  monkeypatch):
    real = losses.contrastive_loss
    calls = {"n": 0}
    steps_per_epoch = len(training_data.load_train_split(smoke_root, "cirr").queries) // 16

    def poisoned(q, t):
        calls["n"] += 1
        loss = real(q, t)
        return loss * float("nan") if calls["n"] == steps_per_epoch + 2 else loss

    monkeypatch.setattr(stage1, "contrastive_loss", poisoned)
    with pytest.raises(TrainingError, match="epoch 2, step 2") as err:
        finetune(smoke_root, _stage1(epochs=3), tmp_path / "r")
    assert "last.pt (epoch 1)" in str(err.value)
    last = runs.load_checkpoint(tmp_path / "r" / "last.pt")
    assert last["epoch"] == 1 and all(torch.isfinite(v).all() for v in last["model"].values()
                                      if v.is_floating_point())
    assert len(runs.read_history(tmp_path / "r")) == 1


def test_an_interrupted_save_never_leaves_a_truncated_best(smoke_root, tmp_path, monkeypatch):
    out = tmp_path / "r"  # FashionIQ: one best.pt (a CIRR run also keeps a best per mean)
    scores = iter([10.0, 20.0, 30.0])  # every validation improves: each epoch writes best.pt
    monkeypatch.setattr(training, "selection_score", lambda dataset, metrics, selection="arithmetic": next(scores))
    real_save = torch.save
    saves = {"n": 0}

    def crashing_save(obj, f, *a, **kw):
        if isinstance(obj, dict) and obj.get("format") == "cir_lib.backbone/1":
            saves["n"] += 1
            if saves["n"] == 2:  # the second best.pt: write half a file, then "crash"
                f.write(b"PK\x03\x04 half a checkpoint")
                raise RuntimeError("simulated crash during save")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(smoke_root, _stage1("fashioniq", epochs=2), out)
    monkeypatch.setattr(torch, "save", real_save)
    from cir_lib.backbone import checkpoint_config

    assert checkpoint_config(out / "best.pt")["extra"]["epoch"] == 1  # the old best, intact
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("events.out.tfevents.")) == \
        ["best.pt", "config.json", "history.csv", "last.pt"]  # (and TensorBoard's event files)
    # a crash that killed the process leaves a temp file: the next open removes it, and resume works
    (out / ".tmp-best.pt.abc").write_bytes(b"junk")
    result = finetune(smoke_root, _stage1("fashioniq", epochs=2), out, resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert not list(out.glob(".tmp-*"))


def test_atomic_torch_save_keeps_the_old_file_when_serialization_fails(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    path = tmp_path / "best.pt"
    runs.atomic_torch_save({"epoch": 1}, path)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        runs.atomic_torch_save({"w": torch.zeros(1000), "bad": Unpicklable()}, path)
    assert torch.load(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        runs.atomic_torch_save({"epoch": 1}, tmp_path / "last.pt")
        runs.atomic_write_text(tmp_path / "sub" / "config.json", "{}")
    finally:
        os.umask(old)
    for path in (tmp_path / "last.pt", tmp_path / "sub" / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path  # not mkstemp's 0600
    assert (tmp_path / "sub" / "config.json").read_text() == "{}"


# ----------------------------------------------------------------------------- bad input

def test_unknown_backbone_is_a_config_error(smoke_root, tmp_path):
    with pytest.raises(ConfigError, match="RN5000"):
        finetune(smoke_root, _stage1(backbone="RN5000"), tmp_path / "r")


def test_a_data_root_missing_a_split_is_a_clear_error(smoke_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(smoke_root / "cirr_dataset", root / "cirr_dataset")
    (root / "cirr_dataset" / "cirr" / "captions" / "cap.rc2.val.json").unlink()
    with pytest.raises(CirError, match="cap.rc2.val.json"):
        finetune(root, _stage1("cirr"), tmp_path / "r")
    assert not (tmp_path / "r").exists()  # nothing written before the data is known to be there
    with pytest.raises(CirError, match="fashionIQ_dataset"):
        finetune(root, _stage1("fashioniq"), tmp_path / "r")


def test_a_combiner_on_another_backbone_than_its_clip_run_is_refused(stage1_run, smoke_root, tmp_path):
    out, _ = stage1_run
    with pytest.raises(ConfigError, match="RN50.*cir-mini|cir-mini.*RN50"):
        train_combiner(smoke_root, _stage2(backbone="RN50"), out, tmp_path / "c")
    with pytest.raises(ConfigError, match="not a run folder"):
        train_combiner(smoke_root, _stage2(), tmp_path / "missing", tmp_path / "c")


# ----------------------------------------------------------------------------- stage 2

def test_combiner_run_loads_back_and_reproduces_its_metrics(stage1_run, smoke_root, tmp_path):
    from cir_lib.composers import Combiner
    from cir_lib.evaluate import evaluate_fashioniq
    from cir_lib.transform import PreprocessConfig

    clip_dir, _ = stage1_run
    result = train_combiner(smoke_root, _stage2("fashioniq"), clip_dir, tmp_path / "c")
    backbone, combiner, cfg = load_run(tmp_path / "c")
    assert isinstance(combiner, Combiner) and not combiner.training
    assert combiner.config.proj_dim == combiner_dims(cfg, backbone.embed_dim)[0]
    res = evaluate_fashioniq(smoke_root, backbone, combiner,
                             preprocess=PreprocessConfig(cfg.preprocess, backbone.image_size, cfg.preprocess_ratio))
    assert res["average"]["recall@10"] == pytest.approx(result.best_metrics["average_recall@10"], abs=1e-6)
    info = runs.read_run_config(tmp_path / "c")
    assert (tmp_path / "c" / info["clip"]["run"]).resolve() == clip_dir.resolve()  # relative to the run folder


def test_combiner_resume_equals_an_uninterrupted_run(stage1_run, smoke_root, tmp_path):
    clip_dir, _ = stage1_run
    straight = train_combiner(smoke_root, _stage2(epochs=3), clip_dir, tmp_path / "a")
    train_combiner(smoke_root, _stage2(epochs=1), clip_dir, tmp_path / "b")
    resumed = train_combiner(smoke_root, _stage2(epochs=3), clip_dir, tmp_path / "b", resume=True)
    assert _rows(resumed.history) == _rows(straight.history)
    a = runs.load_checkpoint(tmp_path / "a" / "last.pt")["combiner"]
    b = runs.load_checkpoint(tmp_path / "b" / "last.pt")["combiner"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # resuming on other stage-1 weights is refused, naming the mismatch
    with pytest.raises(ConfigError, match=r"clip\.weights_key.*--clip-run"):
        train_combiner(smoke_root, _stage2(epochs=4), ZERO_SHOT, tmp_path / "b", resume=True)


def test_stage2_encodes_images_and_captions_once_per_run_not_per_epoch(smoke_root, tmp_path, monkeypatch):
    import open_clip

    counts = {"image": 0, "text": 0}
    real_image, real_text = open_clip.CLIP.encode_image, features.encode_text

    def count_image(self, *a, **kw):
        counts["image"] += 1
        return real_image(self, *a, **kw)

    def count_text(*a, **kw):
        counts["text"] += 1
        return real_text(*a, **kw)

    monkeypatch.setattr(open_clip.CLIP, "encode_image", count_image)
    monkeypatch.setattr(features, "encode_text", count_text)
    seen = []
    for epochs in (1, 4):
        counts.update(image=0, text=0)
        features.clear_memos()  # the second run would take the first one's captions from the memo
        train_combiner(smoke_root, _stage2("cirr", epochs=epochs, cache_dir=None), ZERO_SHOT,
                             tmp_path / f"c{epochs}")
        seen.append(dict(counts))
    assert seen[0] == seen[1] and seen[0]["image"] > 0 and seen[0]["text"] > 0


def test_stage1_text_only_encodes_images_once_per_run(smoke_root, tmp_path, monkeypatch):
    import open_clip

    counts = {"image": 0}
    real_image = open_clip.CLIP.encode_image

    def count_image(self, *a, **kw):
        counts["image"] += 1
        return real_image(self, *a, **kw)

    monkeypatch.setattr(open_clip.CLIP, "encode_image", count_image)
    seen = []
    for epochs in (1, 2):
        counts["image"] = 0
        finetune(smoke_root, _stage1("cirr", epochs=epochs, cache_dir=None), tmp_path / f"r{epochs}")
        seen.append(counts["image"])
    assert seen[0] == seen[1] > 0


# ----------------------------------------------------------------------------- CLI

def test_cli_trains_both_stages(smoke_root, tmp_path, capsys):
    from cir_lib.cli import main

    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    assert main(["finetune", "--data-root", str(smoke_root), "--dataset", "cirr", "--recipe", "smoke",
                 "--out", str(s1), "--set", "epochs=1", "--set", "batch_size=8"]) == 0
    assert main(["train-combiner", "--data-root", str(smoke_root), "--dataset", "cirr", "--recipe", "smoke",
                 "--clip-run", str(s1), "--out", str(s2), "--set", "epochs=1"]) == 0
    assert "Combiner done" in capsys.readouterr().out
    assert main(["submit-cirr", "--data-root", str(smoke_root), "--run", str(s2), "--out", str(tmp_path / "sub")]) == 0
    assert len(list((tmp_path / "sub").glob("*.json"))) == 2
    assert main(["finetune", "--data-root", str(smoke_root), "--dataset", "cirr", "--recipe", "smoke",
                 "--out", str(tmp_path / "s3"), "--set", "epochs=zero"]) == 1
    assert "bad value 'zero' for 'epochs'" in capsys.readouterr().err
    assert main(["finetune", "--data-root", str(smoke_root), "--dataset", "cirr",
                 "--recipe", "paper-rn50-fashioniq", "--out", str(tmp_path / "s4")]) == 1
    assert "is for fashioniq" in capsys.readouterr().err


# ----------------------------------------------------------------------------- DDP

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, root, out, overrides):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        finetune(root, get_recipe("smoke", **overrides), out)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("encoders", ["text", "image"])
def test_ddp_on_two_cpu_processes_matches_a_single_process(smoke_root, tmp_path, encoders):
    import torch.multiprocessing as mp

    overrides = dict(dataset="cirr", epochs=1, batch_size=28 if encoders == "image" else 16, encoders=encoders,
                     cache_dir=_CACHE["dir"])
    mp.spawn(_ddp_worker, args=(2, _free_port(), smoke_root, tmp_path / "ddp", overrides), nprocs=2)
    single = finetune(smoke_root, get_recipe("smoke", **overrides), tmp_path / "single")
    info = runs.read_run_config(tmp_path / "ddp")
    assert info["world_size"] == 2
    ddp_hist = runs.read_history(tmp_path / "ddp").to_dict("records")
    assert ddp_hist[0]["steps"] == single.history[0]["steps"]
    assert ddp_hist[0]["loss"] == pytest.approx(single.history[0]["loss"], rel=1e-4)
    a = runs.load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    b = runs.load_checkpoint(tmp_path / "single" / "last.pt")["model"]
    steps, lr = single.history[0]["steps"], single.config.lr
    for k in a:
        diff = (a[k].float() - b[k].float()).abs()
        # Adam turns float-rounding noise in gradients that are ~0 (e.g. attention key biases) into
        # steps of up to lr; a wrong gradient (say, negatives not shared across processes) moves
        # every entry by ~lr. So: tiny on average, never more than a fraction of the steps taken.
        assert diff.mean() < 0.01 * lr * steps and diff.max() < 0.5 * lr * steps, (k, diff.mean(), diff.max())


# ----------------------------------------------------------------------------- evaluate / submit-cirr with runs

def _cli_json(capsys, argv):
    from cir_lib.cli import main

    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_evaluate_run_reproduces_the_best_validation_metrics(stage1_run, smoke_root, tmp_path, capsys):
    from cir_lib.cli import main

    clip_dir, stage1 = stage1_run
    comb_dir = tmp_path / "comb"
    stage2 = train_combiner(smoke_root, _stage2("fashioniq", epochs=1), clip_dir, comb_dir)
    base = ["evaluate", "--data-root", str(smoke_root), "--dataset", "fashioniq", "--json"]
    for run_dir, result in ((clip_dir, stage1), (comb_dir, stage2)):
        out = _cli_json(capsys, base + ["--run", str(run_dir)])["fashioniq"]
        assert out["average"]["recall@10"] == pytest.approx(result.best_metrics["average_recall@10"], abs=1e-6)
        assert out["average"]["recall@50"] == pytest.approx(result.best_metrics["average_recall@50"], abs=1e-6)
    assert main(base + ["--run", str(comb_dir), "--pretrained", "openai"]) == 1
    assert "--run brings its own weights" in capsys.readouterr().err


def test_the_original_codes_checkpoint_formats_evaluate_through_the_cli(smoke_root, tmp_path, capsys):
    """Files written the way CLIP4Cir saved them ({"CLIP": ...}, {"Combiner": ...}), random weights."""
    from cir_lib.backbone import load_backbone
    from cir_lib.composers import Combiner
    from cir_lib.evaluate import evaluate_cirr
    from cir_lib.transform import PreprocessConfig

    torch.manual_seed(1)
    clip = load_backbone("cir-mini", "none")
    comb = Combiner(clip.embed_dim, proj_dim=64, hidden_dim=96).eval()
    torch.save({"epoch": 3, "CLIP": clip.model.state_dict()}, tmp_path / "tuned_clip.pt")
    torch.save({"epoch": 3, "Combiner": comb.state_dict()}, tmp_path / "combiner.pt")
    out = _cli_json(capsys, ["evaluate", "--data-root", str(smoke_root), "--dataset", "cirr", "--json",
                             "--backbone", "cir-mini", "--clip-checkpoint", str(tmp_path / "tuned_clip.pt"),
                             "--combiner-checkpoint", str(tmp_path / "combiner.pt")])["cirr"]
    # the same modules, loaded the same way, evaluated directly
    official = load_backbone("cir-mini", str(tmp_path / "tuned_clip.pt"))
    direct = evaluate_cirr(smoke_root, official, comb, preprocess=PreprocessConfig("targetpad", 64))
    assert out == pytest.approx(direct)
    # and a Combiner over another backbone's dimension is refused
    torch.save({"Combiner": Combiner(64).state_dict()}, tmp_path / "other.pt")
    from cir_lib.cli import main

    assert main(["evaluate", "--data-root", str(smoke_root), "--dataset", "cirr", "--backbone", "cir-mini",
                 "--clip-checkpoint", str(tmp_path / "tuned_clip.pt"),
                 "--combiner-checkpoint", str(tmp_path / "other.pt")]) == 1
    assert "d=64" in capsys.readouterr().err
