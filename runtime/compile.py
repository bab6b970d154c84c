"""torch.compile for the encoder, one layer at a time, and the length buckets that keep it from
recompiling.

Only the encoder layers are compiled ("regional" compilation). They are the same code with
different weights, and PyTorch treats a module's parameters as graph inputs, so the twelve (or
twenty-four) layers share one compiled graph: it compiles once, not once per layer. The
embedding stays eager, with its row-sparse gradient and RowAdamW's forward hook, and so do the
head and the loss.

A compiled graph is specialised to the shapes it first saw. Batches are padded to a multiple of
`BUCKET` tokens, so PAN-X's lengths (3 to ~200 tokens) fall into a few sizes, and the graph is
compiled with `dynamic=None`: when a second size arrives PyTorch recompiles once with symbolic
sizes, and no later batch recompiles. Training mode, evaluation mode and the no-padding case
(no attention mask) are separate graphs, each compiled once.

`--compile auto` decides per device, and nowhere has it measured to help yet:
- CPUs: off. On 2 cores of an AMD EPYC with AVX-512 BF16, one epoch on 4,800 German sentences
  (bf16) trained in 146 s compiled against 70 s eager, and its validation took 40 s against
  22 s. Compiling costs a minute or more on two cores, and the compiled steps are not faster
  once it is done: 0.80x to 1.09x of eager ones over benchmarks/throughput.py's e5-small grid,
  0.88x (bf16) and 0.93x (fp32) on real German training batches;
- GPUs: off until measured on one; `--compile on` turns it on anywhere.
"""
from __future__ import annotations

import torch

BUCKET = 32
COMPILE_CHOICES = ("auto", "on", "off")


def choose(name: str, device: torch.device) -> tuple[bool, str]:
    """(compile?, why) for a `--compile` choice on a device."""
    if name == "on":
        return True, "compiled: --compile on"
    if name == "off":
        return False, "eager: --compile off"
    if name != "auto":
        raise ValueError(f"unknown --compile {name!r}; choose from {', '.join(COMPILE_CHOICES)}")
    return False, f"eager: --compile auto does not compile on {torch.device(device).type} (not measured to help)"


def compile_layers(model) -> None:
    """Compile every encoder layer of an XLMRForTokenClassification in place. The graphs read the
    attention path (SelfAttention.matmul_attention_up_to) as a constant: set the precision first.
    Compiled layers run the padded path, variable-length attention included (runtime/attention.py):
    packed (N, H) inputs would be one more shape per batch."""
    model.encoder.skip_padding = False
    model.encoder.varlen = False
    for layer in model.encoder.layers:
        layer.compile(dynamic=None)


def compile_if_chosen(model, name: str, device: torch.device) -> tuple[bool, str]:
    """Applies a `--compile` choice to a model: (compiled?, why)."""
    compiled, why = choose(name, device)
    if compiled:
        compile_layers(model)
    return compiled, why


def is_compiled(model) -> bool:
    return any(layer._compiled_call_impl is not None for layer in model.encoder.layers)  # set by Module.compile


def bucket_multiple(model) -> int | None:
    """The collator's pad_to_multiple_of for a model: BUCKET when it is compiled, else None (pad
    only to the longest sentence)."""
    return BUCKET if is_compiled(model) else None
