"""Evaluation and analysis of fine-tuned checkpoints, one job per module:

    scoring.py   seqeval's entity-level scores from tag sequences (imports seqeval only)
    predict.py   the model over an encoded dataset, no gradients; `evaluate` = predict + score
    reports.py   text, JSON and CSV files written atomically; plain-text tables
    errors.py    error analysis: per-token losses, losses by token and label, confusion matrix
    plots.py     PNG figures (the only importer of matplotlib, which is optional)

Layering: this package uses `xlmr` and `loaders`; the training loop uses `predict` and
`scoring` from here, and nothing here imports the training loop.
"""
