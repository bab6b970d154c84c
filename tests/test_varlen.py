"""Variable-length attention (xlmr/packing.py, runtime/attention.py) against transformers' padded,
masked attention with the same weights: fp32 logits within 1e-5 and every gradient within 1e-4,
on a batch of very different lengths with a one-token sentence, and on batches without padding;
attention dropout still applied; and the forward pass reading nothing back from the device
once the host has given the lengths."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from runtime import attention
from runtime.compile import compile_layers
from runtime.precision import apply_precision, decide
from tiny import TAGS, hf_config, hf_model, ragged_batch
from xlmr.config import XLMRConfig
from xlmr.keymap import hf_to_ours, ours_to_hf
from xlmr.model import XLMRForTokenClassification
from xlmr.packing import RealTokens

pytest.importorskip("transformers")

BATCHES = {
    "spread": (61, 3, 40, 1, 17, 9),  # 131 real tokens in 6 x 61 positions, one sentence of one token
    "no padding": (12, 12, 12),
    "one token each": (1, 1),
}


def both(model_type: str, dropout: float = 0.0):
    """(transformers' model, ours) with the same random weights, in training mode."""
    hf = hf_model(hf_config(model_type, dropout=dropout))
    ours = XLMRForTokenClassification(XLMRConfig.from_dict(hf.config.to_dict()))
    ours.load_state_dict(hf_to_ours(hf.state_dict()))
    return hf, ours


def batch_of(hf, lengths, seed: int = 0):
    """ids, mask, labels of a right-padded batch: <s> ... </s> rows with labels between; a
    one-token row is a single labelled word (ragged_batch needs two tokens for <s> and </s>)."""
    g = torch.Generator().manual_seed(seed)
    B, T = len(lengths), max(lengths)
    ids = torch.full((B, T), hf.config.pad_token_id, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(5, hf.config.vocab_size, (n,), generator=g)
        labels[i, :n] = torch.randint(0, len(TAGS), (n,), generator=g)
        if n > 2:
            ids[i, 0], ids[i, n - 1] = 0, 2
            labels[i, 0] = labels[i, n - 1] = -100
    mask = (torch.arange(T) < torch.tensor(lengths)[:, None]).long()
    return ids, mask, labels


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
@pytest.mark.parametrize("name", list(BATCHES))
def test_varlen_logits_equal_padded_attention(model_type, name):
    hf, ours = both(model_type)
    hf.eval(), ours.eval()
    attention.apply_attention(ours, True)
    ids, mask, _ = batch_of(hf, BATCHES[name])
    lengths = mask.sum(1).tolist()
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).logits
        got = ours(ids, mask, lengths=lengths)[0]
        from_mask = ours(ids, mask)[0]  # the lengths read off the mask instead
    real = mask.bool()
    assert (got[real] - want[real]).abs().max().item() <= 1e-5
    assert torch.equal(from_mask, got)


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
@pytest.mark.parametrize("name", list(BATCHES))
def test_varlen_training_gradients_equal_padded_attention(model_type, name):
    """Training mode (dropout 0, so both are deterministic): the loss, the logits and every
    parameter's gradient, through padding dropped in every layer and jagged attention."""
    hf, ours = both(model_type)
    hf.train(), ours.train()
    attention.apply_attention(ours, True)
    ids, mask, labels = batch_of(hf, BATCHES[name])
    out = hf(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    logits, loss = ours(ids, mask, labels, lengths=mask.sum(1).tolist())
    loss.backward()
    real = mask.bool()
    assert (logits[real] - out.logits[real]).abs().max().item() <= 1e-5
    torch.testing.assert_close(loss, out.loss, atol=1e-6, rtol=1e-6)
    grads = ours_to_hf({n: p.grad for n, p in ours.named_parameters()}, ours.config)
    want = {n: p.grad for n, p in hf.named_parameters() if p.grad is not None}
    assert set(grads) == set(want)
    worst = max(((grads[n] - g).abs().max().item(), n) for n, g in want.items())
    assert worst[0] <= 1e-4, worst


def test_varlen_training_applies_attention_dropout():
    """Attention dropout (p = 0.5) on the packed path: one attention block's output moves by
    about its own size against evaluation mode (dropout not skipped), and the same seed draws
    the same weights."""
    torch.manual_seed(0)
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=300, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=4, intermediate_size=48, attention_probs_dropout_prob=0.5)
    block = XLMRForTokenClassification(config).encoder.layers[0].attn
    mask = torch.tensor([[1] * 9 + [0] * 4, [1] * 4 + [0] * 9, [1] * 13])
    real = RealTokens(mask)
    x = torch.randn(real.N, 32)  # (N, H)
    with torch.no_grad():
        clean = block.eval()(x, None, real, jagged=True)  # (N, H)
        block.train()
        torch.manual_seed(1)
        dropped = block(x, None, real, jagged=True)
        torch.manual_seed(1)
        again = block(x, None, real, jagged=True)
    assert (dropped - clean).abs().mean() > 0.3 * clean.abs().mean()
    assert torch.equal(dropped, again)


def meta_model(varlen: bool) -> XLMRForTokenClassification:
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=300, hidden_size=64, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64)  # dropout 0.1, as trained
    with torch.device("meta"):
        model = XLMRForTokenClassification(config)
    model.encoder.varlen = varlen
    return model


@pytest.mark.parametrize("varlen", [False, True], ids=["padded", "varlen"])
@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_the_forward_reads_nothing_back_from_the_device(varlen, training):
    """A model and batch on the meta device stand for a GPU whose values the host cannot read
    without waiting: any read (bool(mask.all()), nonzero(), .item(), a copy to the host) raises
    there. With the lengths given, the padded path, the packed inference path and variable-
    length attention, forward and backward, must run through. FlopCounterMode makes jagged
    attention take its FlashAttention branch, the code CUDA runs, with its meta kernels."""
    model = meta_model(varlen).train(training)
    ids = torch.full((3, 9), 5, device="meta")
    mask = torch.ones(3, 9, dtype=torch.long, device="meta")
    with torch.set_grad_enabled(training), FlopCounterMode(display=False) as flops:
        logits, _ = model(ids, mask, lengths=[5, 1, 9])
        if training:
            logits.sum().backward()
    assert logits.shape == (3, 9, len(TAGS)) and flops.get_total_flops() > 0
    with pytest.raises(NotImplementedError, match="meta"), torch.set_grad_enabled(training):
        model(ids, mask)  # without the lengths the mask itself must be read: the test can tell


def test_lengths_that_do_not_match_the_mask_are_refused():
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert RealTokens(mask, [3, 1]).N == 4
    with pytest.raises(ValueError, match="do not match the attention mask"):
        RealTokens(mask, [2, 2])
    with pytest.raises(ValueError, match="right-padded"):
        RealTokens(torch.tensor([[0, 1, 1]]), [2])  # left padding: the lengths cannot say where
    with pytest.raises(ValueError, match="2 sentences"):
        RealTokens(mask, [3])
    with pytest.raises(ValueError, match="within 0..3"):
        RealTokens(mask, [4, 1])


def test_real_tokens_offsets_by_hand():
    real = RealTokens(torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]))
    assert real.offsets.tolist() == [0, 3, 4, 8] and real.index.tolist() == [0, 1, 2, 4, 8, 9, 10, 11]
    assert (real.N, real.shortest, real.longest, real.all_real) == (8, 1, 4, False)
    assert RealTokens(torch.ones(2, 3, dtype=torch.long)).all_real


def test_auto_chooses_varlen_on_cuda_with_a_fused_kernel(monkeypatch):
    assert attention.choose("auto", "cpu")[0] is False
    assert attention.choose("varlen", "cpu")[0] is True and attention.choose("padded", "cuda")[0] is False
    monkeypatch.setattr(torch.backends.cuda, "flash_sdp_enabled", lambda: True)
    monkeypatch.setattr(torch.backends.cuda, "mem_efficient_sdp_enabled", lambda: False)
    assert attention.choose("auto", "cuda:1")[0] is True
    monkeypatch.setattr(torch.backends.cuda, "flash_sdp_enabled", lambda: False)
    varlen, why = attention.choose("auto", "cuda")
    assert not varlen and "disabled" in why
    with pytest.raises(ValueError, match="unknown attention 'jagged'"):
        attention.choose("jagged", "cpu")


def test_the_precision_decision_carries_the_attention_to_the_model(monkeypatch):
    """decide() picks the attention for the device (CUDA: varlen), apply_precision sets it, and
    compiled layers keep the padded path."""
    monkeypatch.setattr(torch.backends.cuda, "flash_sdp_enabled", lambda: True)
    model = meta_model(False)
    cuda = decide("off", torch.device("cuda"))
    assert cuda.varlen and "varlen attention" in cuda.why
    assert apply_precision(model, cuda).encoder.varlen
    assert not apply_precision(model, decide("off", torch.device("cpu"))).encoder.varlen
    again = decide("auto", torch.device("cuda"), recorded={"amp": "bf16", "reason": "bf16: saved", "attention_by_matmul": None})
    assert again.varlen and again.why.endswith("(decided when the run started)")
    compiled = copy.deepcopy(apply_precision(model, cuda))
    compile_layers(compiled)
    assert not compiled.encoder.varlen and model.encoder.varlen
