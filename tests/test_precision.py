"""`--amp auto`: never bf16 on a CPU that would emulate it, the 1.2x rule fed given figures, the
probe's arithmetic against a given clock, and the decision here against its own figures."""
from __future__ import annotations

import re

import pytest
import torch

from tests.tiny import TAGS, ragged_batch
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
    monkeypatch.setattr(precision, "probe_rates", lambda dtypes, **kw: probed.extend(dtypes) or dict.fromkeys(dtypes, 100.0))
    dtype, why = precision.choose("auto", torch.device("cpu"))
    assert dtype is None and "no native bf16" in why
    assert probed == []  # the (slow, emulated) bf16 probe is not even run


NATIVE = {"avx2": True, "avx512": True, "avx512_bf16": True, "amx": False}


@pytest.mark.parametrize("bf16,expected", [(60.0, None), (100.0, None), (119.0, None), (121.0, torch.bfloat16),
                                           (400.0, torch.bfloat16)])
def test_auto_takes_bf16_only_above_1_2x_fp32(monkeypatch, bf16, expected):
    """The rule itself, fed the probe's figures (fp32 100 GFLOP/s): bf16 where it is more than
    1.2x as fast, fp32 up to there, and the figures in the reason as measured."""
    monkeypatch.setattr(precision, "cpu_capability", lambda: NATIVE)
    speeds = {torch.float32: 100.0, torch.bfloat16: bf16}
    monkeypatch.setattr(precision, "probe_rates", lambda dtypes, **kw: {d: speeds[d] for d in dtypes})
    dtype, why = precision.choose("auto", torch.device("cpu"))
    assert dtype == expected, why
    assert f"probe: bf16 {bf16:.0f} GFLOP/s, fp32 100" in why
    assert why.startswith("bf16: native on this CPU (AVX-512 BF16)" if expected else "fp32: bf16 is native here")


def test_the_probe_counts_two_n_cubed_flops_over_its_quickest_product(monkeypatch):
    """matmul_gflops against a clock that makes the products take 4, 2 and 3 ms: 2 n^3 FLOPs
    over the quickest, 2 ms."""
    ticks = iter([0.0, 0.004, 1.0, 1.002, 2.0, 2.003])
    monkeypatch.setattr(precision.time, "perf_counter", lambda: next(ticks))
    assert precision.matmul_gflops(torch.float32, n=64, repeats=3) == pytest.approx(2 * 64**3 / 0.002 / 1e9)


def test_the_probe_takes_the_two_precisions_in_turn(monkeypatch):
    """A busy spell must slow both precisions alike: the products alternate fp32, bf16, fp32, ...
    (after one warm-up each), and each dtype keeps its own quickest. Against a clock under which
    every bf16 product but the last is slowed 10x, bf16 still reads its quick one."""
    order = []
    real_matmul = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: order.append(a.dtype) or real_matmul(a, b))
    durations = iter([0.001, 0.010, 0.001, 0.010, 0.001, 0.0005])  # fp32, bf16, fp32, bf16, fp32, bf16
    clock = [0.0]

    def tick():
        clock[0] += next(durations) if tick.started else 0.0
        tick.started = not tick.started
        return clock[0]
    tick.started = False
    monkeypatch.setattr(precision.time, "perf_counter", tick)
    rates = precision.probe_rates((torch.float32, torch.bfloat16), n=16, rounds=3)
    assert order == [torch.float32, torch.bfloat16] * 4  # one warm-up each, then three rounds in turn
    assert rates[torch.float32] == pytest.approx(2 * 16**3 / 0.001 / 1e9)
    assert rates[torch.bfloat16] == pytest.approx(2 * 16**3 / 0.0005 / 1e9)


def test_the_decision_on_this_machine_follows_its_own_measurement():
    """Timings on shared cores swing 10x from one call to the next (a reason why a run keeps its
    first decision), so no second measurement here can overrule the probe's. What holds on every
    machine: without native bf16, fp32 with no probe; with it, the probe's figures are in the
    reason and the decision is the rule's for those figures."""
    cap = precision.cpu_capability()
    dtype, why = precision.choose("auto", torch.device("cpu"))
    if not (cap["avx512_bf16"] or cap["amx"]):
        assert dtype is None and "no native bf16" in why
        return
    measured = re.search(r"probe: bf16 (\d+) GFLOP/s, fp32 (\d+)\)?$", why)
    assert measured, why
    bf16, fp32 = map(float, measured.groups())
    assert bf16 >= 1 and fp32 >= 1, why
    if abs(bf16 - 1.2 * fp32) > 1:  # the reason rounds to whole GFLOP/s
        assert (dtype == torch.bfloat16) == (bf16 > 1.2 * fp32), why


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
