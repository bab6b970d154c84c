"""The model as ONNX, for those who deploy with ONNX Runtime: `python -m runtime.onnx_export RUN DIR`.

The folder holds model.onnx (inputs input_ids and attention_mask, both (batch, length) int64;
output logits (batch, length, labels) fp32; batch and length dynamic), config.json with the
labels (id2label) and the tokenizer's files, as Hugging Face's ONNX folders do. It needs the
`onnx` extra (onnx, onnxscript), which torch's exporter uses.

The exported graph is the padded forward pass: every position is computed and padding is masked
out of attention. Our eager inference drops padding before the layers (RealTokens), a
data-dependent shape that ONNX graphs cannot hold; the logits agree where the mask is 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn as nn

from xlmr.atomic import write_atomic
from xlmr.model import XLMRForTokenClassification
from xlmr.weights import CheckpointError, load_model, resolve_folder, tokenizer_file_in, write_hf_companions

ONNX_FILE = "model.onnx"
OPSET = 18


class PaddedLogits(nn.Module):
    """(input_ids, attention_mask) -> logits, with the mask always applied: no branch on the
    data, so one graph serves every batch."""

    def __init__(self, model: XLMRForTokenClassification):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        encoder = self.model.encoder
        x = encoder.embeddings(input_ids)  # (B, T, H)
        key_mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        for layer in encoder.layers:
            x = layer(x, key_mask)
        return self.model.classifier(x)  # (B, T, C)


def export_onnx(model: XLMRForTokenClassification, folder, tokenizer_file=None) -> Path:
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it; a clear message beats its own)
    except ImportError:
        raise RuntimeError("the ONNX export needs the onnx extra: pip install -e '.[onnx]'") from None
    folder = Path(folder)
    wrapped = PaddedLogits(model).eval()
    c = model.config
    ids = torch.full((2, 8), 5, dtype=torch.long)
    ids[:, 0], ids[:, -1] = 0, 2
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    batch = torch.export.Dim("batch", min=1, max=4096)
    length = torch.export.Dim("length", min=2, max=c.max_position_embeddings - c.position_offset)
    # Traced with gradients enabled on purpose: fp32 inference without them computes Q, K and V as
    # three products on slices of the fused weight (xlmr.model.QKVProjection), which in a graph
    # would slice the constant weight on every run; with them the graph has one fused product.
    with torch.enable_grad():
        program = torch.onnx.export(wrapped, (ids, mask), dynamo=True, opset_version=OPSET, external_data=False,
                                    dynamic_shapes=({0: batch, 1: length}, {0: batch, 1: length}),
                                    input_names=["input_ids", "attention_mask"], output_names=["logits"])
    write_hf_companions(c, folder, tokenizer_file)
    write_atomic(folder / ONNX_FILE, lambda p: program.save(str(p)))
    return folder / ONNX_FILE


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.onnx_export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="our checkpoint folder (a fine-tuned run), or a Hugging Face folder or hub id")
    p.add_argument("dst", help="folder to write model.onnx, config.json and the tokenizer files into")
    args = p.parse_args(argv)
    try:
        folder = resolve_folder(args.src)
        export_onnx(load_model(folder).eval(), args.dst, tokenizer_file=tokenizer_file_in(folder))
    except (CheckpointError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
