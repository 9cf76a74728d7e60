"""TIRG and ARTEMIS composers: shapes, gradients, hand-computed cases, ARTEMIS's fast score matrix
against the pairwise definition, and in-batch training on a tiny synthetic task."""

import math

import pytest
import torch
import torch.nn.functional as F

from cir_lib.composers.artemis import LOG_TEMPERATURE_INIT, Artemis
from cir_lib.composers.tirg import TIRG
from cir_lib.errors import ConfigError


def _features(n, d, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype)


# ----------------------------------------------------------------------------------------------- TIRG

def test_tirg_shapes_normalized_and_official_init():
    torch.manual_seed(0)
    tirg = TIRG(16)
    assert tirg.gate[2].weight.shape == (16, 32)
    assert [tuple(m.weight.shape) for m in tirg.residual if isinstance(m, torch.nn.Linear)] == [(32, 32), (16, 32)]
    assert tirg.gate_weight.item() == 1.0 and tirg.residual_weight.item() == 10.0
    r, m = _features(8, 16, 1), _features(8, 16, 2)
    q = tirg(r, m)
    assert q.shape == (8, 16)
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(8))
    q2, lam = tirg.eval()(r, m, return_lambda=True)
    assert lam is None and q2.shape == (8, 16)


def test_tirg_gradients_reach_every_parameter():
    torch.manual_seed(0)
    tirg = TIRG(8)
    q = tirg(_features(6, 8, 1), _features(6, 8, 2))
    (q @ F.normalize(_features(6, 8, 3), dim=-1).T).diagonal().sum().backward()
    for name, p in tirg.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_tirg_hand_computed_case():
    # d = 1; BatchNorm in eval with mean 0, var 1 (identity up to eps); hand-set weights.
    tirg = TIRG(1, gate_weight=2.0, residual_weight=3.0).eval()
    with torch.no_grad():
        for bn in (tirg.gate[0], tirg.residual[0]):
            bn.running_mean.zero_(); bn.running_var.fill_(1.0); bn.eps = 0.0
        tirg.gate[2].weight.copy_(torch.tensor([[1.0, -1.0]])); tirg.gate[2].bias.fill_(0.0)
        tirg.residual[2].weight.copy_(torch.eye(2)); tirg.residual[2].bias.zero_()
        tirg.residual[4].weight.copy_(torch.tensor([[0.5, 0.25]])); tirg.residual[4].bias.fill_(-1.0)
    r, m = torch.tensor([[2.0]]), torch.tensor([[1.0]])
    # gate = relu(2) - relu(1) = 1 -> sigmoid(1); residual = 0.5*2 + 0.25*1 - 1 = 0.25
    expected = 2.0 * (1 / (1 + math.exp(-1.0))) * 2.0 + 3.0 * 0.25
    torch.testing.assert_close(tirg.unnormalized(r, m), torch.tensor([[expected]]))
    torch.testing.assert_close(tirg(r, m), torch.tensor([[1.0]]))  # normalized in d = 1
    # d = 2 with the residual switched off: query = normalize(sigmoid(gate) * r)
    tirg2 = TIRG(2, residual_weight=0.0).eval()
    with torch.no_grad():
        tirg2.gate[2].weight.zero_(); tirg2.gate[2].bias.copy_(torch.tensor([0.0, math.log(3.0)]))
    q = tirg2(torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(q, F.normalize(torch.tensor([[0.5 * 3.0, 0.75 * 4.0]]), dim=-1))


def test_tirg_refuses_mismatched_features():
    with pytest.raises(ConfigError, match="d=8"):
        TIRG(8)(torch.zeros(2, 8), torch.zeros(2, 4))


# -------------------------------------------------------------------------------------------- ARTEMIS

def _pairwise_loop(model, r, m, t):
    """Independent reference: the paper's definition, one (query, index image) pair at a time."""
    out = torch.empty(len(r), len(t), dtype=r.dtype)
    for i in range(len(r)):
        a_em = model.attention_em(m[i:i + 1])[0]
        a_is = model.attention_is(m[i:i + 1])[0]
        tm = model.transform_m(m[i:i + 1])[0]
        tm = tm / tm.norm()
        ar = a_is * r[i]
        ar = ar / ar.norm()
        for j in range(len(t)):
            at_em = a_em * t[j]
            at_is = a_is * t[j]
            out[i, j] = (tm * at_em / at_em.norm()).sum() + (ar * at_is / at_is.norm()).sum()
    return out


def test_artemis_shapes_and_official_modules():
    torch.manual_seed(0)
    art = Artemis(16)
    assert art.transform_m.weight.shape == (16, 16)
    for att in (art.attention_em, art.attention_is):
        assert [tuple(l.weight.shape) for l in att.attention if isinstance(l, torch.nn.Linear)] == [(16, 16), (16, 16)]
    assert math.isclose(art.logit_scale().item(), math.exp(LOG_TEMPERATURE_INIT), rel_tol=1e-6)
    r, m, t = _features(5, 16, 1), _features(5, 16, 2), _features(7, 16, 3)
    assert art.scores(r, m, t).shape == (5, 7)
    assert art.pairwise(r, m, t[:5]).shape == (5,)
    a = art.attention_em(m)
    torch.testing.assert_close(a.sum(-1), torch.ones(5))  # softmax over the channels


def test_artemis_fast_scores_equal_pairwise_loop_and_ranking():
    torch.manual_seed(0)
    art = Artemis(32).double().eval()
    r, m, t = (_features(n, 32, s, torch.float64) for n, s in ((9, 1), (9, 2), (40, 3)))
    with torch.no_grad():
        fast = art.scores(r, m, t)
        slow = _pairwise_loop(art, r, m, t)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)
    assert torch.equal(fast.argsort(dim=1, descending=True), slow.argsort(dim=1, descending=True))
    # the batch's diagonal is the pairwise score of matched pairs
    torch.testing.assert_close(art.scores(r, m, t[:9]).diagonal(), art.pairwise(r, m, t[:9]))
    # float32, features at CLIP-like scales: same numbers within float tolerance
    art32 = Artemis(32).eval()
    r, m, t = _features(6, 32, 4) * 3, _features(6, 32, 5) * 0.2, _features(50, 32, 6) * 7
    with torch.no_grad():
        torch.testing.assert_close(art32.scores(r, m, t), _pairwise_loop(art32, r, m, t), rtol=1e-5, atol=1e-5)


def test_artemis_scale_invariant_in_reference_and_target():
    torch.manual_seed(0)
    art = Artemis(8).double()
    r, m, t = _features(3, 8, 1, torch.float64), _features(3, 8, 2, torch.float64), _features(4, 8, 3, torch.float64)
    torch.testing.assert_close(art.scores(r, m, t), art.scores(5 * r, m, 0.1 * t))


def test_artemis_hand_computed_case():
    # d = 2, every Linear zero: A(m) = softmax(0) = (1/2, 1/2); T(m) = normalize(bias).
    art = Artemis(2).double()
    with torch.no_grad():
        for p in art.parameters():
            p.zero_()
        art.transform_m.bias.copy_(torch.tensor([3.0, 4.0], dtype=torch.float64))  # T(m) = (0.6, 0.8)
    r = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    m = torch.tensor([[7.0, -2.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    # att(a, t) = normalize(t) with a uniform: t1 -> (0, 1), t2 -> (0.6, 0.8); att(a, r) = (1, 0)
    # EM = (0.8, 0.36 + 0.64 = 1.0); IS = (0, 0.6)
    expected = torch.tensor([[0.8, 1.6]], dtype=torch.float64)
    torch.testing.assert_close(art.scores(r, m, t), expected)
    torch.testing.assert_close(art.pairwise(r.repeat(2, 1), m.repeat(2, 1), t), expected[0])


def test_artemis_gradients_reach_every_parameter():
    torch.manual_seed(0)
    art = Artemis(8)
    r, m, t = _features(6, 8, 1), _features(6, 8, 2), _features(6, 8, 3)
    loss = F.cross_entropy(art.logit_scale() * art.scores(r, m, t), torch.arange(6))
    loss.backward()
    for name, p in art.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_artemis_refuses_mismatched_features():
    with pytest.raises(ConfigError, match="d=8"):
        Artemis(8).scores(torch.zeros(2, 8), torch.zeros(2, 8), torch.zeros(3, 4))
    with pytest.raises(ConfigError, match="one reference, caption and target"):
        Artemis(8).pairwise(torch.zeros(2, 8), torch.zeros(2, 8), torch.zeros(3, 8))


# ------------------------------------------------------------------------- training over in-batch targets

def _synthetic_task(n=256, d=16, seed=0):
    """target = reference with the caption's edit applied (a fixed random linear map of the caption)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(n, d, generator=g)
    m = torch.randn(n, d, generator=g)
    edit = torch.randn(d, d, generator=g) / math.sqrt(d)
    return r, m, r + 2 * m @ edit


def _train(model, batch_loss, steps=150, lr=1e-3, batch=64):
    r, m, t = _synthetic_task()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(1)
    model.train()
    losses = []
    for _ in range(steps):
        idx = torch.randperm(len(r), generator=g)[:batch]
        loss = batch_loss(r[idx], m[idx], t[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses[:10]) / 10, sum(losses[-10:]) / 10


def test_tirg_in_batch_loss_decreases():
    torch.manual_seed(0)
    tirg = TIRG(16)

    def batch_loss(r, m, t):  # the kit's contrastive loss: 100 * q @ normalize(t).T, label i for row i
        logits = 100 * tirg(r, m) @ F.normalize(t, dim=-1).T
        return F.cross_entropy(logits, torch.arange(len(r)))

    first, last = _train(tirg, batch_loss)
    assert last < 0.5 * first, (first, last)


def test_artemis_in_batch_loss_decreases():
    torch.manual_seed(0)
    art = Artemis(16)

    def batch_loss(r, m, t):  # (B, B) scores of the batch, scaled by the learned temperature
        return F.cross_entropy(art.logit_scale() * art.scores(r, m, t), torch.arange(len(r)))

    first, last = _train(art, batch_loss, lr=5e-3)
    assert last < 0.7 * first, (first, last)
