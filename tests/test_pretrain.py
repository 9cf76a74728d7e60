"""pretrain-mini on a tiny fake pool: it learns, it is seeded, it saves a self-describing checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

import cir_lib.pretrain as pretrain
from cir_lib.backbone import checkpoint_config, load_backbone
from cir_lib.cli import main
from cir_lib.errors import AnnotationError, TrainingError
from cir_lib.pretrain import pretrain_mini
from cir_lib.recipes import PretrainConfig

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30),
          "black": (10, 10, 10), "white": (245, 245, 245), "purple": (130, 30, 160), "orange": (250, 140, 20)}


@pytest.fixture
def pool_root(tmp_path):
    root = tmp_path / "root"
    (root / "mini_pool" / "images").mkdir(parents=True)
    entries = []
    for i, (name, rgb) in enumerate(list(COLORS.items()) * 2):
        size = (64 + 8 * (i % 3), 72)
        rel = f"images/{i:02d}.{'jpg' if i % 2 else 'png'}"
        Image.new("RGB", size, rgb).save(root / "mini_pool" / rel)
        entries.append({"image": rel, "caption": f"a {name} picture", "domain": "fashion" if i % 2 else "scene"})
    (root / "mini_pool" / "captions.json").write_text(json.dumps(entries))
    return root


FAST = dict(epochs=6, batch_size=8, lr=2e-3, warmup_steps=2, threads=None)


def test_pretrain_learns_and_saves_a_self_describing_checkpoint(pool_root):
    path = pretrain_mini(pool_root, config=PretrainConfig(seed=0, **FAST))
    assert path == pool_root / "cir-mini.pt" and path.is_file()
    stored = checkpoint_config(path)
    assert stored["name"] == "cir-mini"
    assert stored["extra"]["pretrain_config"]["epochs"] == 6 and stored["extra"]["pairs"] == 16
    history = stored["extra"]["history"]
    assert len(history) == 6 and history[-1]["loss"] < history[0]["loss"] - 0.3

    backbone = load_backbone("cir-mini", str(path))
    from cir_lib.features import image_features, text_features
    from cir_lib.transform import PreprocessConfig

    entries = json.loads((pool_root / "mini_pool" / "captions.json").read_text())
    img = image_features(backbone, [pool_root / "mini_pool" / e["image"] for e in entries],
                         PreprocessConfig("targetpad", 64))
    txt = text_features(backbone, [f"a {c} picture" for c in COLORS])
    similarity = torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).T
    predicted = similarity.argmax(1)
    truth = torch.arange(16) % 8
    assert (predicted == truth).float().mean() >= 0.5  # chance is 1/8


def test_same_seed_same_weights(pool_root, tmp_path):
    cfg = dict(FAST, epochs=1)
    a = pretrain_mini(pool_root, tmp_path / "a.pt", PretrainConfig(seed=3, **cfg))
    b = pretrain_mini(pool_root, tmp_path / "b.pt", PretrainConfig(seed=3, **cfg))
    c = pretrain_mini(pool_root, tmp_path / "c.pt", PretrainConfig(seed=4, **cfg))
    wa, wb, wc = (load_backbone("cir-mini", str(p)).weights_key for p in (a, b, c))
    assert wa == wb != wc


def test_cli(pool_root, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    assert main(["pretrain-mini", "--data-root", str(pool_root), "--out", str(out), "--epochs", "1",
                 "--seed", "1", "--batch-size", "8"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert checkpoint_config(out)["extra"]["pretrain_config"]["seed"] == 1


def test_missing_pool_says_how_to_make_it(tmp_path, capsys):
    with pytest.raises(AnnotationError, match="make-mini"):
        pretrain_mini(tmp_path)
    assert main(["pretrain-mini", "--data-root", str(tmp_path)]) == 1
    assert "captions.json not found" in capsys.readouterr().err


def test_nan_loss_stops_with_epoch_and_step(pool_root, monkeypatch):
    monkeypatch.setattr(pretrain, "clip_loss", lambda *a: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(TrainingError, match="epoch 1, step 1"):
        pretrain_mini(pool_root, config=PretrainConfig(**FAST))
    assert not (pool_root / "cir-mini.pt").exists()


def test_shift_augmentation_translates_with_zero_fill():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8).to(torch.uint8)
    g = torch.Generator().manual_seed(0)
    shifted = pretrain.random_shift(images, 2, g)
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    assert torch.equal(pretrain.random_shift(images, 0, g), images)
    for original, moved in zip(images, shifted):
        padded = torch.nn.functional.pad(original, (2, 2, 2, 2))
        assert any(torch.equal(moved, padded[:, y:y + 8, x:x + 8]) for y in range(5) for x in range(5))
