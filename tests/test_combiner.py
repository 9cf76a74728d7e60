"""The Combiner and the element-wise sum: shapes, lambda, normalization, original-format checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cir_lib.composers import (
    Combiner,
    CombinerConfig,
    ElementwiseSum,
    load_combiner_checkpoint,
    save_combiner_checkpoint,
)
from cir_lib.errors import ConfigError


def _features(n=6, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * 3, torch.randn(n, d, generator=g) * 3


def test_default_sizes_and_original_module_names():
    comb = Combiner(16)
    assert comb.text_projection_layer.weight.shape == (64, 16)  # p = 4d
    assert comb.image_projection_layer.weight.shape == (64, 16)
    assert comb.combiner_layer.weight.shape == (128, 128)  # Linear(2p, h), h = 8d
    assert comb.output_layer.weight.shape == (16, 128)
    assert comb.dynamic_scalar[0].weight.shape == (128, 128) and comb.dynamic_scalar[3].weight.shape == (1, 128)
    assert [type(m).__name__ for m in comb.dynamic_scalar] == ["Linear", "ReLU", "Dropout", "Linear", "Sigmoid"]
    assert comb.dropout1.p == comb.dropout2.p == comb.dropout3.p == comb.dynamic_scalar[2].p == 0.5
    assert sorted(comb.state_dict()) == sorted(
        f"{m}.{w}" for m in ("text_projection_layer", "image_projection_layer", "combiner_layer",
                             "output_layer", "dynamic_scalar.0", "dynamic_scalar.3") for w in ("weight", "bias")
    )
    assert Combiner(640).config.proj_dim == 2560 and Combiner(640).config.hidden_dim == 5120


def test_combiner_output_shape_lambda_and_normalization():
    torch.manual_seed(0)
    comb = Combiner(16, proj_dim=32, hidden_dim=48).eval()
    image, text = _features()
    query, lam = comb(image, text, return_lambda=True)
    assert query.shape == (6, 16) and lam.shape == (6,)
    assert torch.allclose(query.norm(dim=-1), torch.ones(6), atol=1e-5)
    assert ((lam > 0) & (lam < 1)).all()
    assert torch.equal(comb(image, text), query)


def test_combiner_matches_the_recipe_formula():
    torch.manual_seed(1)
    comb = Combiner(8, proj_dim=12, hidden_dim=20).eval()
    image, text = _features(5, 8, seed=2)
    t = F.relu(comb.text_projection_layer(text))
    i = F.relu(comb.image_projection_layer(image))
    cat = torch.cat([t, i], dim=-1)  # (text, image) order
    mix = comb.output_layer(F.relu(comb.combiner_layer(cat)))
    lam = torch.sigmoid(comb.dynamic_scalar[3](F.relu(comb.dynamic_scalar[0](cat))))
    expected = F.normalize(mix + lam * text + (1 - lam) * image, dim=-1)  # raw features in the mixture
    query, got_lam = comb(image, text, return_lambda=True)
    assert torch.allclose(query, expected, atol=1e-6)
    assert torch.allclose(got_lam, lam.squeeze(-1), atol=1e-6)


def test_dynamic_scalar_logit_is_lambda_before_the_sigmoid():
    torch.manual_seed(3)
    comb = Combiner(8, proj_dim=12, hidden_dim=20).eval()
    with torch.no_grad():
        comb.dynamic_scalar[3].bias.fill_(4.0)  # push lambda towards 1, where the logit says more than lambda
    image, text = _features(5, 8, seed=4)
    logit = comb.dynamic_scalar_logit(image, text)
    _, lam = comb(image, text, return_lambda=True)
    assert logit.shape == (5,)
    assert torch.allclose(torch.sigmoid(logit), lam, atol=1e-6)
    assert not torch.allclose(logit, comb.dynamic_scalar_logit(text, image))  # (text, image) order kept
    with pytest.raises(ConfigError, match="d=8"):
        comb.dynamic_scalar_logit(torch.randn(2, 6), torch.randn(2, 6))


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    comb = Combiner(16)
    image, text = _features()
    comb.train()
    assert not torch.equal(comb(image, text), comb(image, text))
    comb.eval()
    assert torch.equal(comb(image, text), comb(image, text))


def test_elementwise_sum_normalizes_the_sum_of_raw_features():
    image, text = _features()
    query, lam = ElementwiseSum()(image, text, return_lambda=True)
    assert lam is None
    assert torch.allclose(query, F.normalize(image + text, dim=-1))
    assert not torch.allclose(query, F.normalize(F.normalize(image, dim=-1) + F.normalize(text, dim=-1), dim=-1))
    assert list(ElementwiseSum().parameters()) == []


def test_mismatched_feature_dims_are_refused():
    image, text = _features(4, 16)
    with pytest.raises(ConfigError, match="built for d=32"):
        Combiner(32)(image, text)
    with pytest.raises(ConfigError, match="differ in shape"):
        ElementwiseSum()(image, text[:, :8])


def test_kit_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    comb = Combiner(16, proj_dim=24, hidden_dim=40).eval()
    path = save_combiner_checkpoint(comb, tmp_path / "best.pt", extra={"epoch": 4})
    loaded = load_combiner_checkpoint(path, dim=16)
    image, text = _features()
    assert loaded.config == comb.config and not loaded.training
    assert torch.equal(loaded(image, text), comb(image, text))
    with pytest.raises(ConfigError, match="trained on d=16 features but the backbone gives d=640"):
        load_combiner_checkpoint(path, dim=640)


def test_original_clip4cir_format_from_random_weights(tmp_path):
    # CLIP4Cir saved {"epoch": e, "Combiner": combiner.state_dict()}; p and h come from the shapes.
    torch.manual_seed(3)
    d, p, h = 16, 40, 72
    sd = {
        "text_projection_layer.weight": torch.randn(p, d), "text_projection_layer.bias": torch.randn(p),
        "image_projection_layer.weight": torch.randn(p, d), "image_projection_layer.bias": torch.randn(p),
        "combiner_layer.weight": torch.randn(h, 2 * p), "combiner_layer.bias": torch.randn(h),
        "output_layer.weight": torch.randn(d, h), "output_layer.bias": torch.randn(d),
        "dynamic_scalar.0.weight": torch.randn(h, 2 * p), "dynamic_scalar.0.bias": torch.randn(h),
        "dynamic_scalar.3.weight": torch.randn(1, h), "dynamic_scalar.3.bias": torch.randn(1),
    }
    torch.save({"epoch": 12, "Combiner": sd}, tmp_path / "combiner.pt")
    comb = load_combiner_checkpoint(tmp_path / "combiner.pt", dim=d)
    assert comb.config == CombinerConfig("combiner", d, p, h, 0.5)
    for k, v in comb.state_dict().items():
        assert torch.equal(v, sd[k])
    image, text = _features(5, d)
    query, lam = comb(image, text, return_lambda=True)
    cat = torch.cat([F.relu(text @ sd["text_projection_layer.weight"].T + sd["text_projection_layer.bias"]),
                     F.relu(image @ sd["image_projection_layer.weight"].T + sd["image_projection_layer.bias"])], -1)
    hidden = F.relu(cat @ sd["combiner_layer.weight"].T + sd["combiner_layer.bias"])
    mix = hidden @ sd["output_layer.weight"].T + sd["output_layer.bias"]
    s = F.relu(cat @ sd["dynamic_scalar.0.weight"].T + sd["dynamic_scalar.0.bias"])
    want_lam = torch.sigmoid(s @ sd["dynamic_scalar.3.weight"].T + sd["dynamic_scalar.3.bias"])
    assert torch.allclose(lam, want_lam.squeeze(-1), atol=1e-5)
    assert torch.allclose(query, F.normalize(mix + want_lam * text + (1 - want_lam) * image, dim=-1), atol=1e-5)

    # a round trip through the kit's own format keeps everything
    path = save_combiner_checkpoint(comb, tmp_path / "ours.pt")
    assert torch.equal(load_combiner_checkpoint(path)(image, text), query)

    with pytest.raises(ConfigError, match="d=640"):
        load_combiner_checkpoint(tmp_path / "combiner.pt", dim=640)
    del sd["output_layer.weight"]
    torch.save({"Combiner": sd}, tmp_path / "broken.pt")
    with pytest.raises(ConfigError, match="output_layer.weight"):
        load_combiner_checkpoint(tmp_path / "broken.pt")
    torch.save({"CLIP": {}}, tmp_path / "clip.pt")
    with pytest.raises(ConfigError, match="not a Combiner checkpoint"):
        load_combiner_checkpoint(tmp_path / "clip.pt")


@pytest.mark.parametrize("name", ["image only", "text only"])
def test_ablation_composers_rank_as_a_naive_computation(name):
    import numpy as np

    from cir_lib.composers import ABLATION_COMPOSERS
    from cir_lib.evaluate import compose_queries
    from cir_lib.metrics import target_ranks

    image, text = _features(n=70, d=12, seed=4)
    index = torch.randn(90, 12, generator=torch.Generator().manual_seed(9)) * 2
    targets = torch.randint(0, 90, (70,), generator=torch.Generator().manual_seed(1))
    composer = ABLATION_COMPOSERS[name](12)
    query, lam = compose_queries(composer, image, text)
    assert lam is None and composer(image, text).shape == (70, 12)
    ranks = target_ranks(query, index, targets)
    # naive: cosine similarity of the one kept modality to every index image, in float64
    kept = (image if name == "image only" else text).double().numpy()
    x = index.double().numpy()
    sims = (kept / np.linalg.norm(kept, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    expect = [int((row > row[t]).sum()) for row, t in zip(sims, targets.tolist())]
    assert ranks.tolist() == expect
    # the ignored modality does not change the query
    moved = (image, text * 5 + 1) if name == "image only" else (image * 5 + 1, text)
    assert torch.equal(composer(*moved), composer(image, text))
    with pytest.raises(ConfigError, match="differ in shape"):
        composer(image, text[:3])
    with pytest.raises(ConfigError, match="d=12"):
        ABLATION_COMPOSERS[name](12)(image[:, :6], text[:, :6])
