"""Which floating-point precision a forward (and backward) pass runs in, decided in one place
(`decide`) and handed on as a `Precision`: the autocast dtype, why, and the CPU bf16 attention path.

Training, evaluation, tagging and the service all take the same `--amp` choice:
- `auto` on CUDA: bf16 where the GPU supports it, else fp16 (training adds a gradient scaler);
- `auto` on a CPU: bf16 only where the CPU computes it natively (AMX or AVX-512 BF16) *and* a
  short matrix-product probe finds it faster than fp32; else fp32. A CPU without those
  instructions emulates bf16 at a small fraction of its fp32 speed (measured: ~1 GFLOP/s against
  132 on an AVX2-only AMD EPYC), so autocast would make every step several times slower there;
- `bf16`, `fp16`, `off`: as asked.
The decision reaches a model only through `apply_precision` and the autocast dtype its caller
passes on; the model reads no global. A training run records `Precision.record()` in its state,
so a resumed run and every DDP rank reuse it instead of probing again.
"""
from __future__ import annotations

import functools
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn

from xlmr.model import SelfAttention

from . import attention
from .devices import cuda_bf16_native, wait_for

AMP_CHOICES = ("auto", "bf16", "fp16", "off")


def cpu_capability() -> dict:
    """The CPU's native low-precision instructions, as PyTorch detects them."""
    cpu = torch.cpu
    return {"avx2": cpu._is_avx2_supported(), "avx512": cpu._is_avx512_supported(),
            "avx512_bf16": cpu._is_avx512_bf16_supported(), "amx": cpu._is_amx_tile_supported()}


def probe_rates(dtypes: tuple, n: int = 512, rounds: int = 5, device="cpu") -> dict:
    """{dtype: GFLOP/s}: the quickest of `rounds` (n x n) @ (n x n) products per dtype, taken in
    turn (fp32, bf16, fp32, bf16, ...) so that a burst of other work on a shared machine slows
    both alike. One after the other, a busy spell during the second dtype's products made a
    probe read bf16 at 34 GFLOP/s against fp32 at 153 on a CPU whose bf16 is ~4x its fp32."""
    device = torch.device(device)
    g = torch.Generator().manual_seed(0)  # a probe must not move the global random state
    pairs = {d: tuple(torch.randn(n, n, generator=g).to(device, d) for _ in range(2)) for d in dtypes}
    for a, b in pairs.values():
        a @ b  # warm-up: kernel selection, first-touch of the output
    best = dict.fromkeys(dtypes, float("inf"))
    for _ in range(rounds):
        for d, (a, b) in pairs.items():
            wait_for(device)
            t0 = time.perf_counter()
            a @ b
            wait_for(device)
            best[d] = min(best[d], time.perf_counter() - t0)
    return {d: 2 * n**3 / s / 1e9 for d, s in best.items()}


def matmul_gflops(dtype: torch.dtype, n: int = 512, repeats: int = 5, device="cpu") -> float:
    """The best of a few (n x n) @ (n x n) products, in GFLOP/s."""
    return probe_rates((dtype,), n, repeats, device)[dtype]


@functools.lru_cache(maxsize=None)
def cpu_choice() -> tuple[torch.dtype | None, str]:
    """(dtype, why) for `--amp auto` on this CPU; probed once per process."""
    cap = cpu_capability()
    if not (cap["avx512_bf16"] or cap["amx"]):
        return None, "fp32: this CPU has no native bf16 (no AVX-512 BF16, no AMX), so bf16 would be emulated"
    rates = probe_rates((torch.float32, torch.bfloat16), rounds=7)
    fp32, bf16 = rates[torch.float32], rates[torch.bfloat16]
    measured = f"probe: bf16 {bf16:.0f} GFLOP/s, fp32 {fp32:.0f}"
    if bf16 > 1.2 * fp32:
        return torch.bfloat16, f"bf16: native on this CPU ({'AMX' if cap['amx'] else 'AVX-512 BF16'}); {measured}"
    return None, f"fp32: bf16 is native here but not faster ({measured})"


SHORT_ATTENTION = 256  # tokens: up to here the probe below decides; longer sequences keep the fused kernel


@functools.lru_cache(maxsize=None)
def cpu_bf16_attention_by_matmul() -> bool:
    """Whether this CPU runs bf16 attention over short sequences faster as two matrix products
    (softmax(QK^T / sqrt(hs)) V, spelled out) than through scaled_dot_product_attention's fused
    CPU kernel. Measured on an AMD EPYC with AVX-512 BF16: 8 x 12 heads x 128 tokens x 64, fused
    6.1 ms, matrix products 3.0 ms; at 512 tokens the fused kernel wins (65 against 86 ms).
    Machines differ, so it is measured (~0.1 s, at 128 tokens) once per process, for `decide`."""
    return _measure_attention()


def _measure_attention() -> bool:
    if not (cpu_capability()["avx512_bf16"] or cpu_capability()["amx"]):
        return False  # bf16 is emulated there; --amp auto does not choose it
    g = torch.Generator().manual_seed(0)  # a probe must not move the global random state (dropout, resume)
    q, k, v = (torch.randn(8, 12, 128, 64, generator=g).to(torch.bfloat16) for _ in range(3))

    def fused():
        torch.nn.functional.scaled_dot_product_attention(q, k, v)

    def products():
        ((q @ k.transpose(-2, -1)) * 0.125).softmax(-1) @ v

    best = {}
    with torch.no_grad():
        for name, f in (("fused", fused), ("products", products)) * 2:  # the first pass warms up
            t0 = time.perf_counter()
            for _ in range(3):
                f()
            best[name] = time.perf_counter() - t0
    return best["products"] < best["fused"]


def choose(name: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """(autocast dtype or None for fp32, why) for an `--amp` choice on a device: the dtype half
    of `decide`, which callers use."""
    device = torch.device(device)
    if name == "off":
        return None, "fp32: --amp off"
    if name in ("bf16", "fp16"):
        return {"bf16": torch.bfloat16, "fp16": torch.float16}[name], f"{name}: --amp {name}"
    if name != "auto":
        raise ValueError(f"unknown --amp {name!r}; choose from {', '.join(AMP_CHOICES)}")
    if device.type == "cuda":
        if cuda_bf16_native(device):
            return torch.bfloat16, "bf16: native on this GPU"
        return torch.float16, "fp16 with a gradient scaler: this GPU has no native bf16"
    if device.type == "cpu":
        return cpu_choice()
    return None, f"fp32: no autocast choice for {device.type}"


DTYPE_NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def dtype_named(name: str) -> torch.dtype | None:
    """The autocast dtype of a recorded precision name ("fp32" is None: no autocast)."""
    return {v: k for k, v in DTYPE_NAMES.items()}[name]


def amp_dtype_for(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for an `--amp` choice on a device; None means plain fp32."""
    return decide(name, device).dtype


@dataclass(frozen=True)
class Precision:
    """One decision, passed explicitly to whatever runs the model: the autocast dtype (None: fp32),
    why, for bf16 on a CPU whether short attention is spelled out as matrix products (None
    where the question does not arise), and whether attention runs over each sentence's own
    tokens (runtime/attention.py, with its reason). `reused` marks a decision read back from a
    run's state; the attention kernel is chosen again for the device at hand (it does not change
    the values, and a run saved on a GPU may resume on a CPU)."""
    dtype: torch.dtype | None
    reason: str
    attention_by_matmul: bool | None = None
    reused: bool = False
    varlen: bool = False
    attention_reason: str = ""

    @property
    def matmul_attention_up_to(self) -> int:
        """SelfAttention.matmul_attention_up_to for this decision: tokens, 0 for never."""
        return SHORT_ATTENTION if self.attention_by_matmul else 0

    @property
    def why(self) -> str:
        attention = f"; {self.attention_reason}" if self.varlen else ""  # said where it is not the default
        return f"{self.reason}{attention}" + (" (decided when the run started)" if self.reused else "")

    def record(self) -> dict:
        """What a training state keeps (its keys are read back by `decide`)."""
        return {"amp": DTYPE_NAMES[self.dtype], "reason": self.reason, "attention_by_matmul": self.attention_by_matmul}


def decide(amp: str, device: torch.device, recorded: dict | None = None) -> Precision:
    """The one place precision is decided: the `--amp` choice on this device, with the CPU bf16
    attention probe; or, given a decision a run recorded (`Precision.record()`), that decision
    again without probing: a busy machine can time the probes differently from one call to the
    next, and one run must not switch precision or attention code half-way."""
    device = torch.device(device)
    varlen, attention_reason = attention.choose("auto", device)
    if recorded is not None:
        return Precision(dtype_named(recorded["amp"]), recorded["reason"], recorded["attention_by_matmul"], reused=True,
                         varlen=varlen, attention_reason=attention_reason)
    dtype, reason = choose(amp, device)
    by_matmul = cpu_bf16_attention_by_matmul() if device.type == "cpu" and dtype == torch.bfloat16 else None
    return Precision(dtype, reason, by_matmul, varlen=varlen, attention_reason=attention_reason)


def apply_precision(model: nn.Module, precision: Precision) -> nn.Module:
    """Sets the decision's attention path on a model, in place: short attention spelled out or
    not, on every attention block, and variable-length attention or not; the dtype itself goes
    to autocast, by whoever runs the model."""
    for module in model.modules():
        if isinstance(module, SelfAttention):
            module.matmul_attention_up_to = precision.matmul_attention_up_to
    if hasattr(model, "encoder"):
        attention.apply_attention(model, precision.varlen)
    return model


def autocast_for(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for the dtype, or a context that changes nothing when it is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def cast_linears_for_inference(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """For a model that will only run inference under autocast(dtype): store every nn.Linear's
    weight and bias in that dtype, in place. Autocast otherwise casts the fp32 weights again on
    every forward (e5-small: 21M values, ~18% of a bf16 forward of 8 x 32 tokens on 2 cores of an
    AMD EPYC with AVX-512 BF16).
    The results are identical: autocast passes a tensor already in its dtype through, so the
    products see the same values. LayerNorm, the embeddings and whatever autocast keeps in fp32
    stay fp32. `None` (fp32 inference) changes nothing. Not for a model that is still trained."""
    if dtype is not None:
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.to(dtype)
    return model
