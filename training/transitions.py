"""The tag-transition prior of a run: counted over its training tags, weighted on its validation set.

Constrained Viterbi forbids what IOB2 forbids and treats everything else alike. The training tags
say more: after O the next word opens an entity ~1 time in 15, inside one it goes on ~1 time in 2.
`TransitionPrior` holds those log-probabilities; decoding adds them times a weight. The weight is
the one of WEIGHTS that gives the best validation F1 (the smallest on a tie), so it is chosen on
the training language only, once the checkpoint is final; the word scores are computed once and
decoded per weight. 0 means the constraints alone.

A checkpoint trained before the prior existed is fitted after the fact by training/fit_prior.py.
"""
from __future__ import annotations

from dataclasses import asdict, replace

from evaluation.predict import predict
from evaluation.scoring import entity_scores, tag_names
from xlmr.alignment import spread_to_words
from xlmr.decoding import TransitionPrior, inside_ids
from xlmr.weights import save_config

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def fit_prior(model, train_tags, val_set, batch_size: int = 64, device="cpu", amp_dtype=None,
              progress: bool = False) -> tuple[TransitionPrior, dict[float, float]]:
    """(the prior with its chosen weight, validation F1 per weight). `train_tags`: the training
    sentences' tag ids; `val_set`: the encoded validation set."""
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    counted = TransitionPrior.count(train_tags, len(labels))
    outputs = predict(model, val_set, batch_size, device, amp_dtype, progress=progress, desc="transition weight",
                      decode="iob2", keep_scores=True)
    gold = tag_names([o["gold"] for o in outputs], model.config.id2label)
    inside, outside = inside_ids(labels), labels.index("O") if "O" in labels else 0
    scores, glued = [o["scores"] for o in outputs], [o["glued"] for o in outputs]
    f1 = {}
    for weight in WEIGHTS:
        heads = model.decode(scores, "viterbi", glued, prior=replace(counted, weight=weight))
        words = [t if o["spread"] is None else spread_to_words(t, *o["spread"], inside, outside)
                 for t, o in zip(heads, outputs)]
        f1[weight] = entity_scores(gold, tag_names(words, model.config.id2label))["f1"]
    weight = max(f1, key=lambda w: (f1[w], -w))  # the best F1; the smaller weight on a tie
    return replace(counted, weight=weight), f1


def record(model, prior: TransitionPrior, f1: dict[float, float]) -> dict:
    """Puts the prior in the model's config (saved with it) and returns the summary to report:
    validation F1 per weight. ("open_by_type" stays in the summary, always false, for readers of
    older results.json files.)"""
    model.config.tag_transitions = asdict(prior) | {"validation_f1": {str(w): v for w, v in f1.items()}}
    return {"weight": prior.weight, "open_by_type": False,
            "validation_f1": {str(w): round(v, 4) for w, v in f1.items()}}


def fit_run(run, model) -> dict:
    """At the end of training: fit the prior for the kept checkpoint, save it in config.json."""
    prior, f1 = fit_prior(model, run.train_set["ner_tags"], run.val_set, run.cfg.eval_batch_size, run.device,
                          run.amp_dtype, progress=not run.cfg.no_progress)
    summary = record(model, prior, f1)
    if run.is_main:
        save_config(model.config, run.out)
        print(f"tag-transition prior: weight {prior.weight} "
              f"(validation F1 {f1[0.0]:.4f} at weight 0, {f1[prior.weight]:.4f} with)")
    return summary
