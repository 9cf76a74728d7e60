"""The official code's precision path (`precision="official"`): weight rounding against a reference
written as the official code's `convert_weights`, fp16 features, the GradScaler path of the shared
step, and runs trained and evaluated with it."""

from __future__ import annotations

import contextlib
import functools
import json

import pytest
import torch
from torch import nn

from cir_lib import runs
from cir_lib.backbone import load_backbone
from cir_lib.composers import Combiner
from cir_lib.rebuild import ZERO_SHOT, load_run
from cir_lib.precision import round_features_fp16, round_weights_fp16
from cir_lib.recipes import get_recipe
from cir_lib.train_combiner import combiner_step, train_combiner
from cir_lib.training import optimizer_step


def _reference_convert_weights(model: nn.Module) -> None:
    """The official code's `clip.model.convert_weights` (CLIP4Cir loads its checkpoints into this fp16
    model on CUDA), followed by the `.float()` its scripts call."""
    def _convert_weights_to_fp16(layer):
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            layer.weight.data = layer.weight.data.half()
            if layer.bias is not None:
                layer.bias.data = layer.bias.data.half()
        if isinstance(layer, nn.MultiheadAttention):
            for attr in [*[f"{s}_proj_weight" for s in ["in", "q", "k", "v"]], "in_proj_bias", "bias_k", "bias_v"]:
                tensor = getattr(layer, attr)
                if tensor is not None:
                    tensor.data = tensor.data.half()
        for name in ["text_projection", "proj"]:
            if hasattr(layer, name):
                attr = getattr(layer, name)
                if attr is not None:
                    attr.data = attr.data.half()

    model.apply(_convert_weights_to_fp16)
    model.float()


@pytest.mark.parametrize("name", ["cir-mini", "RN50"])
def test_weight_rounding_equals_the_official_fp16_load(name):
    torch.manual_seed(0)
    backbone = load_backbone(name, "none")
    reference = load_backbone(name, "none")
    reference.model.load_state_dict(backbone.model.state_dict())
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    key = backbone.weights_key
    _reference_convert_weights(reference.model)
    round_weights_fp16(backbone.model)
    got, want = backbone.model.state_dict(), reference.model.state_dict()
    assert got.keys() == want.keys()
    for k in got:
        assert got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]), k
    changed = {k for k in got if not torch.equal(got[k], before[k])}
    assert any("visual" in k for k in changed) and any("transformer" in k for k in changed)
    assert not any(k.startswith("token_embedding") or "ln_" in k or k == "logit_scale" for k in changed)
    assert backbone.weights_key != key  # feature caches keyed by the weights do not mix the two
    again = dict(got)
    round_weights_fp16(backbone.model)  # idempotent: fp16 values stay
    assert all(torch.equal(again[k], v) for k, v in backbone.model.state_dict().items())


def test_rounded_weights_move_rn50_features_by_fp16_rounding_only():
    torch.manual_seed(0)
    backbone = load_backbone("RN50", "none")
    images = torch.randn(2, 3, backbone.image_size, backbone.image_size)
    with torch.no_grad():
        before = backbone.model.encode_image(images)
        round_weights_fp16(backbone.model)
        after = backbone.model.encode_image(images)
    relative = ((after - before).norm(dim=-1) / before.norm(dim=-1)).max().item()
    assert 0 < relative < 5e-3  # the issue measured up to 6.6e-4 on a random RN50


def test_features_are_rounded_to_fp16_values_in_their_dtype():
    x = torch.randn(4, 8)
    y = round_features_fp16(x)
    assert y.dtype == torch.float32 and torch.equal(y, x.half().float()) and not torch.equal(x, y)


def test_the_shared_step_takes_the_gradscaler_path():
    """The scaler path of `optimizer_step` / `combiner_step` under a CPU GradScaler (standing in for
    CUDA's): the same gradients as the plain path, and a step whose gradients overflow is skipped."""
    torch.manual_seed(0)
    plain = Combiner(16, proj_dim=32, hidden_dim=64, dropout=0.0).train()
    scaled = Combiner(16, proj_dim=32, hidden_dim=64, dropout=0.0).train()
    scaled.load_state_dict(plain.state_dict())
    ref, text, tgt = (torch.randn(8, 16) for _ in range(3))
    opt_a = torch.optim.SGD(plain.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(scaled.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    va = combiner_step(plain, ref, text, tgt, opt_a)
    vb = combiner_step(scaled, ref, text, tgt, opt_b, contextlib.nullcontext, scaler)
    assert va == pytest.approx(vb)
    for (name, a), b in zip(plain.named_parameters(), scaled.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
    # an overflowing gradient: the scaler skips the step and lowers its scale
    p = nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=1.0)
    scale = scaler.get_scale()
    optimizer_step((p * torch.tensor([float("inf"), 1.0, 1.0])).sum(), opt, scaler)
    assert torch.equal(p.detach(), torch.ones(3)) and scaler.get_scale() < scale


def test_cpu_autocast_runs_the_combiner_step_in_half_precision():
    torch.manual_seed(0)
    comb = Combiner(16, proj_dim=32, hidden_dim=64).train()
    opt = torch.optim.Adam(comb.parameters(), lr=1e-3)
    seen = []
    comb.combiner_layer.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    autocast = functools.partial(torch.autocast, device_type="cpu", dtype=torch.bfloat16)
    value = combiner_step(comb, *(torch.randn(8, 16) for _ in range(3)), opt, autocast)
    assert value > 0 and seen == [torch.bfloat16]


def test_the_official_combiner_path_with_a_mocked_device(smoke_root, tmp_path, monkeypatch):
    """train_combiner's official path as on CUDA, with CPU stand-ins (bf16 autocast, torch's CPU
    GradScaler): the Combiner runs under autocast, the scaler's state is kept in last.pt, and resuming
    from it gives the numbers of an uninterrupted run."""
    import cir_lib.train_combiner as stage2

    dtypes = []
    autocast = functools.partial(torch.autocast, device_type="cpu", dtype=torch.bfloat16)
    monkeypatch.setattr(stage2, "official_amp",
                        lambda device: (autocast, torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)))
    real = Combiner.forward
    monkeypatch.setattr(Combiner, "forward", lambda self, *a, **k: (
        dtypes.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None),
        real(self, *a, **k))[1])

    def config(epochs):
        return get_recipe("smoke", stage="combiner", dataset="cirr", epochs=epochs, batch_size=32,
                          pretrained="none", tensorboard=False, precision="official")

    torch.manual_seed(0)
    straight = train_combiner(smoke_root, config(2), ZERO_SHOT, tmp_path / "straight")
    assert torch.bfloat16 in dtypes  # training steps under the stand-in autocast (validation outside it)
    last = runs.load_checkpoint(tmp_path / "straight" / runs.LAST_FILE)
    assert last["scaler"]["scale"] > 0
    torch.manual_seed(0)
    train_combiner(smoke_root, config(1), ZERO_SHOT, tmp_path / "split")
    resumed = train_combiner(smoke_root, config(2), ZERO_SHOT, tmp_path / "split", resume=True)

    def rows(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert rows(resumed.history) == rows(straight.history)


@pytest.fixture(scope="module")
def official_runs(smoke_root, tmp_path_factory):
    from cir_lib.finetune import finetune

    folder = tmp_path_factory.mktemp("official")
    s1 = finetune(smoke_root, get_recipe("smoke", dataset="cirr", epochs=1, batch_size=16, encode_batch_size=128,
                                         tensorboard=False), folder / "s1")
    s2 = train_combiner(smoke_root, get_recipe("smoke", stage="combiner", dataset="cirr", epochs=2, batch_size=32,
                                                encode_batch_size=128, tensorboard=False, precision="official"),
                        folder / "s1", folder / "s2")
    return folder, s1, s2


def test_an_official_combiner_trains_on_the_rounded_stage1_weights(official_runs, smoke_root, capsys):
    from cir_lib.cli import main

    folder, _, s2 = official_runs
    info = runs.read_run_config(folder / "s2")
    assert info["config"]["precision"] == "official"
    plain, _, _ = load_run(folder / "s1")
    rounded, combiner, _ = load_run(folder / "s2")
    assert info["clip"]["weights_key"] == rounded.weights_key != plain.weights_key
    reference = load_run(folder / "s1")[0]
    _reference_convert_weights(reference.model)
    for k, v in rounded.model.state_dict().items():
        assert torch.equal(v, reference.model.state_dict()[k]), k
    # evaluated through the CLI, the run gives its best validation metrics (the same rounded encoders)
    argv = ["evaluate", "--data-root", str(smoke_root), "--dataset", "cirr", "--json", "--run", str(folder / "s2")]
    assert main(argv) == 0, capsys.readouterr().err
    got = json.loads(capsys.readouterr().out)["cirr"]
    assert got["recall@1"] == pytest.approx(s2.best_metrics["recall@1"], abs=1e-6)
    assert main(argv + ["--precision", "fp32"]) == 1
    assert "evaluate it with its own precision" in capsys.readouterr().err


def test_evaluate_precision_official_rounds_a_stage1_run(official_runs, smoke_root, capsys):
    from cir_lib.cli import main

    folder, _, _ = official_runs
    base = ["evaluate", "--data-root", str(smoke_root), "--dataset", "cirr", "--json", "--run", str(folder / "s1")]
    results = {}
    for precision in ("fp32", "official"):
        assert main(base + ["--precision", precision]) == 0, capsys.readouterr().err
        results[precision] = json.loads(capsys.readouterr().out)["cirr"]
    assert set(results["fp32"]) == set(results["official"])  # the same metrics; values may move slightly
    backbone, _, _ = load_run(folder / "s1", precision="official")
    reference = load_run(folder / "s1")[0]
    _reference_convert_weights(reference.model)
    assert backbone.weights_key == reference.weights_key


# ------------------------------------------------------------------------------------- on CUDA

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_official_combiner_on_cuda_trains_under_fp16_autocast_with_a_gradscaler(smoke_root, tmp_path, monkeypatch):
    import cir_lib.train_combiner as stage2

    dtypes = []
    real = stage2.combiner_step

    def recording(combiner, *args, **kwargs):
        handle = combiner.combiner_layer.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
        try:
            return real(combiner, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(stage2, "combiner_step", recording)
    config = get_recipe("smoke", stage="combiner", dataset="cirr", epochs=2, batch_size=32, device="cuda",
                        pretrained="none", tensorboard=False, precision="official")
    result = train_combiner(smoke_root, config, ZERO_SHOT, tmp_path / "s2")
    assert dtypes and set(dtypes) == {torch.float16}
    last = runs.load_checkpoint(tmp_path / "s2" / runs.LAST_FILE)
    assert last["scaler"]["scale"] > 0  # the GradScaler's state, kept for resuming
    assert result.best_metrics and all(0 <= v <= 100 for v in result.best_metrics.values())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_official_stage1_computes_the_logits_under_autocast(monkeypatch):
    from cir_lib.finetune import Stage1Encoder, stage1_loss
    from cir_lib.training import autocast_factory

    torch.manual_seed(0)
    device = torch.device("cuda")
    bb = load_backbone("cir-mini", "none", device=device)
    encoder = Stage1Encoder(bb.model.eval(), False)
    tokens = bb.tokenize([f"has {i} red stripes" for i in range(8)]).to(device)
    ref, tgt = torch.randn(8, bb.embed_dim, device=device), torch.randn(8, bb.embed_dim, device=device)
    seen = []
    autocast = autocast_factory(device, "fp16")
    real_ce = torch.nn.functional.cross_entropy

    def spy(logits, *a, **k):
        seen.append(logits.dtype)
        return real_ce(logits, *a, **k)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    fp32 = stage1_loss(encoder, tokens, autocast, reference_features=ref, target_features=tgt)
    official = stage1_loss(encoder, tokens, autocast, reference_features=ref, target_features=tgt,
                           logits_autocast=True)
    assert seen == [torch.float32, torch.float16]  # the logits matmul ran in fp16 under autocast
    assert official.item() == pytest.approx(fp32.item(), rel=1e-2)

