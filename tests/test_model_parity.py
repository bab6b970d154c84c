"""Our modules against transformers' with the same weights, copied through the real converter."""
from __future__ import annotations

import pytest
import torch

from tiny import hf_config, hf_model, ragged_batch, save_hf
from xlmr.convert import convert
from xlmr.keymap import ours_to_hf
from xlmr.weights import load_model


def both_models(tmp_path, config):
    hf = hf_model(config)
    save_hf(hf, tmp_path / "hf")
    convert(tmp_path / "hf", tmp_path / "ours")
    ours = load_model(tmp_path / "ours").eval()
    return hf, ours


def forward_backward(model, ids, mask, labels, ours: bool):
    model.zero_grad(set_to_none=True)
    if ours:
        logits, loss = model(ids, mask, labels=labels)
    else:
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        logits, loss = out.logits, out.loss
    loss.backward()
    return logits.detach(), loss.detach()


def assert_parity(hf, ours, ids, mask, labels, manual: bool):
    ours.encoder.set_manual_attention(manual)
    ref_logits, ref_loss = forward_backward(hf, ids, mask, labels, ours=False)
    logits, loss = forward_backward(ours, ids, mask, labels, ours=True)
    real = mask.bool()
    assert (logits[real] - ref_logits[real]).abs().max().item() <= 1e-5
    torch.testing.assert_close(loss, ref_loss)
    our_grads = ours_to_hf({n: p.grad for n, p in ours.named_parameters()}, ours.config)
    ref_grads = {n: p.grad for n, p in hf.named_parameters() if p.grad is not None}
    assert set(our_grads) == set(ref_grads)
    for name, g in ref_grads.items():
        torch.testing.assert_close(our_grads[name], g, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
@pytest.mark.parametrize("manual", [False, True], ids=["sdpa", "manual"])
def test_tiny_parity(tmp_path, model_type, manual):
    hf, ours = both_models(tmp_path, hf_config(model_type))
    ids, mask, labels = ragged_batch(hf.config.vocab_size, hf.config.pad_token_id if model_type == "bert" else 1)
    assert_parity(hf, ours, ids, mask, labels, manual)


@pytest.mark.parametrize("model_type", ["xlm-roberta", "bert"])
@pytest.mark.parametrize("manual", [False, True], ids=["sdpa", "manual"])
def test_inference_parity(tmp_path, model_type, manual):
    """Without gradients, fp32 on CPU, our encoder runs a padded batch on its real tokens alone
    (RealTokens) and takes Q, K and V as three products: the logits still match transformers',
    with padding and without (where the mask is dropped)."""
    hf, ours = both_models(tmp_path, hf_config(model_type))
    hf.eval()
    ours.encoder.set_manual_attention(manual)
    pad = hf.config.pad_token_id if model_type == "bert" else 1
    ids, mask, _ = ragged_batch(hf.config.vocab_size, pad)
    full = mask.all(dim=1)
    for batch_ids, batch_mask in ((ids, mask), (ids[full], mask[full])):
        assert batch_ids.shape[0] > 0
        with torch.inference_mode():
            ref = hf(input_ids=batch_ids, attention_mask=batch_mask).logits
            logits, _ = ours(batch_ids, batch_mask)
            hidden = ours.encoder(batch_ids, batch_mask)
        real = batch_mask.bool()
        assert (logits[real] - ref[real]).abs().max().item() <= 1e-5
        assert not hidden[~real].any()  # padding positions come out as zeros


@pytest.mark.slow  # two 278M-parameter models and a 1.1 GB checkpoint: ~2 minutes on 2 cores
def test_base_sized_parity(tmp_path):
    """xlm-roberta-base's shapes (278M parameters, random weights), both attention paths."""
    from transformers import XLMRobertaConfig

    config = XLMRobertaConfig(vocab_size=250002, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                              id2label={i: f"T{i}" for i in range(7)}, label2id={f"T{i}": i for i in range(7)})
    hf, ours = both_models(tmp_path, config)
    ids, mask, labels = ragged_batch(config.vocab_size, 1, lengths=(17, 6, 11))
    for manual in (False, True):
        assert_parity(hf, ours, ids, mask, labels, manual)


def test_roberta_positions_skip_padding():
    """Worked by hand: positions start at padding_idx + 1 = 2 and padding keeps position 1."""
    from xlmr.config import XLMRConfig
    from xlmr.model import position_ids_for

    ids = torch.tensor([[0, 50, 2, 1, 1], [0, 7, 8, 9, 2]])
    expected = torch.tensor([[2, 3, 4, 1, 1], [2, 3, 4, 5, 6]])
    assert torch.equal(position_ids_for(ids, XLMRConfig()), expected)
    bert = XLMRConfig(model_type="bert", pad_token_id=0, type_vocab_size=2)
    assert torch.equal(position_ids_for(ids, bert), torch.arange(5).expand(2, 5))


def test_real_tokens_by_hand():
    from xlmr.model import RealTokens

    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    real = RealTokens(mask)
    x = torch.arange(12.0).view(2, 3, 2)  # (B, T, D) = (2, 3, 2); position p holds [2p, 2p + 1]
    packed = real.unpad(x)
    assert torch.equal(packed, torch.tensor([[0.0, 1.0], [2.0, 3.0], [6.0, 7.0]]))  # positions 0, 1, 3
    expected = torch.tensor([[[0.0, 1.0], [2.0, 3.0], [0.0, 0.0]], [[6.0, 7.0], [0.0, 0.0], [0.0, 0.0]]])
    assert torch.equal(real.pad(packed), expected)
