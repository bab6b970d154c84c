"""Fit the tag-transition prior of a checkpoint trained without one (training/transitions.py):
the run's results.json names its training and validation data.

    python -m training.fit_prior runs/de
    python -m training.fit_prior runs/de/best-epoch          # results.json is one folder up
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import load_model, save_config

from .config import TrainConfig
from .prepare import load_data
from .transitions import fit_prior, record


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] + " " + __doc__.split("\n")[1])
    p.add_argument("model", help="checkpoint folder to fit the prior for (its config.json is rewritten)")
    p.add_argument("--run", help="the run folder whose results.json names the training data (default: the "
                   "model folder, or the one above it)")
    args = p.parse_args(argv)
    model_dir = Path(args.model)
    run_dir = Path(args.run) if args.run else next((d for d in (model_dir, model_dir.parent)
                                                    if (d / "results.json").is_file()), model_dir)
    results = run_dir / "results.json"
    if not results.is_file():
        print(f"error: no results.json in {run_dir}: pass --run with the run that trained {model_dir}", file=sys.stderr)
        return 1
    recorded = json.loads(results.read_text())["config"]
    cfg = TrainConfig(**{f.name: recorded[f.name] for f in fields(TrainConfig) if f.name in recorded})
    model = load_model(model_dir).eval()
    if model.learns_transitions:
        print(f"error: {model_dir}: its head learns its own transitions, which decode; there is no prior to fit",
              file=sys.stderr)
        return 2
    train, val, _, _ = load_data(cfg, XLMRTokenizer(model_dir / "sentencepiece.bpe.model"))
    prior, f1 = fit_prior(model, train["ner_tags"], val, progress=sys.stderr.isatty())
    record(model, prior, f1)
    save_config(model.config, model_dir)
    print(f"{model_dir}: weight {prior.weight}; validation F1 by weight: "
          + ", ".join(f"{w}: {v:.4f}" for w, v in f1.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
