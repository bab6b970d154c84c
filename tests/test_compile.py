"""The compiled path (torch.compile on the encoder layers) against eager PyTorch: logits in
evaluation, loss and every gradient in training, over batches of several lengths, with and
without padding; and how many times it compiles."""
from __future__ import annotations

import copy

import pytest
import torch

from loaders.collate import PaddingCollator
from tests.tiny import TAGS, ragged_batch
from runtime.compile import BUCKET, bucket_multiple, choose, compile_layers, is_compiled
from xlmr.config import XLMRConfig
from xlmr.model import XLMRForTokenClassification

VOCAB = 300
# Ragged batches of different longest lengths (two length buckets), and one without padding.
LENGTHS = [(9, 4, 13), (30, 2, 17), (40, 33, 7, 12), (6, 6, 6)]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    eager = XLMRForTokenClassification(config)
    compiled = copy.deepcopy(eager)
    torch._dynamo.reset()
    compile_layers(compiled)
    return eager, compiled


def bucketed(lengths, seed):
    """A ragged batch padded the way the compiled path pads it: to a multiple of BUCKET."""
    ids, mask, labels = ragged_batch(VOCAB, 1, lengths, seed=seed)
    rows = [{"input_ids": ids[i, :n].tolist(), "labels": labels[i, :n].tolist()} for i, n in enumerate(lengths)]
    return PaddingCollator(pad_to_multiple_of=BUCKET)(rows)


def test_compiled_logits_equal_eager(models):
    eager, compiled = models
    assert is_compiled(compiled) and not is_compiled(eager)
    assert bucket_multiple(compiled) == BUCKET and bucket_multiple(eager) is None
    eager.eval(), compiled.eval()
    for seed, lengths in enumerate(LENGTHS):
        batch = bucketed(lengths, seed)
        with torch.no_grad():
            want = eager(batch["input_ids"], batch["attention_mask"])[0]
            got = compiled(batch["input_ids"], batch["attention_mask"])[0]
        real = batch["attention_mask"].bool()
        torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-4)


def test_compiled_training_gradients_equal_eager(models):
    eager, compiled = models
    eager.train(), compiled.train()
    for seed, lengths in enumerate(LENGTHS):
        batch = bucketed(lengths, 10 + seed)
        grads = []
        for model in (eager, compiled):
            model.zero_grad(set_to_none=True)
            _, loss = model(batch["input_ids"], batch["attention_mask"], batch["labels"])
            loss.backward()
            grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
        (want_loss, want), (got_loss, got) = grads
        torch.testing.assert_close(got_loss, want_loss, atol=1e-6, rtol=1e-5)
        for name in want:
            torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_layers_share_one_graph_and_lengths_do_not_recompile():
    """Three layers, six lengths: the layers compile as one graph, once static and once with
    symbolic sizes, whatever the number of layers and lengths."""
    torch.manual_seed(1)
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=VOCAB, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64)
    model = XLMRForTokenClassification(config).eval()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compile_layers(model)
    with torch.no_grad():
        for seed, lengths in enumerate([(5, 3), (40, 3), (70, 9), (12, 2), (100, 50), (33, 4)]):
            batch = bucketed(lengths, seed)
            model(batch["input_ids"], batch["attention_mask"])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 2


def test_compile_choice():
    compiled, why = choose("auto", torch.device("cpu"))
    assert compiled is False and "cpu" in why  # measured not to pay for itself on CPUs (xlmr/compile.py)
    assert choose("on", torch.device("cpu"))[0] is True
    assert choose("off", torch.device("cpu"))[0] is False
    with pytest.raises(ValueError, match="--compile"):
        choose("sometimes", torch.device("cpu"))
