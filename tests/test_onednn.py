"""runtime/onednn.py: oneDNN's prepacked fp32 products give the model's logits, and are used
only where the probe finds them faster."""
from __future__ import annotations

import copy

import pytest
import torch

from runtime import onednn
from xlmr.config import XLMRConfig
from xlmr.model import QKVProjection, XLMRForTokenClassification

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")


def tiny_model() -> XLMRForTokenClassification:
    torch.manual_seed(0)
    config = XLMRConfig(id2label={i: f"T{i}" for i in range(5)}, vocab_size=40, hidden_size=24, num_hidden_layers=2,
                        num_attention_heads=3, intermediate_size=40, max_position_embeddings=20)
    return XLMRForTokenClassification(config).eval()


def test_a_prepacked_linear_is_f_linear_for_any_leading_shape():
    lin = torch.nn.Linear(24, 40)
    packed = onednn.PrepackedLinear(lin)
    for shape in ((7, 24), (3, 5, 24)):
        x = torch.randn(*shape)
        with torch.no_grad():
            assert torch.allclose(packed(x), lin(x), atol=1e-5, rtol=1e-5)
            assert packed(x).shape == (*shape[:-1], 40)


def test_a_prepacked_qkv_returns_the_three_parts():
    qkv = QKVProjection(24, 72)
    x = torch.randn(6, 24)
    with torch.no_grad():
        for ours, ref in zip(onednn.PrepackedLinear(qkv)(x), qkv(x)):
            assert ours.shape == ref.shape == (6, 24)
            assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-5)


def test_the_prepacked_model_gives_the_same_logits_on_a_padded_batch(monkeypatch):
    monkeypatch.setattr(onednn, "onednn_speedup", lambda *a, **k: 2.0)
    model = tiny_model()
    packed, why = onednn.prepack_linears(copy.deepcopy(model))
    assert "oneDNN" in why and "2.00x" in why
    assert not any(type(m) is torch.nn.Linear or isinstance(m, QKVProjection) for m in packed.modules())
    ids = torch.tensor([[0, 5, 6, 7, 8, 2], [0, 9, 2, 1, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        assert torch.allclose(packed(ids, mask)[0], model(ids, mask)[0], atol=1e-5)


@pytest.mark.parametrize("speedup", [0.8, 1.0, 1.1])
def test_not_faster_by_more_than_the_margin_keeps_pytorchs_layers(monkeypatch, speedup):
    monkeypatch.setattr(onednn, "onednn_speedup", lambda *a, **k: speedup)
    model, why = onednn.prepack_linears(tiny_model())
    assert not any(isinstance(m, onednn.PrepackedLinear) for m in model.modules())
    assert why.startswith("fp32 products: PyTorch's")


def test_the_probe_returns_a_ratio_of_two_real_timings():
    """On this machine, whatever it is: a positive finite ratio, and the global random state untouched."""
    state = torch.random.get_rng_state()
    onednn.onednn_speedup.cache_clear()
    ratio = onednn.onednn_speedup(32, 64, tokens=64, rounds=2)
    assert 0.0 < ratio < 100.0
    assert torch.equal(torch.random.get_rng_state(), state)
