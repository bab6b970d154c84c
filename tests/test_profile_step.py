"""benchmarks/profile_step.py: operators put in the kind the docs name, and the phases timed
without the profiler adding up to the step they were cut from."""
from __future__ import annotations

import pytest

from benchmarks import profile_step


@pytest.mark.parametrize("op,phase,kind", [
    ("aten::addmm", "forward", "matrix products"),
    ("aten::bmm", "backward", "matrix products"),
    ("aten::_softmax", "forward", "attention"),
    ("aten::_scaled_dot_product_flash_attention_for_cpu", "forward", "attention"),
    ("aten::index_select", "forward", "embedding"),
    ("aten::nll_loss_forward", "forward", "loss"),
    ("aten::native_layer_norm", "forward", "elementwise and normalisation"),
    ("aten::mul", "optimizer", "optimizer"),  # inside the update, every operator is the update's
    ("aten::addmm", "clipping", "clipping"),
])
def test_kind_of(op, phase, kind):
    assert profile_step.kind_of(op, phase) == kind


def test_the_phases_add_up_to_the_unprofiled_step(small_panx, spm_path, tmp_path, monkeypatch):
    """The tiny model on real German batches: forward + backward + update, timed one by one,
    is the step timed whole (the loop around them costs next to nothing), and every kind
    the report names is there."""
    out = tmp_path / "profile.md"
    monkeypatch.setitem(profile_step.SIZES["tiny"], "vocab_size", 250002)  # the real vocabulary's ids
    assert profile_step.main(["--data-dir", str(small_panx), "--size", "tiny", "--amp", "off", "--spm", str(spm_path),
                              "--batches", "2", "--warmup", "1", "--steps", "3", "--output", str(out)]) == 0
    text = out.read_text()
    train = text.split("### Training step")[1].split("### Inference")[0]
    line = next(l for l in train.splitlines() if "without the profiler" in l)  # "X ms per step without the profiler (forward a, backward b, ...), Y under it"
    plain = float(line.split(" ms per step")[0])
    phases = line.split("(")[1].split(")")[0].split(", ")
    assert [p.rsplit(" ", 1)[0] for p in phases] == ["forward", "backward", "clipping and optimizer"]
    total = sum(float(p.rsplit(" ", 1)[1]) for p in phases)
    assert 0.8 * plain <= total <= plain * 1.01 + 0.2
    for kind in ("matrix products", "optimizer", "host"):
        assert f"| {kind} |" in train
