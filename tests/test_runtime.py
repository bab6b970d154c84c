"""The runtime rewrites a built model from outside: the precision decision reaches a model only
through `apply_precision` (two models in one process can take different attention paths), and
the int8 converter's QKV module answers the model's call as the fp32 one does."""
from __future__ import annotations

import copy

import pytest
import torch

from runtime import precision
from runtime.precision import SHORT_ATTENTION, Precision, apply_precision, decide
from runtime.quantize import SmoothedInt8Linear
from tests.tiny import TAGS, ragged_batch
from xlmr.config import XLMRConfig
from xlmr.model import QKVProjection, XLMRForTokenClassification

VOCAB = 120


def tiny_model(seed: int = 0) -> XLMRForTokenClassification:
    torch.manual_seed(seed)
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64)
    return XLMRForTokenClassification(config).eval()


def test_the_attention_path_is_each_models_own():
    """bf16 on a CPU: the model given the matrix-product path computes exactly what the spelled-out
    (manual) attention computes, while its twin in the same process keeps the fused kernel."""
    by_matmul = apply_precision(tiny_model(), Precision(torch.bfloat16, "bf16: test", attention_by_matmul=True))
    fused = apply_precision(copy.deepcopy(by_matmul), Precision(torch.bfloat16, "bf16: test", attention_by_matmul=False))
    manual = copy.deepcopy(fused)
    manual.encoder.set_manual_attention(True)
    assert by_matmul.encoder.layers[0].attn.matmul_attention_up_to == SHORT_ATTENTION
    assert fused.encoder.layers[0].attn.matmul_attention_up_to == 0
    ids, mask, _ = ragged_batch(VOCAB, 1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, spelled, kernel = (m(ids, mask)[0] for m in (by_matmul, manual, fused))
    assert torch.equal(got, spelled)
    torch.testing.assert_close(got.float(), kernel.float(), atol=0.05, rtol=0.05)  # the same maths, rounded apart


def test_a_decision_is_recorded_and_taken_back_without_probing(monkeypatch):
    made = decide("off", torch.device("cpu"))
    assert made.dtype is None and made.record() == {"amp": "fp32", "reason": "fp32: --amp off",
                                                    "attention_by_matmul": None}
    monkeypatch.setattr(precision, "choose", lambda *a: pytest.fail("a recorded decision is not probed again"))
    again = decide("auto", torch.device("cpu"), recorded=made.record())
    assert again.record() == made.record() and again.reused and again.why.endswith("(decided when the run started)")


def test_the_int8_qkv_module_answers_the_models_call():
    """The fp32 projection returns Q, K, V; its int8 replacement returns three tensors of the
    same shapes and nearly the same values, so SelfAttention calls either without knowing."""
    qkv = tiny_model().encoder.layers[0].attn.qkv
    assert isinstance(qkv, QKVProjection)
    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0))
    int8 = SmoothedInt8Linear(qkv, x.abs().amax((0, 1)), parts=3)
    with torch.no_grad():
        want, got = qkv(x), int8(x)
    assert len(got) == 3 and [t.shape for t in got] == [t.shape for t in want]
    for g, w in zip(got, want):
        assert (g - w).abs().max() < 0.05 * w.abs().max()
