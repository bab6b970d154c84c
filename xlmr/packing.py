"""Where the real tokens of a right-padded batch sit, read on the host, and attention over each
sentence's own tokens without padding (variable-length attention).

Shapes: B sentences, T padded length, N real tokens, D any feature size, H hidden size,
nh heads, hs head size.

The model drops padding around the work done token by token and, with `jagged_attention`, in
attention too. Which positions are real is a host-side fact (it sizes the packed tensors), so
it is read where the host already has it: from the sentence lengths the collator padded (no
wait for the device at all), or from the attention mask, which costs nothing on a CPU; a mask
on a GPU is copied to the host once per forward pass, the one wait for the device left then.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def host_mask(attention_mask: torch.Tensor, lengths: Sequence[int] | torch.Tensor | None) -> torch.Tensor:
    """(B, T) bool on the CPU, True at real tokens. `lengths` are those of right-padded rows (as
    PaddingCollator pads them); where the mask is on the CPU they are checked against it, on an
    accelerator they are trusted (checking would wait for the device)."""
    B, T = attention_mask.shape
    if lengths is None:
        return attention_mask.detach().to("cpu").bool()  # on an accelerator: waits for it, once
    lengths = torch.as_tensor(lengths, device="cpu").long()
    if lengths.shape != (B,):
        raise ValueError(f"lengths has {tuple(lengths.shape)} entries for a batch of {B} sentences")
    if B and not (lengths.min() >= 0 and lengths.max() <= T):
        raise ValueError(f"lengths {lengths.tolist()} must lie within 0..{T}, the batch's padded length")
    mask = torch.arange(T) < lengths[:, None]  # (B, T)
    if attention_mask.device.type == "cpu" and not torch.equal(mask, attention_mask.bool()):
        raise ValueError(f"lengths {lengths.tolist()} do not match the attention mask: rows must be right-padded, "
                         "each with its real tokens first")
    return mask


class RealTokens:
    """Where the N real tokens of a padded (B, T) batch sit, so that the work done token by token
    (projections, feed-forward, LayerNorm: nearly all of a layer's FLOPs) runs on those N alone.
    Batches not sorted by length can be a fifth or more padding (a whole length-sorted PAN-X pass
    is ~4%); the real tokens' values are unchanged (padding is never attended to), and padding
    positions come out as zeros. Everything here is computed on the host; what the device needs
    (`index`, `offsets`) is copied to it once, when first asked for, without waiting for it."""

    def __init__(self, attention_mask: torch.Tensor, lengths: Sequence[int] | torch.Tensor | None = None):
        self.B, self.T = attention_mask.shape
        self.device = attention_mask.device
        mask = host_mask(attention_mask, lengths)  # (B, T) on the CPU
        self._flat = mask.reshape(-1).nonzero().squeeze(1)  # (N,) flat positions in B*T
        self._counts = mask.sum(1)  # (B,) real tokens per sentence
        self.N = self._flat.numel()
        self.all_real = self.N == self.B * self.T
        self.longest = int(self._counts.max()) if self.B else 0
        self.shortest = int(self._counts.min()) if self.B else 0

    @functools.cached_property
    def index(self) -> torch.Tensor:
        return self._flat.to(self.device, non_blocking=True)  # (N,)

    @functools.cached_property
    def offsets(self) -> torch.Tensor:
        """(B + 1,): where each sentence's tokens start in the packed (N, ...) rows, and N."""
        return F.pad(self._counts.cumsum(0), (1, 0)).to(self.device, non_blocking=True)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.B * self.T, -1).index_select(0, self.index)  # (B, T, D) -> (N, D)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        # (N, D) -> (B, T, D); zeros, not garbage, at padding: a masked key's weight is 0, and 0 x NaN is NaN
        out = x.new_zeros(self.B * self.T, x.shape[-1])
        return out.index_copy_(0, self.index, x).view(self.B, self.T, -1)


def jagged_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, real: RealTokens, heads: int,
                     dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(QK^T / sqrt(hs)) V of each sentence over its own tokens, on the packed tokens:
    q, k, v (N, H) -> (N, H), the same values as masked attention over the padded batch.

    scaled_dot_product_attention on nested jagged tensors (B, nh, {T_b}, hs), built from the
    packed rows and `real.offsets` (their longest and shortest lengths given, so that nothing is
    read back from the device). On CUDA it runs FlashAttention's or the memory-efficient kernel's
    variable-length form, with dropout (which torch.nn.attention.varlen.varlen_attn, CUDA-only,
    does not take); on a CPU, PyTorch's math path: right, but far slower than padded attention
    (runtime/attention.py). The math path needs contiguous inputs, hence the copies of Q, K and V
    (views into the fused projection's output); the fused kernels would read the views directly,
    and the copies are small next to the products."""
    def jagged(t):  # (N, H) -> (B, nh, {T_b}, hs)
        nt = torch.nested.nested_tensor_from_jagged(t.contiguous(), real.offsets, min_seqlen=real.shortest,
                                                    max_seqlen=real.longest)
        return nt.unflatten(-1, [heads, -1]).transpose(1, 2)

    y = F.scaled_dot_product_attention(jagged(q), jagged(k), jagged(v), dropout_p=dropout_p)  # (B, nh, {T_b}, hs)
    return y.transpose(1, 2).flatten(-2).values()  # (N, H)
