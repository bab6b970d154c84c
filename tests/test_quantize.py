"""`--quantize int8`: the encoder's Linear layers become dynamically quantized int8 layers (the
head stays fp32), the logits stay close to fp32's, and the tagger finds the same entities on a
confident model."""
from __future__ import annotations

import copy

import torch

from tests.tiny import SENTENCES, confident_checkpoint
from xlmr.quantize import ready_for_inference
from xlmr.tagger import Tagger
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import load_model


def test_int8_encoder_close_to_fp32(spm_path, tmp_path):
    folder = confident_checkpoint(tmp_path / "m", spm_path)
    fp32 = load_model(folder).eval()
    tok = XLMRTokenizer(folder)
    int8, amp, why = ready_for_inference(copy.deepcopy(fp32), "cpu", "auto", "int8", tok)
    assert amp is None and "int8" in why
    for layer in int8.encoder.layers:  # every Linear of the encoder in int8
        assert [type(m).__name__ for m in (layer.attn.qkv, layer.attn.proj, layer.mlp.fc, layer.mlp.proj)] == [
            "SmoothedInt8Linear"] * 3 + ["OutlierSplitInt8Linear"]
    assert isinstance(int8.classifier, torch.nn.Linear)

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


def test_an_outlier_channel_is_kept_out_of_int8():
    """One input channel 100x the others: plain per-matrix int8 loses the small channels; the
    outlier split multiplies that channel in fp32 and keeps the error at int8's usual size."""
    from xlmr.quantize import OutlierSplitInt8Linear, SmoothedInt8Linear, _int8

    g = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(512, 32)  # wide, as the FFN's 1536 inputs: one outlier is above the 99th percentile
    x = torch.randn(200, 512, generator=g)
    x[:, 5] *= 100.0
    ranges = x.abs().amax(0)
    exact = linear(x).detach()
    split = OutlierSplitInt8Linear(linear, ranges)
    assert split.outliers.tolist() == [5]

    def error(module):
        with torch.no_grad():
            return ((module(x) - exact).abs().mean() / exact.abs().mean()).item()

    plain = error(_int8(_copy(linear)))
    assert error(split) < plain / 5
    assert error(SmoothedInt8Linear(linear, ranges)) < plain / 2
    assert error(split) < 0.02


def _copy(linear):
    twin = torch.nn.Linear(linear.in_features, linear.out_features)
    twin.load_state_dict(linear.state_dict())
    return twin


def test_the_service_serves_int8(spm_path, tmp_path):
    from serving.server import build_service

    folder = confident_checkpoint(tmp_path / "m", spm_path)
    service = build_service(folder, amp="auto", quantize="int8")
    assert service.info["precision"] == "int8" and "int8" in service.info["precision_reason"]
    assert type(service.batcher.tagger.model.encoder.layers[0].mlp.fc).__name__ == "SmoothedInt8Linear"
    fp32 = Tagger(load_model(folder), XLMRTokenizer(folder))
    assert [[e.type for e in t.entities] for t in service.batcher.tagger(SENTENCES)] == [
        [e.type for e in t.entities] for t in fp32(SENTENCES)]
