"""AdamW and clipping per touched row against torch.optim.AdamW and clip_grad_norm_ over 60
steps: weight decay on some groups, the linear schedule, clipping, gradient accumulation, rows
touched for the first time late, and a resume through state_dict in the middle."""
from __future__ import annotations

import io

import torch

from tests.tiny import TAGS, ragged_batch
from training.recipe import linear_schedule
from training.row_adamw import RowAdamW, clip_grad_norm_rows
from xlmr.config import XLMRConfig
from training.embedding_grad import RowSparseGrad
from xlmr.model import XLMRForTokenClassification

VOCAB, STEPS, RESUME_AT = 400, 60, 31


def tiny_model() -> XLMRForTokenClassification:
    torch.manual_seed(0)
    config = XLMRConfig(id2label=dict(enumerate(TAGS)), vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return XLMRForTokenClassification(config)


def micro_batches(step: int):
    """Two micro-batches a step. Until step 40 only ids below 150 occur; then the rest of the
    vocabulary too, so many rows are touched for the first time late."""
    vocab = 150 if step < 40 else VOCAB
    return [ragged_batch(vocab, 1, lengths, seed=10 * step + k) for k, lengths in enumerate([(9, 4, 13), (7, 7, 2)])]


def groups(model):
    decay = [p for n, p in model.named_parameters() if not (n.endswith(".bias") or "norm." in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith(".bias") or "norm." in n]
    return [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]


def backward(model, step):
    for ids, mask, labels in micro_batches(step):
        (model(ids, mask, labels)[1] / 2).backward()


def reference_run(model):
    opt = torch.optim.AdamW(groups(model), lr=3e-3, foreach=False)
    sched = linear_schedule(opt, 0, STEPS)
    norms = []
    for step in range(STEPS):
        backward(model, step)
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return opt, norms


def row_setup(model, state=None):
    row_grad = RowSparseGrad(model.encoder.embeddings.word)
    opt = RowAdamW(groups(model), row_grad, lr=3e-3)
    sched = linear_schedule(opt, 0, STEPS)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    return row_grad, opt, sched


def row_steps(model, row_grad, opt, sched, steps):
    norms = []
    for step in steps:
        backward(model, step)
        row_grad.densify()
        norms.append(clip_grad_norm_rows(list(model.parameters()), row_grad, 0.5))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        row_grad.clear()
    return norms


def test_row_adamw_equals_adamw_with_clipping_schedule_accumulation_and_resume():
    reference, ours = tiny_model(), tiny_model()
    ref_opt, ref_norms = reference_run(reference)

    row_grad, opt, sched = row_setup(ours)
    norms = row_steps(ours, row_grad, opt, sched, range(RESUME_AT))
    # Resume: everything through serialised state dicts, into a fresh model and optimizer.
    buf = io.BytesIO()
    torch.save({"model": ours.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
    buf.seek(0)
    resumed = tiny_model()
    row_grad, opt, sched = row_setup(resumed, torch.load(buf, weights_only=False))
    norms += row_steps(resumed, row_grad, opt, sched, range(RESUME_AT, STEPS))
    opt.materialize()

    torch.testing.assert_close(torch.stack(norms), torch.stack(ref_norms))
    assert max(ref_norms) > 0.5, "clipping must have been active at some step"
    word = resumed.encoder.embeddings.word.weight
    for (name, a), b in zip(reference.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(b, a, msg=lambda m: f"{name}: {m}")
        state = ref_opt.state[a]
        if b is word:
            ours_m, ours_v = opt.row_moments()
        else:
            ours_m, ours_v = opt.dense.state[b]["exp_avg"], opt.dense.state[b]["exp_avg_sq"]
        torch.testing.assert_close(ours_m, state["exp_avg"], msg=lambda m: f"{name} exp_avg: {m}")
        torch.testing.assert_close(ours_v, state["exp_avg_sq"], msg=lambda m: f"{name} exp_avg_sq: {m}")
    # Late rows were touched for the first time after step 40; rows never touched exist too.
    active = opt.row_state["active"]
    assert active[150:].any() and not active.all()
    # Untouched rows only decayed: w0 * prod(1 - lr_t * wd).
    never = (~active).nonzero().squeeze(1)
    lrs = [3e-3 * (STEPS - s) / STEPS for s in range(STEPS)]
    factor = torch.tensor([1 - lr * 0.1 for lr in lrs], dtype=torch.float64).prod().float()
    torch.testing.assert_close(word[never], tiny_model().encoder.embeddings.word.weight[never] * factor)
