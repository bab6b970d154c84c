"""`--quantize int8`: the encoder's Linear layers in int8, for CPU inference.

Dynamic quantization, as ONNX Runtime's `quantize_dynamic` does it: each weight matrix is stored
in int8 with a scale per output row; each call quantizes its activations on the fly (one range
per call), multiplies in int8 with int32 sums (PyTorch's x86 engine: fbgemm kernels on AVX2 and
AVX-512), and returns fp32. LayerNorm, attention's softmax, the embeddings and the head stay fp32.

Quantizing every Linear as it is costs 2-4 F1 points (German e5-small model, PAN-X validation
sets): a few input channels of a layer carry values 10-100x the others, and one range per call
leaves the rest a couple of bits. Two remedies, each where it measured best, both using input
ranges measured once, on the calibration sentences below, when the model is quantized:
- attention's two products and the feed-forward block's first: as SmoothQuant (Xiao et al.,
  2023), input channel j is divided by s_j = sqrt(max|x_j| / max|w_j|) on the way in and its
  weight column multiplied by it (the product is unchanged), which evens the ranges out;
- the feed-forward block's second product, whose input (the GELU's output) has one channel
  ~20x the others in most layers and quantizes badly even smoothed: as LLM.int8() (Dettmers et
  al., 2022), those few outlier channels are multiplied in fp32 and the rest in int8.
Validation F1 against fp32, same model: de +0.0015, fr +0.0007 (per-matrix int8 without either:
de -0.037, fr -0.023). Test F1 and speed: docs/speed.md.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from xlmr.model import QKVProjection

QUANTIZE_CHOICES = ("off", "int8")
QUANTIZED = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")  # every Linear of every encoder layer
OUTLIER_SPLIT = ("mlp.proj",)  # the others are smoothed
OUTLIER_FACTOR = 3.0  # an outlier channel: its range over 3x the 99th percentile of the channels' ranges

# Sentences of the kind a NER model reads, in a few scripts, to measure each channel's range.
# The outlier channels are the model's, not the text's: any such sample finds them.
CALIBRATION = [
    "Angela Merkel traf am Montag in Berlin den französischen Präsidenten Emmanuel Macron.",
    "Die Deutsche Bahn verbindet Hamburg, Köln und München mit dem ICE.",
    "Le musée du Louvre à Paris accueille chaque année des millions de visiteurs.",
    "Marie Curie a reçu le prix Nobel de chimie en 1911 pour ses travaux à la Sorbonne.",
    "La Ferrari ha sede a Maranello, in provincia di Modena, in Emilia-Romagna.",
    "Umberto Eco insegnò semiotica all'Università di Bologna per molti anni.",
    "Jeff Dean is a computer scientist at Google in Mountain View, California.",
    "The United Nations was founded in 1945 and has its headquarters in New York City.",
    "El Real Madrid ganó la final contra el Atlético en Lisboa.",
    "A Petrobras é uma empresa brasileira com sede no Rio de Janeiro.",
    "Лев Толстой родился в Ясной Поляне и написал «Войну и мир».",
    "北京大学位于中国北京市海淀区，成立于1898年。",
    "ソニーの本社は東京都港区にあります。",
    "삼성전자는 대한민국 수원에 본사를 둔 기업이다.",
    "جامعة القاهرة هي جامعة حكومية في مصر.",
    "महात्मा गांधी का जन्म पोरबंदर, गुजरात में हुआ था।",
    "İstanbul Boğazı Avrupa ile Asya'yı ayırır.",
    "Nelson Mandela alikuwa rais wa kwanza mweusi wa Afrika Kusini.",
    "( 1 ) - Wien , Österreich ' ' 2003 : FC Bayern München – Borussia Dortmund",
]


def _parts(y: torch.Tensor, parts: int):
    """A fused projection's call returns its parts (QKVProjection: Q, K, V); so does its int8 twin."""
    return y if parts == 1 else y.split(y.shape[-1] // parts, dim=-1)


class SmoothedInt8Linear(nn.Module):
    """x -> int8 Linear(x / s) with the weight's columns multiplied by s (the same product)."""

    def __init__(self, linear: nn.Linear, input_max: torch.Tensor, parts: int = 1):
        super().__init__()
        self.parts = parts
        w = linear.weight.detach().float()  # (N, K)
        s = (input_max.clamp_min(1e-5) / w.abs().amax(0).clamp_min(1e-5)).sqrt()  # (K,)
        smoothed = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            smoothed.weight.copy_(w * s)
            smoothed.bias.copy_(linear.bias.detach().float())
        self.register_buffer("inv_scale", 1.0 / s)
        self.linear = _int8(smoothed)

    def forward(self, x: torch.Tensor):
        return _parts(self.linear(x * self.inv_scale), self.parts)  # (..., K) -> (..., N), or its parts


class OutlierSplitInt8Linear(nn.Module):
    """x -> int8 Linear(x without its outlier channels) + x[outliers] @ W[:, outliers]^T in fp32."""

    def __init__(self, linear: nn.Linear, input_max: torch.Tensor, parts: int = 1):
        super().__init__()
        self.parts = parts
        w = linear.weight.detach().float()  # (N, K)
        outliers = (input_max > OUTLIER_FACTOR * torch.quantile(input_max, 0.99)).nonzero().flatten()  # (k,)
        self.register_buffer("outliers", outliers)
        self.register_buffer("outlier_weight", w[:, outliers].t().contiguous())  # (k, N)
        rest = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            rest.weight.copy_(w.index_fill(1, outliers, 0.0))
            rest.bias.copy_(linear.bias.detach().float())
        self.linear = _int8(rest)

    def forward(self, x: torch.Tensor):
        if not len(self.outliers):
            return _parts(self.linear(x), self.parts)
        y = self.linear(x.index_fill(-1, self.outliers, 0.0)) + x.index_select(-1, self.outliers) @ self.outlier_weight
        return _parts(y, self.parts)


def _int8(linear: nn.Linear) -> nn.Module:
    """PyTorch's dynamic int8 Linear (x86 engine), with a scale per output row."""
    with warnings.catch_warnings():  # torch.ao's eager quantization warns of its future; it is the fast path today
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            nn.Sequential(linear), {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8)[0]


def _targets(model):
    """((layer, name), the module that owns it, attribute)."""
    for i, layer in enumerate(model.encoder.layers):
        for name in QUANTIZED:
            block, attr = name.split(".")
            yield (i, name), getattr(layer, block), attr


@torch.no_grad()
def input_ranges(model, tokenizer, sentences=CALIBRATION) -> dict:
    """max |x_j| per input channel of every Linear to be quantized, over the sentences."""
    ranges, hooks = {}, []
    for key, owner, attr in _targets(model):
        def record(module, args, key=key):
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(0).float()  # (K,)
            ranges[key] = torch.maximum(ranges[key], x) if key in ranges else x
        hooks.append(getattr(owner, attr).register_forward_pre_hook(record))
    try:
        model.eval()
        for text in sentences:
            ids = torch.tensor([tokenizer.encode(text)], device=next(model.parameters()).device)
            model(ids, torch.ones_like(ids))
    finally:
        for h in hooks:
            h.remove()
    return ranges


def quantize_for_inference(model: nn.Module, tokenizer, quantize: str, device) -> tuple[nn.Module, str]:
    """(the model, a line saying what was done). CPU only. The encoder's Linear modules are
    replaced from outside, each by an int8 module with the same call (a fused QKV projection's
    returns its three parts), so the model's code does not know."""
    if quantize == "off":
        return model, "weights fp32"
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"--quantize {quantize!r}; choose from {', '.join(QUANTIZE_CHOICES)}")
    if torch.device(device).type != "cpu":
        raise ValueError("--quantize int8 runs on CPUs only (PyTorch's dynamic int8 kernels are CPU kernels)")
    model = model.float().eval()
    ranges = input_ranges(model, tokenizer)
    for key, owner, attr in list(_targets(model)):
        kind = OutlierSplitInt8Linear if key[1] in OUTLIER_SPLIT else SmoothedInt8Linear
        linear = getattr(owner, attr)
        setattr(owner, attr, kind(linear, ranges[key], parts=3 if isinstance(linear, QKVProjection) else 1))
    return model, (f"encoder Linear layers int8 (dynamic, {torch.backends.quantized.engine} engine; smoothed, "
                   f"outlier channels of {', '.join(OUTLIER_SPLIT)} in fp32); embeddings, norms and head fp32")
