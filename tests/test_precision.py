"""`--amp auto`: never bf16 on a CPU that would emulate it, and the probe's decision here."""
from __future__ import annotations

import pytest
import torch

from tests.tiny import TAGS
from runtime import precision


@pytest.fixture(autouse=True)
def fresh_choice():
    precision.cpu_choice.cache_clear()
    yield
    precision.cpu_choice.cache_clear()


def test_auto_is_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_capability",
                        lambda: {"avx2": True, "avx512": False, "avx512_bf16": False, "amx": False})
    probed = []
    monkeypatch.setattr(precision, "matmul_gflops", lambda dtype, **kw: probed.append(dtype) or 100.0)
    dtype, why = precision.choose("auto", torch.device("cpu"))
    assert dtype is None and "no native bf16" in why
    assert probed == []  # the (slow, emulated) bf16 probe is not even run


def test_auto_follows_the_probe_where_bf16_is_native(monkeypatch):
    monkeypatch.setattr(precision, "cpu_capability",
                        lambda: {"avx2": True, "avx512": True, "avx512_bf16": True, "amx": False})
    speeds = {torch.float32: 150.0, torch.bfloat16: 140.0}
    monkeypatch.setattr(precision, "matmul_gflops", lambda dtype, **kw: speeds[dtype])
    assert precision.choose("auto", torch.device("cpu"))[0] is None  # native but not faster
    precision.cpu_choice.cache_clear()
    speeds[torch.bfloat16] = 400.0
    assert precision.choose("auto", torch.device("cpu"))[0] == torch.bfloat16


def test_the_decision_on_this_machine_matches_a_measurement():
    cap = precision.cpu_capability()
    dtype, why = precision.choose("auto", torch.device("cpu"))
    if not (cap["avx512_bf16"] or cap["amx"]):
        assert dtype is None
        return
    # An independent measurement with larger matrices: bf16 is chosen only where it is clearly faster.
    fp32 = precision.matmul_gflops(torch.float32, n=768, repeats=3)
    bf16 = precision.matmul_gflops(torch.bfloat16, n=768, repeats=3)
    if bf16 > 2 * fp32:  # margins: both measurements share the machine with whatever else runs
        assert dtype == torch.bfloat16, why
    elif bf16 < 0.8 * fp32:
        assert dtype is None, why


def test_explicit_choices():
    cpu = torch.device("cpu")
    assert precision.amp_dtype_for("off", cpu) is None
    assert precision.amp_dtype_for("bf16", cpu) == torch.bfloat16
    assert precision.amp_dtype_for("fp16", cpu) == torch.float16
    with pytest.raises(ValueError, match="unknown --amp"):
        precision.choose("fp8", cpu)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_linears_cast_for_inference_give_the_same_logits(dtype):
    """Autocast with fp32 weights against weights cast once: bit-identical logits, and the
    LayerNorms and embeddings left in fp32."""
    from tests.tiny import ragged_batch
    from xlmr.config import XLMRConfig
    from xlmr.model import XLMRForTokenClassification

    torch.manual_seed(0)
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64)
    fp32 = XLMRForTokenClassification(config).eval()
    cast = precision.cast_linears_for_inference(XLMRForTokenClassification(config).eval(), dtype)
    cast.load_state_dict(fp32.state_dict())  # copies the values in, keeping each parameter's dtype
    assert cast.classifier.weight.dtype == dtype and cast.encoder.layers[0].attn.qkv.bias.dtype == dtype
    assert cast.encoder.layers[0].attn_norm.weight.dtype == torch.float32
    assert cast.encoder.embeddings.word.weight.dtype == torch.float32
    ids, mask, _ = ragged_batch(200, 1)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        want, got = fp32(ids, mask)[0], cast(ids, mask)[0]
    assert torch.equal(got, want)
