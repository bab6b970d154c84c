"""xlmr/dropout.py: the same distribution as F.dropout, with half the random draws on a CPU."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from xlmr.config import XLMRConfig
from xlmr.model import XLMRForTokenClassification
import xlmr.dropout
from xlmr.dropout import LEVELS, bernoulli_is_parallel, drop_threshold, dropout


@pytest.fixture(autouse=True)
def draws_one_at_a_time(monkeypatch):
    """These tests are of the half-draw path, which an Intel CPU would not take."""
    monkeypatch.setattr(xlmr.dropout, "bernoulli_is_parallel", lambda: False)


def test_the_drop_rate_and_the_scale_are_those_of_the_16_bit_threshold():
    """Over 2 million elements, the share dropped is round(p * 32768) / 32768 to within 4
    standard deviations, in the even and in the odd positions (the two halves of a draw), and
    every kept element is x / (1 - that share), exactly."""
    torch.manual_seed(0)
    p, n = 0.1, 2_000_001  # odd: the last 32-bit draw serves one element
    x = torch.full((n,), 3.0)
    y = dropout(x, p)
    rate = drop_threshold(p) / LEVELS
    assert drop_threshold(p) == 3277 and LEVELS == 32768
    for half in (y[0::2], y[1::2]):
        dropped = (half == 0).double().mean().item()
        assert abs(dropped - rate) < 4 * (rate * (1 - rate) / half.numel()) ** 0.5
    assert torch.equal(torch.unique(y[y != 0]), torch.tensor([3.0 * 32768 / (32768 - 3277)]))


def test_neighbouring_elements_are_independent():
    """Two elements share one draw: each half must decide alone. Over 1M pairs the share with
    both dropped is rate^2 (not rate, as it would be were they one draw), whatever the rate."""
    torch.manual_seed(1)
    for p in (0.5, 0.1, 0.9):
        y = dropout(torch.ones(2_000_000), p).view(-1, 2)
        both = ((y[:, 0] == 0) & (y[:, 1] == 0)).double().mean().item()
        assert both == pytest.approx(p * p, abs=0.003)


def test_the_gradient_is_the_forward_mask():
    torch.manual_seed(2)
    x = torch.randn(64, 48, requires_grad=True)
    y = dropout(x, 0.3)
    g = torch.randn_like(y)
    y.backward(g)
    kept = y.detach() != 0
    scale = LEVELS / (LEVELS - drop_threshold(0.3))
    assert torch.allclose(x.grad, torch.where(kept, g * scale, torch.zeros(())))


def test_eval_and_p0_are_the_identity_and_the_draws_follow_the_seed():
    x = torch.randn(10, 7)
    assert dropout(x, 0.1, training=False) is x and dropout(x, 0.0) is x
    torch.manual_seed(3)
    a = dropout(x, 0.1)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(x, 0.1))  # a resumed run, its generator restored, draws the same masks


def test_bf16_keeps_its_dtype():
    y = dropout(torch.ones(1000, dtype=torch.bfloat16), 0.1)
    assert y.dtype == torch.bfloat16


class Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.__name__)
        return func(*args, **(kwargs or {}))


def test_a_training_step_on_a_cpu_makes_no_per_element_bernoulli_draws():
    """The model's dropouts, attention's included, go through xlmr/dropout.py: a training forward
    and backward on a padded batch call no bernoulli."""
    config = XLMRConfig(id2label={i: f"T{i}" for i in range(4)}, vocab_size=20, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=24, max_position_embeddings=16)
    model = XLMRForTokenClassification(config).train()  # XLM-R's dropouts: 0.1 everywhere
    ids = torch.tensor([[0, 5, 6, 7, 2], [0, 8, 2, 1, 1]])
    mask = (ids != 1).long()
    labels = torch.tensor([[-100, 1, 0, 2, -100], [-100, 3, -100, -100, -100]])
    with Ops() as ops:
        model(ids, mask, labels)[1].backward()
    assert "random_.default" in ops.names
    assert not any(name.startswith("bernoulli") or name.startswith("native_dropout") for name in ops.names), ops.names


def test_where_pytorch_draws_in_parallel_its_own_dropout_is_kept(monkeypatch):
    """On an Intel CPU F.dropout's Bernoulli draws are MKL's, split over the threads: no half draws."""
    monkeypatch.setattr(xlmr.dropout, "bernoulli_is_parallel", lambda: True)
    with Ops() as ops:
        y = dropout(torch.ones(10_000), 0.1)
    assert "random_.default" not in ops.names and any(n.startswith(("bernoulli", "native_dropout")) for n in ops.names)
    assert 0.08 < (y == 0).float().mean().item() < 0.12


@pytest.mark.parametrize("vendor, mkl, parallel", [("GenuineIntel", True, True), ("AuthenticAMD", True, False),
                                                   ("GenuineIntel", False, False)])
def test_the_vendor_and_mkl_decide_as_pytorch_does(monkeypatch, tmp_path, vendor, mkl, parallel):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: avx2\n")
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: mkl)
    try:
        assert bernoulli_is_parallel(str(info)) is parallel
    finally:
        bernoulli_is_parallel.cache_clear()  # the answer for this path was cached under the patched MKL
