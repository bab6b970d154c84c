"""Key names between Hugging Face checkpoints and ours, in both directions.

The conversion is a plain table from the source's key names to ours (`{}` is the layer index),
as in gpt-fast's convert_hf_checkpoint.py. Query, key and value are the one exception: they are
fused into one (3H, H) projection, in `_fuse_qkv`, and split again in `ours_to_hf`.
"""
from __future__ import annotations

import re

import torch

from .config import BERT_FAMILY, XLMRConfig

# Hugging Face key (body prefix removed) -> our key; {} is the layer index. Query, key and value
# are not here: they are fused into one matrix in `_fuse_qkv`.
HF_TO_OURS = {
    "embeddings.word_embeddings.weight": "encoder.embeddings.word.weight",
    "embeddings.position_embeddings.weight": "encoder.embeddings.position.weight",
    "embeddings.token_type_embeddings.weight": "encoder.embeddings.token_type.weight",
    "embeddings.LayerNorm.weight": "encoder.embeddings.norm.weight",
    "embeddings.LayerNorm.bias": "encoder.embeddings.norm.bias",
    "encoder.layer.{}.attention.output.dense.weight": "encoder.layers.{}.attn.proj.weight",
    "encoder.layer.{}.attention.output.dense.bias": "encoder.layers.{}.attn.proj.bias",
    "encoder.layer.{}.attention.output.LayerNorm.weight": "encoder.layers.{}.attn_norm.weight",
    "encoder.layer.{}.attention.output.LayerNorm.bias": "encoder.layers.{}.attn_norm.bias",
    "encoder.layer.{}.intermediate.dense.weight": "encoder.layers.{}.mlp.fc.weight",
    "encoder.layer.{}.intermediate.dense.bias": "encoder.layers.{}.mlp.fc.bias",
    "encoder.layer.{}.output.dense.weight": "encoder.layers.{}.mlp.proj.weight",
    "encoder.layer.{}.output.dense.bias": "encoder.layers.{}.mlp.proj.bias",
    "encoder.layer.{}.output.LayerNorm.weight": "encoder.layers.{}.mlp_norm.weight",
    "encoder.layer.{}.output.LayerNorm.bias": "encoder.layers.{}.mlp_norm.bias",
    "classifier.weight": "classifier.weight",
    "classifier.bias": "classifier.bias",
}
HF_QKV = "encoder.layer.{}.attention.self.{}.{}"  # layer, query|key|value, weight|bias
OURS_QKV = "encoder.layers.{}.attn.qkv.{}"  # layer, weight|bias
# Parts of Hugging Face checkpoints that token classification does not use.
HF_UNUSED = re.compile(r"^(pooler\.|lm_head\.|cls\.|embeddings\.position_ids$|qa_outputs\.)")
BODY_PREFIXES = ("roberta.", "xlm_roberta.", "bert.", "")


class CheckpointError(ValueError):
    pass


def _template_regex(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(r"\{\}", r"(\d+)") + "$")


_HF_PATTERNS = [(_template_regex(hf), ours) for hf, ours in HF_TO_OURS.items()]
_OURS_PATTERNS = [(_template_regex(ours), hf) for hf, ours in HF_TO_OURS.items()]
_HF_QKV = re.compile(r"^encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)$")
_OURS_QKV = re.compile(r"^encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)$")


def hf_to_ours(hf: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    prefix = next((p for p in BODY_PREFIXES if f"{p}embeddings.word_embeddings.weight" in hf), None)
    if prefix is None:
        raise CheckpointError(f"{source}: no embeddings.word_embeddings.weight under any of {BODY_PREFIXES}")
    ours, qkv, unexpected = {}, {}, []
    for key, tensor in hf.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        if HF_UNUSED.match(name):
            continue
        if m := _HF_QKV.match(name):
            qkv[(int(m[1]), m[2], m[3])] = tensor
            continue
        for pattern, target in _HF_PATTERNS:
            if m := pattern.match(name):
                ours[target.format(*m.groups())] = tensor
                break
        else:
            unexpected.append(key)
    if unexpected:
        raise CheckpointError(f"{source}: unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    ours.update(_fuse_qkv(qkv, source))
    return ours


def _fuse_qkv(qkv: dict[tuple, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Stack query, key and value of each layer into one (3H, H) weight and (3H,) bias, in that
    order: the model splits the projection's output the same way."""
    fused = {}
    for layer in sorted({k[0] for k in qkv}):
        for kind in ("weight", "bias"):
            parts = [(HF_QKV.format(layer, p, kind), qkv.get((layer, p, kind))) for p in ("query", "key", "value")]
            missing = [name for name, t in parts if t is None]
            if missing:
                raise CheckpointError(f"{source}: missing keys {missing}")
            fused[OURS_QKV.format(layer, kind)] = torch.cat([t for _, t in parts], dim=0)
    return fused


def ours_to_hf(ours: dict[str, torch.Tensor], config: XLMRConfig) -> dict[str, torch.Tensor]:
    prefix = "bert." if config.model_type in BERT_FAMILY else "roberta."
    hf = {}
    for key, tensor in ours.items():
        if m := _OURS_QKV.match(key):
            for part, t in zip(("query", "key", "value"), tensor.chunk(3, dim=0)):
                hf[prefix + HF_QKV.format(m[1], part, m[2])] = t.contiguous()
            continue
        for pattern, target in _OURS_PATTERNS:
            if m := pattern.match(key):
                name = target.format(*m.groups())
                hf[name if name.startswith("classifier.") else prefix + name] = tensor.contiguous()
                break
        else:
            raise CheckpointError(f"no Hugging Face name for our key {key!r}")
    return hf
