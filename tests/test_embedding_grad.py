"""The row-sparse word-embedding gradient trains exactly like PyTorch's dense one."""
from __future__ import annotations

import torch

from tests.tiny import TAGS, ragged_batch
from xlmr.config import XLMRConfig
from training.embedding_grad import RowSparseGrad
from xlmr.model import XLMRForTokenClassification


def tiny_model() -> XLMRForTokenClassification:
    torch.manual_seed(0)
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return XLMRForTokenClassification(config)


def micro_batches(step: int):
    # Two micro-batches per step (gradient accumulation), with padding, so that rows repeat within
    # and across micro-batches and the padding row must stay without gradient.
    return [ragged_batch(300, 1, lengths, seed=10 * step + k) for k, lengths in enumerate([(9, 4, 13), (7, 7, 2, 5)])]


def train_steps(model, sparse: bool, steps: int = 3):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01, fused=True)
    word_grad = RowSparseGrad(model.encoder.embeddings.word) if sparse else None
    grads = []
    for step in range(steps):
        for ids, mask, labels in micro_batches(step):
            model(ids, mask, labels)[1].backward()
        if word_grad:
            word_grad.densify()
        grads.append(model.encoder.embeddings.word.weight.grad.clone())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if word_grad:
            word_grad.clear()
            assert not word_grad.buffer.any(), "the buffer must be all zero between steps"
    return grads


def test_row_sparse_training_equals_dense():
    dense, sparse = tiny_model(), tiny_model()
    sparse.load_state_dict(dense.state_dict())
    dense_grads = train_steps(dense, sparse=False)
    sparse_grads = train_steps(sparse, sparse=True)
    for step, (d, s) in enumerate(zip(dense_grads, sparse_grads)):
        assert not s.is_sparse
        assert s[1].abs().max() == 0, "the padding row gets no gradient"
        torch.testing.assert_close(s, d, msg=lambda m: f"step {step}: {m}")
    for (name, a), b in zip(dense.named_parameters(), sparse.parameters()):
        torch.testing.assert_close(b, a, msg=lambda m: f"{name}: {m}")
    # The weights did move: the comparison is not between two untouched copies.
    assert not torch.equal(dense.encoder.embeddings.word.weight, tiny_model().encoder.embeddings.word.weight)

