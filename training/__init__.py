"""The fine-tuning loop, one job per module:

    config.py      TrainConfig: every setting of a run, with the book's recipe as defaults
    prepare.py     set-up before the first step: processes, folders, the model folder, the data
    recipe.py      what a run trains with: batches per epoch, AdamW groups, the linear schedule
    row_adamw.py   AdamW and clipping whose embedding work follows the rows a step touches (CPU)
    state.py       TrainState and the resumable training state on disk (last/), metrics.jsonl
    loop.py        one step, one epoch, validation and checkpointing, the final test
    interrupt.py   SIGINT/SIGTERM: stop at a step boundary with the state saved
    nonfinite.py   steps skipped for a non-finite loss or gradient, and when to stop
    transitions.py the tag-transition prior: counted over the training tags, weighted on validation
                   (fit_prior.py fits one for a checkpoint after the fact)
    throughput.py  samples, tokens and model FLOPs per second of the training steps

Layering: uses `xlmr`, `loaders` and `evaluation` (prediction and scoring only); the
experiments and the command-line scripts use it.
"""
from .config import RunError, TrainConfig, command_line
from .loop import train

__all__ = ["RunError", "TrainConfig", "command_line", "train"]
