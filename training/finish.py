"""The end of a run: the best epoch's weights, their tag-transition prior, their F1 on every
test set, and results.json with the summary printed."""
from __future__ import annotations

import shutil
from dataclasses import asdict

import torch.distributed as dist

from evaluation.predict import evaluate
from evaluation.reports import write_json_atomic
from evaluation.scoring import f1_table
from runtime.precision import cpu_capability
from xlmr.weights import load_model

from .adaptation import summary as adaptation_summary
from .throughput import throughput
from .transitions import fit_run


def kept_model(run):
    """run.model holding the kept checkpoint's weights (the best epoch's)."""
    if run.world > 1:
        dist.barrier()  # rank 0 has written the kept weights
    best = run.model  # its compiled layers, if any, are reused
    best.load_state_dict(load_model(run.out).state_dict())
    return best


def fit_transitions(run, best) -> dict | None:
    """The tag-transition prior of the kept checkpoint, its weight chosen on validation
    (training/transitions.py); saved in its config.json. None with transition_prior "off", and
    for a head that learns its own transitions, which take the prior's place."""
    return fit_run(run, best) if run.cfg.transition_prior == "fit" and not best.learns_transitions else None


def test_best(run, best) -> dict[str, dict]:
    """The kept checkpoint on the test set of every evaluation language."""
    tests = {}
    for lang, ds in run.test_sets.items():
        r = evaluate(best, ds, best.config.id2label, run.cfg.eval_batch_size, run.device, run.amp_dtype,
                     progress=not run.cfg.no_progress, desc=f"test {lang}", decode=run.cfg.decode)
        tests[lang] = {"f1": r["f1"], "precision": r["precision"], "recall": r["recall"],
                       "loss": r["loss"], "sentences": r["sentences"]}
        run.log.write(type="test", step=run.state.step, lang=lang, **tests[lang])
    return tests


def finish(run, tests: dict[str, dict], prior: dict | None = None) -> dict:
    """results.json (written by rank 0), clean-up of the resumable state, and the summary."""
    state = run.state
    results = {
        "config": asdict(run.cfg) | {"model_folder": str(run.folder), "world_size": run.world, "device": str(run.device),
                                     "amp_dtype": str(run.amp_dtype), "amp_reason": run.amp_reason,
                                     "precision": run.state.precision,
                                     "compile_reason": run.compile_reason,
                                     "cpu": cpu_capability() if run.device.type == "cpu" else None,
                                     "train_sentences": len(run.train_set),
                                     "validation_sentences": len(run.val_set), "total_steps": run.total_steps},
        "epochs": state.epochs,
        "best_epoch": state.best_epoch,
        # Kept for readers of older results: the best epoch is the kept checkpoint, no average.
        "checkpoint": "best",
        "average": None,
        "transition_prior": prior,
        "adaptation": adaptation_summary(run.out) if run.cfg.teacher else None,  # training/adaptation.py
        "test_f1": {lang: r["f1"] for lang, r in tests.items()},
        "test": tests,
        "skipped_steps": state.skipped_steps,  # non-finite loss or gradient: no update (training/nonfinite.py)
        # Samples, tokens and FLOPs are counted over every process (the loop counts the whole
        # global batch), so the peak they are measured against is every process's.
        "throughput": throughput(state, run.model, run.device,
                                 run.cfg.peak_tflops * run.world if run.cfg.peak_tflops else None),
    }
    if run.is_main:
        write_json_atomic(run.out / "results.json", results)
        for leftover in ("last.old", "last.tmp") + (() if run.cfg.keep_last else ("last",)):
            shutil.rmtree(run.out / leftover, ignore_errors=True)
        print(f"\nbest epoch {state.best_epoch} (validation F1 {state.best_f1:.4f}); "
              f"trained in {state.train_seconds:.0f} s")
        print(f1_table(results["test_f1"]))
        print(f"wrote {run.out}")
    return results
