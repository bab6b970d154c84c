"""Steps whose loss or gradient is not finite: an fp16 overflow, a corrupt batch.

Such a step is skipped by `training.recipe.apply_gradients` (no AdamW update; the loop leaves
the schedule alone too; under fp16 the gradient scaler lowers its scale as it always does on an
overflow). Here each one is counted, printed and logged, and a run that skips
`max_skipped_in_a_row` steps in a row stops: a model that has diverged does not recover by
skipping, and its last good checkpoint and resumable state, written before, are still on disk
(no skipped step changed a weight).
"""
from __future__ import annotations

import math
import sys

from tqdm.auto import tqdm

from .config import RunError
from .recipe import Update
from .state import resumable_state


def number(x: float | None) -> float | str | None:
    """A float for JSON: nan and inf as the strings "nan", "inf" (JSON has no such numbers)."""
    return x if x is None or math.isfinite(x) else str(x)


def count_skip(run, update: Update, epoch_progress: float) -> None:
    """After a step: reset the run of skips, or count this one; stop after too many in a row."""
    state = run.state
    if update.applied:
        state.skipped_in_a_row = 0
        return
    state.skipped_steps += 1
    state.skipped_in_a_row += 1
    scale = f"; the gradient scaler's scale is now {run.scaler.get_scale():g}" if run.scaler else ""
    run.log.write(type="skipped", step=state.step, epoch=epoch_progress, loss=number(update.loss),
                  grad_norm=number(update.grad_norm), in_a_row=state.skipped_in_a_row, skipped=state.skipped_steps)
    if run.is_main:
        tqdm.write(f"step {state.step}: loss {update.loss:.4g}, gradient norm {update.grad_norm:.4g}: not finite, "
                   f"skipped without an update ({state.skipped_in_a_row} in a row, {state.skipped_steps} in all){scale}",
                   file=sys.stderr)
    if state.skipped_in_a_row >= run.cfg.max_skipped_in_a_row:
        raise RunError(too_many(run))


def too_many(run) -> str:
    state, out = run.state, run.out
    first = state.step - state.skipped_in_a_row + 1
    kept = []
    if (out / "model.safetensors").is_file() and state.best_epoch is not None:
        kept.append(f"the checkpoint {out} (epoch {state.best_epoch}, validation F1 {state.best_f1:.4f})")
    saved = resumable_state(out)
    if saved is not None:
        kept.append(f"the training state {saved} (--resume {out})")
    return (f"steps {first}-{state.step} (epoch {state.epoch + 1}): {state.skipped_in_a_row} steps in a row had a "
            f"non-finite loss or gradient and were skipped; stopped (the limit is --set max_skipped_in_a_row="
            f"{run.cfg.max_skipped_in_a_row}). Kept, untouched by these steps: "
            f"{' and '.join(kept) if kept else 'nothing yet (no epoch finished, no state saved)'}. "
            "Try a lower --lr or --amp off, or look for a corrupt sentence in the training data")
