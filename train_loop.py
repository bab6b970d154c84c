"""Fine-tune XLM-R (or any checkpoint of its family) for PAN-X NER, with no Trainer in between.

    python train_loop.py --langs de                        # the book's recipe on the German mix
    python train_loop.py --langs de fr --epochs 3          # several languages, concatenated
    python train_loop.py --train-file train.conll --validation-file dev.conll --test-file test.conll
                                                           # your own data and labels (CoNLL, .jsonl, .parquet)
    torchrun --nproc_per_node 2 train_loop.py --langs de   # DistributedDataParallel

Defaults are the book's recipe (the Trainer's defaults): AdamW (0.9, 0.999, eps 1e-8), lr 5e-5,
weight decay 0.01 except biases and LayerNorm weights, linear decay to 0, no warmup, gradient
clipping at 1.0, batch 24, 3 epochs, validation every epoch; the best epoch is kept and tested on
every --eval-langs language.

Output folder: the checkpoint (model.safetensors, config.json, sentencepiece.bpe.model) of the
best epoch, metrics.jsonl (a JSON line per log step and evaluation), results.json, and last/
(the training state for --resume; removed when the run ends unless --keep-last).

Ctrl-C or SIGTERM stops at the end of the step under way, with the state saved, and prints the
`--resume` command that continues the run exactly.

Knobs that only a measurement needs have no flag of their own: `--set name=value` sets any of
them (listed at the end of --help), e.g. `--set warmup_ratio=0.1 --set unspaced=words`.

This file is the command line only: the flags come from the fields of `training.TrainConfig`,
and the loop is `training.train`.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import textwrap
from dataclasses import fields, replace
from pathlib import Path

from loaders.conll import NerDataError
from training import RunError, TrainConfig, command_line, train
from training.config import default_of, is_setting, read_setting, setting_text
from training.interrupt import Interrupted
from xlmr.atomic import WriteError
from xlmr.weights import CheckpointError

_SCALARS = {"int": int, "float": float, "str": str}


SETTINGS = {f.name: f for f in fields(TrainConfig) if is_setting(f)}


def _setting(text: str) -> tuple[str, object]:
    try:
        return read_setting(text, SETTINGS)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field above its settings: `--eval-langs` for eval_langs, lists take
    several values, booleans are switches; `--set name=value` for each setting."""
    listed = "\n".join(textwrap.fill(f"{f.name}={setting_text(default_of(f))}: {f.metadata['help']}", 100,
                                      initial_indent="  ", subsequent_indent="      ") for f in SETTINGS.values())
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"settings for --set (default shown):\n{listed}")
    for f in fields(TrainConfig):
        if is_setting(f):
            continue
        flag, meta, default = "--" + f.name.replace("_", "-"), dict(f.metadata), default_of(f)
        kind = str(f.type).split(" | ")[0]  # "int | None" -> "int"; "list[str]" stays
        if kind == "bool":
            p.add_argument(flag, action="store_true", help=meta.get("help"))
        elif kind.startswith("list["):
            p.add_argument(flag, nargs="+", default=default, type=_SCALARS[kind[5:-1]], help=meta.get("help"))
        else:
            p.add_argument(flag, default=default, type=_SCALARS[kind], choices=meta.get("choices"), help=meta.get("help"))
    p.add_argument("--set", action="append", default=[], type=_setting, metavar="NAME=VALUE", dest="settings",
                   help="a setting without a flag of its own (listed below); repeat for several")
    return p


def config_from(args: argparse.Namespace) -> TrainConfig:
    flags = {k: v for k, v in vars(args).items() if k != "settings"}
    return TrainConfig(**flags, **dict(args.settings))


def resume_command(cfg: TrainConfig, out: Path) -> str:
    """The command line that continues an interrupted run: its own arguments and --resume."""
    script = sys.argv[0] if Path(sys.argv[0]).name == "train_loop.py" else "train_loop.py"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = ["torchrun", "--nproc_per_node", str(world)] if world > 1 else ["python"]
    return shlex.join([*launcher, script, *command_line(replace(cfg, resume=str(out)))])


def main(argv=None) -> int:
    cfg = config_from(build_parser().parse_args(argv))
    try:
        train(cfg)
    except Interrupted as e:  # SIGINT or SIGTERM, the state saved at a step boundary
        if e.is_main:
            print(f"{e}\nto continue it exactly:\n  {resume_command(e.cfg, e.out)}", file=sys.stderr)
        return 128 + e.signum  # as a shell reports a process ended by that signal
    except (RunError, CheckpointError, NerDataError, FileNotFoundError, WriteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
