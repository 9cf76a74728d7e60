"""GPU paths: mixed-precision stage-1 steps, fp32 evaluation features, channels_last, gradient
checkpointing, fused AdamW after validation, both-encoder training.

Marked `cuda` and skipped without a GPU. `CIR_LIB_CUDA_TESTS_ON_CPU=1` runs them on the CPU as a
dry run of the test code itself (autocast is then off and the memory / layout checks are skipped);
it proves nothing about CUDA.

    pytest -m cuda tests/test_cuda.py
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from PIL import Image

from cir_lib.backbone import load_backbone, place_model
from cir_lib.features import image_features, strict_fp32, text_features
from cir_lib.recipes import get_recipe
from cir_lib.transform import PreprocessConfig, make_transform

DRY_RUN = os.environ.get("CIR_LIB_CUDA_TESTS_ON_CPU") == "1"

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available() and not DRY_RUN, reason="needs a CUDA GPU"),
]

ON_GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not ON_GPU, reason="measures a CUDA-only property")


@pytest.fixture(scope="module")
def device() -> torch.device:
    return torch.device("cuda") if ON_GPU else torch.device("cpu")


@pytest.fixture
def initial_weights(monkeypatch) -> list:
    """CPU copies of the state dict of every backbone loaded during the test (the training's start)."""
    import cir_lib.rebuild

    seen = []
    original = cir_lib.rebuild.load_backbone  # the stages load their backbone through cir_lib.rebuild

    def recording(*args, **kwargs):
        bb = original(*args, **kwargs)
        seen.append({k: v.detach().cpu().clone() for k, v in bb.model.state_dict().items()})
        return bb

    monkeypatch.setattr(cir_lib.rebuild, "load_backbone", recording)
    return seen


def _finetune(smoke_root, tmp_path, device, dataset="fashioniq", **overrides):
    from cir_lib.finetune import finetune

    # two epochs: fp16's GradScaler may skip its first steps while it finds a scale
    cfg = get_recipe("smoke", dataset=dataset, device=str(device), epochs=2, **overrides)
    return finetune(smoke_root, cfg, tmp_path / "run")


def _images(tmp_path, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    paths = []
    for i in range(n):
        w, h = (64 + 8 * i, 80) if i % 2 else (72, 96)
        pixels = (torch.rand(h, w, 3, generator=g) * 255).to(torch.uint8).numpy()
        path = tmp_path / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------- stage-1 precision


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_stage1_mixed_precision_steps(smoke_root, tmp_path, device, amp, initial_weights):
    from cir_lib import runs

    result = _finetune(smoke_root, tmp_path, device, amp=amp)
    loss = result.history[-1]["loss"]
    assert torch.isfinite(torch.tensor(loss)) and loss > 0
    assert result.best_metrics and all(0 <= v <= 100 for v in result.best_metrics.values())
    last = runs.load_checkpoint(result.run_dir / runs.LAST_FILE)
    if ON_GPU and amp == "fp16":  # the original's GradScaler, saved for resuming
        assert last["scaler"] and last["scaler"]["scale"] > 0
    else:
        assert last["scaler"] is None
    # the text encoder moved, the frozen image encoder did not
    assert len(initial_weights) == 1
    start, trained = initial_weights[0], {k: v.cpu() for k, v in last["model"].items()}
    assert not torch.equal(trained["ln_final.weight"], start["ln_final.weight"])
    assert torch.equal(trained["visual.conv1.weight"], start["visual.conv1.weight"])


@needs_gpu
def test_fp16_gradscaler_gradients_match_fp32(device):
    """fp16 autocast + GradScaler on a random RN50 text encoder: once the scaler has found a scale
    without overflow, the unscaled gradients point where the fp32 ones do (cosine > 0.99)."""
    from cir_lib import finetune as stage1, losses, training

    torch.manual_seed(0)
    bb = load_backbone("RN50", "none", device=device)
    batch = 16
    images = torch.randn(2 * batch, 3, 224, 224, device=device)
    tokens = bb.tokenize([f"has {i} red stripes and a logo" for i in range(batch)]).to(device)
    with torch.no_grad(), strict_fp32(device):
        feats = bb.model.eval().encode_image(images)

    def loss_of(model, amp):
        with training.autocast_factory(device, amp)():
            text = model.encode_text(tokens)
        return losses.contrastive_loss(torch.nn.functional.normalize(feats[:batch] + text.float(), dim=-1),
                                      feats[batch:])

    grads = {}
    model = copy.deepcopy(bb.model).eval()
    params = stage1.freeze_for_stage1(model, "text")
    with strict_fp32(device):
        loss_of(model, "none").backward()
    grads["fp32"] = torch.cat([p.grad.flatten() for p in params])

    model = copy.deepcopy(bb.model).eval()
    params = stage1.freeze_for_stage1(model, "text")
    opt = training.make_optimizer(torch.optim.AdamW, params, lr=1e-4, betas=(0.9, 0.999), eps=1e-7)
    scaler = torch.amp.GradScaler("cuda")
    for _ in range(20):  # skipped steps (overflow) leave the weights alone and halve the scale
        opt.zero_grad(set_to_none=True)
        loss = loss_of(model, "fp16")
        assert torch.isfinite(loss)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        g = torch.cat([p.grad.flatten() for p in params]).float()
        scaler.step(opt)
        scaler.update()
        if torch.isfinite(g).all():
            grads["fp16"] = g
            break
    assert "fp16" in grads, "GradScaler never found a finite step in 20 tries"
    cos = torch.nn.functional.cosine_similarity(grads["fp32"], grads["fp16"], dim=0)
    assert cos > 0.99, f"fp16 gradients differ from fp32 (cosine {cos:.4f})"


# ---------------------------------------------------------------------------- evaluation features


def test_evaluation_features_are_fp32_on_the_device(tmp_path, device):
    torch.manual_seed(0)
    bb = load_backbone("cir-mini", "none", device=device)
    pre = PreprocessConfig("targetpad", image_size=bb.image_size)
    paths = _images(tmp_path)
    transform = make_transform(pre)
    batch = torch.stack([transform(Image.open(p)) for p in paths])
    captions = ["is red and has long sleeves", "a dog on a sofa instead of a cat"]
    reference_model = copy.deepcopy(bb.model).cpu().eval()  # plain fp32 on the CPU
    with torch.no_grad():
        ref_images = reference_model.encode_image(batch)
        ref_text = reference_model.encode_text(bb.tokenize(captions))
    ambient = torch.autocast(device.type, dtype=torch.bfloat16) if ON_GPU else torch.autocast("cpu", enabled=False)
    with ambient:  # a training step's autocast must not leak into evaluation features
        feats = image_features(bb, paths, pre, batch_size=5, device=device, cache_dir=tmp_path / "cache")
        text = text_features(bb, captions, device=device)
    assert feats.dtype == torch.float32 and text.dtype == torch.float32
    # fp32 on both sides (no TF32): only summation order differs
    assert torch.allclose(feats, ref_images, rtol=1e-4, atol=1e-4), (feats - ref_images).abs().max()
    assert torch.allclose(text, ref_text, rtol=1e-4, atol=1e-4), (text - ref_text).abs().max()


@needs_gpu
def test_tf32_setting_is_restored_after_encoding(tmp_path, device):
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    bb = load_backbone("cir-mini", "none", device=device)
    image_features(bb, _images(tmp_path, n=3), PreprocessConfig("targetpad", image_size=bb.image_size))
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


# ------------------------------------------------------------------------------------ channels_last


@needs_gpu
def test_channels_last_placement_gives_the_same_features(device):
    torch.manual_seed(0)
    bb = load_backbone("RN50", "none", device="cpu")
    images = torch.randn(8, 3, 224, 224)
    with torch.no_grad():
        plain = copy.deepcopy(bb.model).to(device).eval()
        with strict_fp32(device):
            expected = plain.encode_image(images.to(device))
        model = place_model(copy.deepcopy(bb.model), device).eval()
        conv = model.visual.conv1.weight
        assert conv.is_contiguous(memory_format=torch.channels_last)
        with strict_fp32(device):
            got = model.encode_image(images.to(device).contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4), (got - expected).abs().max()


# ---------------------------------------------------------------------------- gradient checkpointing


def _both_encoder_grads(model, images, tokens, device):
    from cir_lib import finetune as stage1, losses

    params = stage1.freeze_for_stage1(model, "both")
    model.eval()
    batch = tokens.shape[0]
    with strict_fp32(device):
        feats = model.encode_image(images)
        text = model.encode_text(tokens)
        loss = losses.contrastive_loss(torch.nn.functional.normalize(feats[:batch] + text, dim=-1), feats[batch:])
        loss.backward()
    return loss.detach(), [p.grad.detach().clone() for p in params]


def test_gradient_checkpointing_same_gradients_less_memory(device):
    from cir_lib import finetune as stage1

    torch.manual_seed(0)
    name, size, batch = ("RN50", 224, 32) if ON_GPU else ("cir-mini", None, 4)
    bb = load_backbone(name, "none", device=device)
    size = size or bb.image_size
    images = torch.randn(2 * batch, 3, size, size, device=device)
    tokens = bb.tokenize([f"has {i} stripes" for i in range(batch)]).to(device)
    results = {}
    for ckpt in (False, True):
        model = copy.deepcopy(bb.model)
        if ckpt:
            stage1.enable_grad_checkpointing(model)
        if ON_GPU:
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        loss, grads = _both_encoder_grads(model, images, tokens, device)
        peak = (torch.cuda.max_memory_allocated(device) - base) if ON_GPU else 0
        results[ckpt] = (loss, grads, peak)
        del model
    (loss0, g0, peak0), (loss1, g1, peak1) = results[False], results[True]
    assert torch.allclose(loss0, loss1, rtol=1e-5, atol=1e-5)
    for a, b in zip(g0, g1):
        assert (a - b).norm() <= 1e-4 * a.norm() + 1e-12, ((a - b).norm(), a.norm())
    if ON_GPU:
        assert peak1 < 0.8 * peak0, f"checkpointing peak {peak1 / 2**30:.2f} GiB vs {peak0 / 2**30:.2f} GiB"


# --------------------------------------------------------------------- fused AdamW after validation


def test_fused_adamw_steps_after_a_validation_pass(tmp_path, device):
    """A validation pass (feature extraction, which may place the model) must leave the parameters'
    layout as the fused optimizer saw it, so the next step still runs."""
    from cir_lib import finetune as stage1, losses, training

    torch.manual_seed(0)
    bb = load_backbone("cir-mini", "none", device=device)
    params = stage1.freeze_for_stage1(bb.model, "both")
    opt = training.make_optimizer(torch.optim.AdamW, params, lr=1e-4, betas=(0.9, 0.999), eps=1e-7)
    if ON_GPU:
        assert opt.defaults.get("fused"), "fused AdamW is available on CUDA"
    strides = [p.stride() for p in params]
    tokens = bb.tokenize(["is blue", "has a collar"]).to(device)
    images = torch.randn(4, 3, bb.image_size, bb.image_size, device=device)

    def step():
        with training.autocast_factory(device, "bf16")():
            feats = bb.model.encode_image(images)
            text = bb.model.encode_text(tokens)
        loss = losses.contrastive_loss(feats[:2].float() + text.float(), feats[2:].float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    image_features(bb, _images(tmp_path, n=4), PreprocessConfig("targetpad", image_size=bb.image_size),
                   device=device)  # the validation pass
    text_features(bb, ["a validation caption"], device=device)
    assert [p.stride() for p in params] == strides
    before = [p.detach().clone() for p in params[:3]]
    step()  # fails ("params, grads, exp_avgs ... must have same strides") if the layout changed
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, params[:3]))


# ---------------------------------------------------------------------------- both-encoder training


def test_both_encoder_training_with_checkpointing(smoke_root, tmp_path, device, initial_weights):
    from cir_lib import runs

    result = _finetune(smoke_root, tmp_path, device, dataset="cirr", encoders="both", amp="fp16",
                       grad_checkpointing=True)
    assert torch.isfinite(torch.tensor(result.history[-1]["loss"]))
    assert set(result.best_metrics) >= {"recall@1", "recall_subset@1"}
    last = runs.load_checkpoint(result.run_dir / runs.LAST_FILE)
    assert len(initial_weights) == 1
    start = initial_weights[0]
    for key in ("visual.conv1.weight", "ln_final.weight"):  # both encoders moved
        assert not torch.equal(last["model"][key].cpu(), start[key])
