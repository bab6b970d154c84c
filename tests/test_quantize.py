"""`--quantize int8`: the encoder's Linear layers become dynamically quantized int8 layers (the
head stays fp32), the logits stay close to fp32's, and the tagger finds the same entities on a
confident model."""
from __future__ import annotations

import copy

import torch

from tests.test_serving import SENTENCES, confident_checkpoint
from xlmr.quantize import ready_for_inference
from xlmr.tagger import Tagger
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import load_model


def test_int8_encoder_close_to_fp32(spm_path, tmp_path):
    folder = confident_checkpoint(tmp_path / "m", spm_path)
    fp32 = load_model(folder).eval()
    int8, amp, why = ready_for_inference(copy.deepcopy(fp32), "cpu", "auto", "int8")
    assert amp is None and "int8" in why
    kinds = {type(m).__name__ for m in int8.encoder.modules()}
    assert "Linear" in kinds and not any(isinstance(m, torch.nn.Linear) for m in int8.encoder.modules())
    assert isinstance(int8.classifier, torch.nn.Linear)

    tok = XLMRTokenizer(folder)
    ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(tok.encode(s)) for s in SENTENCES], batch_first=True,
                                          padding_value=fp32.config.pad_token_id)
    mask = ids.ne(fp32.config.pad_token_id).long()
    with torch.no_grad():
        a, b = fp32(ids, mask)[0], int8(ids, mask)[0]
    real = mask.bool()
    # int8 weights with per-matrix scales: a few percent of the logits' spread, not more.
    assert (a[real] - b[real]).abs().max() < 0.05 * a[real].abs().max()
    assert (a[real].argmax(-1) == b[real].argmax(-1)).float().mean() > 0.95

    same = [e.type for t in Tagger(fp32, tok)(SENTENCES) for e in t.entities]
    assert same and same == [e.type for t in Tagger(int8, tok)(SENTENCES) for e in t.entities]
