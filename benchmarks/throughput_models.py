"""The models `benchmarks/throughput.py` times: its sizes, ours and transformers' with the same
random weights, a fresh compiled copy per cell, and the precisions a device computes natively."""
from __future__ import annotations

import copy

import torch

from loaders.panx import TAGS
from runtime.compile import compile_layers
from runtime.devices import cuda_bf16_native
from runtime.precision import cpu_capability
from xlmr.config import XLMRConfig
from xlmr.keymap import hf_to_ours
from xlmr.model import XLMRForTokenClassification

# Hugging Face configurations of the sizes measured (e5-small is multilingual-e5-small's shape;
# tiny is for a check that must run in seconds on a CPU, and is never a default).
SIZES = {
    "e5-small": {"model_type": "bert", "vocab_size": 250037, "hidden_size": 384, "num_hidden_layers": 12,
                 "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512,
                 "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0},
    "xlm-roberta-base": {"model_type": "xlm-roberta", "vocab_size": 250002, "hidden_size": 768,
                         "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                         "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
                         "pad_token_id": 1},
    "xlm-roberta-large": {"model_type": "xlm-roberta", "vocab_size": 250002, "hidden_size": 1024,
                          "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
                          "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
                          "pad_token_id": 1},
    "tiny": {"model_type": "xlm-roberta", "vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "intermediate_size": 128, "max_position_embeddings": 514,
             "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1},
}
DEFAULT_SIZES = ("e5-small", "xlm-roberta-base", "xlm-roberta-large")


def build_models(size: str, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours, transformers') for a size, with the same random weights."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    spec = dict(SIZES[size])
    config = AutoConfig.for_model(spec.pop("model_type"), num_labels=len(TAGS), **spec)
    torch.manual_seed(0)
    hf = AutoModelForTokenClassification.from_config(config, attn_implementation="sdpa")
    with torch.device("meta"):  # no second random draw: the weights are copied in below
        ours = XLMRForTokenClassification(XLMRConfig.from_dict(config.to_dict() | {"id2label": dict(enumerate(TAGS))}))
    ours.load_state_dict({k: v.detach().clone() for k, v in hf_to_ours(hf.state_dict()).items()}, assign=True)
    return ours.to(device), hf.to(device)


def compiled_copy(model: XLMRForTokenClassification) -> XLMRForTokenClassification:
    """A copy of `model` with its layers compiled, for one precision and mode. Compiled code is
    kept per function, not per copy, so Dynamo's caches are emptied first: every precision,
    mode and mask case seen by one set of caches would pass its recompile limit (8), after which
    PyTorch runs the frames eagerly without a word. Within one cell there are at most four graphs
    (with and without a mask, each static, then with symbolic sizes)."""
    torch._dynamo.reset()
    compiled = copy.deepcopy(model)
    compile_layers(compiled)
    return compiled


def supported_precisions(device: torch.device) -> list[str]:
    """fp32 everywhere; bf16 where the device computes it natively; fp16 on GPUs. A CPU without
    AVX-512 BF16 or AMX, or a GPU before compute capability 8.0, emulates bf16 far below its fp32
    or fp16 speed, so it is not a cell worth timing."""
    if device.type == "cuda":
        return ["fp32"] + (["bf16"] if cuda_bf16_native(device) else []) + ["fp16"]
    cap = cpu_capability()
    return ["fp32"] + (["bf16"] if cap["avx512_bf16"] or cap["amx"] else [])
