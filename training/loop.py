"""The fine-tuning loop, read top to bottom as the recipe it implements:

    train(cfg)
      setup(cfg)                      model, data, optimizer, schedule; resume if asked
      for each epoch:                 (SIGINT/SIGTERM: stop at a step boundary, state saved)
        train_epoch(run, epoch)       train_step per global batch; the state saved every --save-steps
        validate_and_checkpoint(run)  validation F1; the best epoch's weights kept
      fit_transitions(run, best)      the tag-transition prior, its weight chosen on validation
      test_best(run, best)            the kept weights on every --eval-langs test set
      finish(run, tests)              results.json, clean-up

No Trainer in between: AMP through autocast (and a gradient scaler for fp16), a padding
collator, -100 on every position that carries no word label, and DDP under torchrun. A step
with a non-finite loss or gradient is skipped (training/nonfinite.py). The counts a step adds
(tokens, padding, labelled words) come from the sentence lengths on the host, for the whole
global batch: no device value is read for them, and they are the same on every process.
"""
from __future__ import annotations

import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from evaluation.predict import evaluate
from loaders.align import IGNORE
from loaders.collate import PaddingCollator
from runtime.compile import bucket_multiple, compile_if_chosen
from runtime.precision import apply_precision, autocast_for
from .embedding_grad import RowSparseGrad
from .finish import finish, fit_transitions, kept_model, test_best
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import load_model, save_model, tokenizer_file_in

from .config import RunError, TrainConfig
from .prepare import (check_data_flags, check_output_dir, decide_precision, load_data, prepare_model_folder,
                      setup_distributed)
from .interrupt import Interrupted, StopSignals
from .nonfinite import count_skip, number
from .recipe import Update, apply_gradients, build_optimizer, epoch_batches, linear_schedule, row_sparse_embedding
from .row_adamw import RowAdamW
from .state import MetricsLog, TrainState, load_state, resumable_state, rng_state, save_state


@dataclass
class Run:
    """Everything one training run holds between its steps."""
    cfg: TrainConfig
    rank: int
    world: int
    device: torch.device
    out: Path
    folder: Path  # the model folder the run started from
    tokenizer_file: Path
    model: torch.nn.Module
    ddp_model: torch.nn.Module  # the model itself on one process
    train_set: object
    val_set: object
    test_sets: dict
    amp_dtype: torch.dtype | None
    amp_reason: str  # why --amp chose amp_dtype on this device
    compile_reason: str  # why --compile did or did not compile
    scaler: torch.amp.GradScaler | None
    optimizer: torch.optim.Optimizer
    scheduler: object
    word_grad: RowSparseGrad | None
    lengths: list[int]  # pieces per training sentence
    labelled: list[int]  # of those, the ones that carry a label (not -100)
    total_steps: int
    log: MetricsLog
    state: TrainState

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shares(self) -> int:
        """How many pieces a global batch is cut into: processes x micro-batches."""
        return self.world * self.cfg.grad_accum

    def save(self) -> None:
        """The resumable state in last/, written by rank 0 with every process's random generators
        (called on every process: they send theirs)."""
        rngs = [None] * self.world if self.is_main else None
        if self.world > 1:
            dist.gather_object(rng_state(), rngs, dst=0)
        if self.is_main:
            save_state(self.out / "last", self.model, self.optimizer, self.scheduler, self.scaler, asdict(self.state),
                       rngs if self.world > 1 else None)


def setup(cfg: TrainConfig) -> Run:
    rank, world, device = setup_distributed(cfg.device)
    out = Path(cfg.output_dir or cfg.resume or f"runs/{Path(cfg.train_file).stem if cfg.train_file else '-'.join(cfg.langs)}")
    check_data_flags(cfg)
    if cfg.batch_size % (world * cfg.grad_accum):
        raise RunError(f"--batch-size {cfg.batch_size} must be divisible by processes x --grad-accum "
                       f"({world} x {cfg.grad_accum})")
    if cfg.max_skipped_in_a_row < 1:
        raise RunError(f"max_skipped_in_a_row={cfg.max_skipped_in_a_row}: must be 1 or more")
    if cfg.resume and resumable_state(Path(cfg.resume)) is None:
        raise RunError(f"nothing to resume in {cfg.resume}: no last/state.json")
    if rank == 0:
        check_output_dir(out)
    folder = prepare_model_folder(cfg.model) if rank == 0 else None
    if world > 1:
        shared = [folder]
        dist.broadcast_object_list(shared, src=0)
        folder = shared[0]
    tokenizer_file = tokenizer_file_in(folder)
    if tokenizer_file is None:
        raise RunError(f"{folder}: no sentencepiece.bpe.model beside the weights")
    train_set, val_set, test_sets, labels = load_data(cfg, XLMRTokenizer(tokenizer_file))
    torch.manual_seed(cfg.seed)  # a new head is drawn from this
    random.seed(cfg.seed)
    with warnings.catch_warnings():  # a head-less encoder is the usual start: said below, not warned
        warnings.filterwarnings("ignore", message=".*has no token-classification head")
        model = load_model(folder, id2label=dict(enumerate(labels)))  # the data's labels, saved with the weights
    model.config.glued_pieces_labelled = any(any(g) for g in train_set["word_glued"])
    if model.head_is_new and rank == 0:
        print(f"a new {len(labels)}-label head ({', '.join(labels)}), drawn from --seed {cfg.seed}")
    model.set_head(cfg.head)
    model.to(device)
    precision = decide_precision(cfg, device, world)
    apply_precision(model, precision)
    amp_dtype, amp_reason = precision.dtype, precision.why
    _, compile_reason = compile_if_chosen(model, cfg.compile, device)
    word_grad = row_sparse_embedding(model, world)
    optimizer = build_optimizer(model, cfg, word_grad)
    lengths = [len(x) for x in train_set["input_ids"]]
    labelled = [sum(label != IGNORE for label in x) for x in train_set["labels"]]
    total_steps = len(epoch_batches(cfg, lengths, 0, world * cfg.grad_accum)) * cfg.epochs
    run = Run(cfg, rank, world, device, out, folder, tokenizer_file, model,
              torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model,
              train_set, val_set, test_sets, amp_dtype, amp_reason, compile_reason,
              torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None,
              optimizer, linear_schedule(optimizer, int(cfg.warmup_ratio * total_steps), total_steps),
              word_grad, lengths, labelled, total_steps, None, TrainState(precision=precision.record()))
    if cfg.resume:
        saved = load_state(resumable_state(Path(cfg.resume)), model, optimizer, run.scheduler, run.scaler, device,
                           rank)
        run.state = TrainState.from_saved(saved)
        if run.is_main:
            print(f"resuming {cfg.resume} at epoch {run.state.epoch + 1}, step {run.state.step}")
    run.log = MetricsLog(out / "metrics.jsonl", run.is_main, run.state.step if cfg.resume else None)
    return run


def shares(global_batch: list[int], world: int, grad_accum: int) -> list[list[list[int]]]:
    """[process][micro-batch] -> sentence indices: how a global batch is cut."""
    return [[mine[i::grad_accum] for i in range(grad_accum)] for mine in (global_batch[r::world] for r in range(world))]


def padded_work(lengths: list[int], multiple: int | None) -> tuple[int, int, int]:
    """(real tokens, padded positions, attention pairs) of one micro-batch from its sentence
    lengths, padded as PaddingCollator pads it: to the longest, rounded up to `multiple`.
    Each real token's query meets every one of the T padded positions."""
    T = max(lengths)
    if multiple:
        T = -(-T // multiple) * multiple
    return sum(lengths), len(lengths) * T, sum(lengths) * T


def count_work(run: Run, global_batch: list[int], multiple: int | None) -> None:
    """The global batch's tokens, padding and attention pairs, every process's share included."""
    state = run.state
    for micro in (m for share in shares(global_batch, run.world, run.cfg.grad_accum) for m in share):
        tokens, padded, pairs = padded_work([run.lengths[i] for i in micro], multiple)
        state.tokens += tokens
        state.padded_tokens += padded
        state.attention_pairs += pairs


def train_step(run: Run, global_batch: list[int], columns, collate) -> Update:
    """One optimizer step on this process's share of a global batch, or a skip when its loss
    or gradient is not finite (then the schedule does not move either)."""
    cfg, device = run.cfg, run.device
    input_ids, labels = columns
    micro_batches = [collate([{"input_ids": input_ids[i], "labels": labels[i]} for i in m])
                     for m in shares(global_batch, run.world, cfg.grad_accum)[run.rank]]
    # Normalise by the labelled tokens of the whole global batch, so the gradient is the same
    # whatever the number of processes and micro-batches.
    n_labelled = float(sum(run.labelled[i] for i in global_batch))
    loss_total = torch.zeros((), device=device)
    for k, mb in enumerate(micro_batches):
        mb = {key: v.to(device, non_blocking=True) for key, v in mb.items()}
        sync = k == len(micro_batches) - 1 or run.world == 1
        with run.ddp_model.no_sync() if (run.world > 1 and not sync) else torch.enable_grad():
            with autocast_for(device, run.amp_dtype):
                logits, _ = run.ddp_model(mb["input_ids"], mb["attention_mask"])
            loss_sum = run.model.loss(logits, mb["labels"], reduction="sum")
            # DDP averages gradients over processes; multiply back so the sum stays a sum.
            loss = loss_sum * run.world / n_labelled
            (run.scaler.scale(loss) if run.scaler else loss).backward()
        loss_total += loss_sum.detach()
    count_work(run, global_batch, collate.multiple)
    if run.world > 1:
        dist.all_reduce(loss_total)
    update = apply_gradients(run.model, run.optimizer, run.word_grad, run.scaler, cfg.max_grad_norm,
                             loss_total / n_labelled)
    if update.applied:
        run.scheduler.step()
    return update


def train_epoch(run: Run, epoch: int, stop: StopSignals) -> None:
    cfg, state = run.cfg, run.state
    batches = epoch_batches(cfg, run.lengths, epoch, run.shares)
    columns = (list(run.train_set["input_ids"]), list(run.train_set["labels"]))  # read once: Arrow rows are slow
    collate = PaddingCollator(pad_to_multiple_of=bucket_multiple(run.model))  # compiled: a few lengths only
    run.model.train()
    bar = tqdm(total=len(batches), initial=state.batch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
               disable=not run.is_main or cfg.no_progress, dynamic_ncols=True)
    t_epoch = time.perf_counter()
    for b in range(state.batch, len(batches)):
        update = train_step(run, batches[b], columns, collate)
        state.step += 1
        state.batch = b + 1
        state.samples += len(batches[b])
        group = run.optimizer.param_groups[0]  # --lr on the schedule (a head's own group may scale it)
        lr = cfg.lr * group["lr"] / group["initial_lr"] if group["initial_lr"] else 0.0
        bar.update(1)
        bar.set_postfix(loss=f"{update.loss:.4f}", lr=f"{lr:.2e}", **({"skipped": state.skipped_steps}
                                                                       if state.skipped_steps else {}))
        count_skip(run, update, epoch + b / len(batches))
        if state.step % cfg.logging_steps == 0:
            run.log.write(type="train", step=state.step, epoch=epoch + b / len(batches), loss=number(update.loss),
                          lr=lr, grad_norm=number(update.grad_norm))
        signum = stop.requested()
        if signum or (cfg.save_steps and state.step % cfg.save_steps == 0 and b + 1 < len(batches)):
            state.train_seconds += time.perf_counter() - t_epoch
            run.save()
            if signum:
                stop_here(run, stop, signum)
            t_epoch = time.perf_counter()  # after the save: its time is not training time
    bar.close()
    state.train_seconds += time.perf_counter() - t_epoch


def stop_here(run: Run, stop: StopSignals, signum: int) -> None:
    """After rank 0 saved the state at this step boundary: every process stops."""
    stop.barrier()
    raise Interrupted(signum, run.state.step, run.out, run.cfg, run.is_main)


def validate_and_checkpoint(run: Run, epoch: int) -> None:
    """Validation F1 after an epoch; the best epoch's weights are the run's checkpoint, and the
    resumable state moves to the start of the next epoch."""
    state, t0 = run.state, time.perf_counter()
    if isinstance(run.optimizer, RowAdamW):
        run.optimizer.materialize()  # untouched embedding rows take the weight decay they owe
    val = evaluate(run.model, run.val_set, run.model.config.id2label, run.cfg.eval_batch_size, run.device,
                   run.amp_dtype, progress=not run.cfg.no_progress, desc="validation", decode=run.cfg.decode)
    record = {"epoch": epoch + 1, "step": state.step, "val_loss": val["loss"], "val_f1": val["f1"],
              "eval_seconds": time.perf_counter() - t0}
    state.epochs.append(record)
    run.log.write(type="eval", **record)
    if run.is_main:
        print(f"epoch {epoch + 1}: validation loss {val['loss']:.4f}, F1 {val['f1']:.4f}")
        if val["f1"] > state.best_f1:
            save_model(run.model, run.out, tokenizer_file=run.tokenizer_file)
    if val["f1"] > state.best_f1:
        state.best_f1, state.best_epoch = val["f1"], epoch + 1
    state.epoch, state.batch = epoch + 1, 0
    run.save()
    run.model.train()


def train(cfg: TrainConfig) -> dict:
    run = setup(cfg)
    try:
        if run.is_main:
            source = cfg.train_file or " ".join(cfg.langs)
            print(f"training on {len(run.train_set)} sentences ({source}), validating on "
                  f"{len(run.val_set)}; {run.total_steps} steps on {run.world} x {run.device}, amp {run.amp_dtype or 'off'}")
            print(f"precision {run.amp_reason}; {run.compile_reason}")
        with StopSignals(run.world, run.is_main) as stop:
            for epoch in range(run.state.epoch, cfg.epochs):
                train_epoch(run, epoch, stop)
                validate_and_checkpoint(run, epoch)  # saves the state
                signum = stop.requested()
                if signum:
                    stop_here(run, stop, signum)
        best = kept_model(run)
        prior = fit_transitions(run, best)
        return finish(run, test_best(run, best), prior)
    finally:
        if run.world > 1:
            dist.destroy_process_group()
