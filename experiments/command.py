"""`python eval.py experiments`: its flags and its run, kept with the experiments so the
evaluation command line does not load the training side until this command is chosen."""
from __future__ import annotations

import sys
from pathlib import Path

from training import RunError

from .crosslingual import CURVE_SIZES, EXPERIMENTS, Settings, run_all


def run_experiments(args) -> int:
    settings = Settings(model=args.model, root=Path(args.output_dir), data_dir=args.data_dir, only=tuple(args.only),
                        curve_sizes=tuple(args.curve_sizes), quick=args.quick, epochs=args.epochs, seed=args.seed,
                        amp=args.amp, device=args.device, full_splits=args.full_splits,
                        no_progress=args.no_progress, drop_weights=args.drop_weights,
                        extra={"decode": args.decode, "unspaced": args.unspaced})
    try:
        run_all(settings)
    except RunError as e:  # the training side's own error; eval.py catches the rest
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {settings.root}")
    return 0


def add_experiments_command(sub, common) -> None:
    x = sub.add_parser("experiments", help="the cross-lingual table and the French learning curve (resumable)")
    common(x)
    x.add_argument("--data-dir", default=None)
    x.add_argument("--output-dir", default="runs/experiments")
    x.add_argument("--only", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS, help="which parts to run")
    x.add_argument("--quick", action="store_true",
                   help="CPU preset: 1 epoch for runs on whole language sets (the curve keeps 3)")
    x.add_argument("--epochs", type=int, default=None, help="epochs for every run (overrides the recipe and --quick)")
    x.add_argument("--curve-sizes", type=int, nargs="+", default=list(CURVE_SIZES))
    x.add_argument("--seed", type=int, default=42)
    x.add_argument("--full-splits", action="store_true")
    x.add_argument("--no-progress", action="store_true")
    x.add_argument("--drop-weights", action="store_true",
                   help="delete each run's model.safetensors once tested (~0.45 GB each for e5-small), except de's")
    x.set_defaults(run=run_experiments)
