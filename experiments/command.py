"""`python eval.py experiments`: its flags and its run, kept with the experiments so the
evaluation command line does not load the training side until this command is chosen. Every
training setting the plan does not choose itself is `--set name=value`, for every run
(`--set epochs=1 --set seed=7 --set full_splits=true --set decode=argmax ...`)."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from training import RunError, TrainConfig
from training.config import read_setting
from runtime.precision import AMP_CHOICES

from .crosslingual import CHOSEN, CURVE_SIZES, EXPERIMENTS, Settings, run_all

SETTINGS = {f.name: f for f in fields(TrainConfig) if f.name not in CHOSEN}


def _setting(text: str) -> tuple[str, object]:
    try:
        return read_setting(text, SETTINGS, CHOSEN)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run_experiments(args) -> int:
    settings = Settings(model=args.model, root=Path(args.output_dir), data_dir=args.data_dir, only=tuple(args.only),
                        curve_sizes=tuple(args.curve_sizes), quick=args.quick, amp=args.amp, device=args.device,
                        drop_weights=args.drop_weights, extra=dict(args.settings))
    try:
        run_all(settings)
    except RunError as e:  # the training side's own error; eval.py catches the rest
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {settings.root}")
    return 0


def add_experiments_command(sub) -> None:
    x = sub.add_parser("experiments", help="the cross-lingual table and the French learning curve (resumable)")
    x.add_argument("--model", required=True, help="the pretrained checkpoint every run starts from")
    x.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    x.add_argument("--amp", default="auto", choices=AMP_CHOICES)
    x.add_argument("--data-dir", default=None)
    x.add_argument("--output-dir", default="runs/experiments")
    x.add_argument("--only", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS, help="which parts to run")
    x.add_argument("--quick", action="store_true",
                   help="CPU preset: 1 epoch for runs on whole language sets (the curve keeps 3)")
    x.add_argument("--curve-sizes", type=int, nargs="+", default=list(CURVE_SIZES))
    x.add_argument("--drop-weights", action="store_true",
                   help="delete each run's model.safetensors once tested (~0.45 GB each for e5-small), except de's")
    x.add_argument("--set", action="append", default=[], type=_setting, metavar="NAME=VALUE", dest="settings",
                   help="a training setting for every run, e.g. epochs=1 (overrides the recipe and --quick), "
                        "seed=7, full_splits=true, decode=argmax, no_progress=true; any TrainConfig field but "
                        + ", ".join(CHOSEN))
    x.set_defaults(run=run_experiments)
