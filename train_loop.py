"""Fine-tune XLM-R (or any checkpoint of its family) for PAN-X NER, with no Trainer in between.

    python train_loop.py --langs de                        # the book's recipe on the German mix
    python train_loop.py --langs de fr --epochs 3          # several languages, concatenated
    torchrun --nproc_per_node 2 train_loop.py --langs de   # DistributedDataParallel

Defaults are the book's recipe (the Trainer's defaults): AdamW (0.9, 0.999, eps 1e-8), lr 5e-5,
weight decay 0.01 except biases and LayerNorm weights, linear decay to 0, no warmup, gradient
clipping at 1.0, batch 24, 3 epochs, validation every epoch; the best epoch is kept and tested on
every --eval-langs language.

Output folder: the checkpoint (model.safetensors, config.json, sentencepiece.bpe.model) of the
best epoch, metrics.jsonl (a JSON line per log step and evaluation), results.json, and last/
(the training state for --resume; removed when the run ends unless --keep-last).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from datasets import concatenate_datasets
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from eval import amp_dtype_for, autocast_for, evaluate, f1_table, write_json_atomic
from loaders.align import IGNORE, encode_panx
from loaders.batching import length_grouped_batches, random_batches
from loaders.collate import PaddingCollator
from loaders.panx import PanxError, check_lang, panx_splits
from xlmr.config import TAGS
from xlmr.embedding_grad import RowSparseGrad
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import (CheckpointError, load_model, resolve_folder, save_model, tokenizer_file_in)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_MODEL = "xlm-roberta-base"


class RunError(Exception):
    """A problem found before or during training, reported as one clear line."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--langs", nargs="+", default=["de"], help="training languages (default: de)")
    a("--model", default=DEFAULT_MODEL,
      help="our checkpoint folder, a Hugging Face folder or a hub id (converted into weights/)")
    a("--data-dir", default=None, help="PAN-X folder (default: $PANX_DATA_DIR, else the hub)")
    a("--output-dir", default=None, help="where the run is written (default: runs/<langs>)")
    a("--epochs", type=int, default=3)
    a("--batch-size", type=int, default=24, help="sentences per optimizer step, over all processes")
    a("--eval-batch-size", type=int, default=64)
    a("--lr", type=float, default=5e-5)
    a("--weight-decay", type=float, default=0.01)
    a("--warmup-ratio", type=float, default=0.0)
    a("--max-grad-norm", type=float, default=1.0)
    a("--grad-accum", type=int, default=1, help="split each batch into this many micro-batches")
    a("--num-samples", type=int, default=None, help="train on a seeded subset of N sentences")
    a("--max-length", type=int, default=512)
    a("--seed", type=int, default=42)
    a("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"],
      help="autocast: auto = bf16 (fp16 on GPUs without bf16); fp16 uses a gradient scaler")
    a("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    a("--eval-langs", nargs="+", default=["de", "fr", "it", "en"])
    a("--full-splits", action="store_true", help="whole PAN-X splits instead of the Swiss-mix subsets")
    a("--random-batches", action="store_true", help="plain shuffled batches instead of length-grouped ones")
    a("--label-all-subwords", action="store_true", help="label every sub-word (I- form) instead of the first")
    a("--logging-steps", type=int, default=50)
    a("--save-steps", type=int, default=200, help="save the training state every N steps (0: epoch ends only)")
    a("--resume", default=None,
      help="output folder of an interrupted run to continue; pass the run's other arguments unchanged")
    a("--keep-last", action="store_true", help="keep last/ (the resumable training state) after the run")
    a("--peak-tflops", type=float, default=None, help="device peak, to report model FLOPs utilisation")
    a("--no-progress", action="store_true", help="no progress bars")
    return p


# ---------------------------------------------------------------------------------------------
# Set-up: everything that can fail does so here, before the first step

def setup_distributed(device_arg: str | None) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = (device_arg or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
        rank = dist.get_rank()
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return rank, world, torch.device("cuda", local)
        return rank, world, torch.device("cpu")
    return 0, 1, torch.device(device_arg or ("cuda" if use_cuda else "cpu"))


def check_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunError(f"cannot write to output folder {path}: {e.strerror or e}") from None


def prepare_model_folder(src: str) -> Path:
    """Our checkpoint folder as is; a Hugging Face folder or hub id is converted into weights/."""
    folder = resolve_folder(src)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise RunError(f"{folder}: no config.json; is this a checkpoint folder?")
    if json.loads(config_file.read_text()).get("format") == "xlmr-ner":
        return folder
    target = WEIGHTS_DIR / folder.name
    if not (target / "model.safetensors").is_file():
        from xlmr.convert import convert

        print(f"converting {folder} -> {target}")
        convert(folder, target)
    return target


def load_data(args, tokenizer):
    """Encoded train/validation sets of the training languages and test sets of the evaluation
    languages, from the Swiss mix (or the full splits)."""
    cache = {}
    for lang in dict.fromkeys(args.langs + args.eval_langs):
        cache[lang] = encode_panx(panx_splits(lang, args.data_dir, args.full_splits), tokenizer, args.max_length, args.label_all_subwords)
    train = concatenate_datasets([cache[lang]["train"] for lang in args.langs])
    validation = concatenate_datasets([cache[lang]["validation"] for lang in args.langs])
    if args.num_samples is not None:
        if not 0 < args.num_samples <= len(train):
            raise RunError(f"--num-samples {args.num_samples} is outside 1..{len(train)}")
        keep = np.random.default_rng(args.seed).permutation(len(train))[: args.num_samples]
        train = train.select(np.sort(keep))
    tests = {lang: cache[lang]["test"] for lang in args.eval_langs}
    return train, validation, tests


def epoch_batches(args, lengths, epoch: int, shares: int) -> list[list[int]]:
    """The global batches of one epoch. A last batch too small to give every process and
    micro-batch a sentence is dropped (only when there are several)."""
    if args.random_batches:
        batches = random_batches(len(lengths), args.batch_size, args.seed, epoch)
    else:
        batches = length_grouped_batches(lengths, args.batch_size, args.seed, epoch)
    return [b for b in batches if len(b) >= shares]


def build_optimizer(model, args) -> torch.optim.AdamW:
    # As the Trainer does: no weight decay on biases and LayerNorm weights.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith(".bias") or "norm." in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused=True: one kernel over all parameters instead of a loop of small ops; AdamW over the
    # 96M-parameter word embedding dominates a step otherwise.
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, fused=True)


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    def factor(step):
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------------------------------------
# Training state: what --resume needs to continue exactly where a run stopped

def save_state(folder: Path, model, optimizer, scheduler, scaler, state: dict) -> None:
    """Written to last.tmp/ and swapped in whole, so a kill at any moment leaves either the old
    state or the new one, never a mix: killed between the two renames, the old state waits in
    last.old/ (see `resumable_state`)."""
    tmp, old = folder.with_name("last.tmp"), folder.with_name("last.old")
    shutil.rmtree(tmp, ignore_errors=True)
    if folder.exists():  # a kill during the last clean-up can leave last.old/ behind
        shutil.rmtree(old, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
    torch.save({
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def resumable_state(run: Path) -> Path | None:
    """The saved state of a run: last/, or last.old/ when a kill fell between save_state's two
    renames (last/ is then absent and last.old/ still whole)."""
    for name in ("last", "last.old"):
        if (run / name / "state.json").is_file():
            return run / name
    return None


def load_state(folder: Path, model, optimizer, scheduler, scaler) -> dict:
    if not (folder / "state.json").is_file():
        raise RunError(f"nothing to resume in {folder}: no state.json (was the run saved?)")
    model.load_state_dict(load_file(folder / "model.safetensors"))
    saved = torch.load(folder / "optimizer.pt", weights_only=False)  # our own file: RNG states are not tensors
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if scaler is not None and saved["scaler"] is not None:
        scaler.load_state_dict(saved["scaler"])
    torch.set_rng_state(saved["rng"]["torch"])
    random.setstate(saved["rng"]["python"])
    np.random.set_state(saved["rng"]["numpy"])
    if saved["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"])
    return json.loads((folder / "state.json").read_text())


class MetricsLog:
    """metrics.jsonl, one JSON object a line. On resume, lines past the resumed step are dropped
    so the file reads as one uninterrupted run."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None = None):
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.is_file():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            tmp.replace(path)
        elif enabled:
            path.write_text("")

    def write(self, **record) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------------------------------
# The run

def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def train(args) -> dict:
    rank, world, device = setup_distributed(args.device)
    is_main = rank == 0
    out = Path(args.output_dir or args.resume or f"runs/{'-'.join(args.langs)}")

    # -- checks before anything slow ------------------------------------------------------
    for lang in args.langs + args.eval_langs:
        try:
            check_lang(lang)
        except PanxError as e:
            raise RunError(str(e)) from None
    if args.batch_size % (world * args.grad_accum):
        raise RunError(f"--batch-size {args.batch_size} must be divisible by processes x --grad-accum "
                       f"({world} x {args.grad_accum})")
    if args.resume and resumable_state(Path(args.resume)) is None:
        raise RunError(f"nothing to resume in {args.resume}: no last/state.json")
    if is_main:
        check_output_dir(out)
    folder = prepare_model_folder(args.model) if is_main else None
    if world > 1:
        shared = [folder]
        dist.broadcast_object_list(shared, src=0)
        folder = shared[0]
    tokenizer_file = tokenizer_file_in(folder)
    if tokenizer_file is None:
        raise RunError(f"{folder}: no sentencepiece.bpe.model beside the weights")
    torch.manual_seed(args.seed)  # a new head is drawn from this
    random.seed(args.seed)
    model = load_model(folder, id2label=dict(enumerate(TAGS)))
    tokenizer = XLMRTokenizer(tokenizer_file)
    train_set, val_set, test_sets = load_data(args, tokenizer)
    model.to(device)
    amp_dtype = amp_dtype_for(args.amp, device)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

    optimizer = build_optimizer(model, args)
    # On one CPU process the dense word-embedding gradient costs more than the rest of the
    # optimizer step (see xlmr/embedding_grad.py). Under DDP the reducer expects dense gradients,
    # and on a GPU the caching allocator makes the dense one cheap.
    word_grad = RowSparseGrad(model.encoder.embeddings.word) if device.type == "cpu" and world == 1 else None
    lengths = [len(x) for x in train_set["input_ids"]]
    shares = world * args.grad_accum
    total_steps = len(epoch_batches(args, lengths, 0, shares)) * args.epochs
    scheduler = linear_schedule(optimizer, int(args.warmup_ratio * total_steps), total_steps)
    ddp_model = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    state = {"epoch": 0, "batch": 0, "step": 0, "epochs": [], "best_f1": -1.0, "best_epoch": None,
             "train_seconds": 0.0, "tokens": 0, "padded_tokens": 0, "samples": 0}
    if args.resume:
        state = load_state(resumable_state(Path(args.resume)), model, optimizer, scheduler, scaler)
        if is_main:
            print(f"resuming {args.resume} at epoch {state['epoch'] + 1}, step {state['step']}")
    log = MetricsLog(out / "metrics.jsonl", is_main, state["step"] if args.resume else None)
    collate = PaddingCollator()
    input_ids, labels = list(train_set["input_ids"]), list(train_set["labels"])
    if is_main:
        print(f"training on {len(train_set)} sentences ({' '.join(args.langs)}), validating on {len(val_set)}; "
              f"{total_steps} steps on {world} x {device}, amp {amp_dtype or 'off'}")

    # -- the loop -----------------------------------------------------------------------------
    for epoch in range(state["epoch"], args.epochs):
        batches = epoch_batches(args, lengths, epoch, shares)
        model.train()
        bar = tqdm(total=len(batches), initial=state["batch"], desc=f"epoch {epoch + 1}/{args.epochs}",
                   disable=not is_main or args.no_progress, dynamic_ncols=True)
        t_epoch = time.perf_counter()
        for b in range(state["batch"], len(batches)):
            # This process's share of the global batch, in micro-batches.
            mine = batches[b][rank::world]
            micro = [mine[i::args.grad_accum] for i in range(args.grad_accum)]
            micro_batches = [collate([{"input_ids": input_ids[i], "labels": labels[i]} for i in m]) for m in micro]
            # Normalise by the labelled tokens of the whole global batch, so the gradient is the
            # same whatever the number of processes and micro-batches.
            n_labelled = torch.tensor(float(sum(int((mb["labels"] != IGNORE).sum()) for mb in micro_batches)), device=device)
            if world > 1:
                dist.all_reduce(n_labelled)
            loss_total = torch.zeros((), device=device)
            for k, mb in enumerate(micro_batches):
                mb = {key: v.to(device, non_blocking=True) for key, v in mb.items()}
                sync = k == len(micro_batches) - 1 or world == 1
                ctx = ddp_model.no_sync() if (world > 1 and not sync) else torch.enable_grad()
                with ctx:
                    with autocast_for(device, amp_dtype):
                        logits, _ = ddp_model(mb["input_ids"], mb["attention_mask"])
                    loss_sum = F.cross_entropy(logits.float().flatten(0, 1), mb["labels"].flatten(),
                                               ignore_index=IGNORE, reduction="sum")
                    # DDP averages gradients over processes; multiply back so the sum stays a sum.
                    loss = loss_sum * world / n_labelled
                    (scaler.scale(loss) if scaler else loss).backward()
                loss_total += loss_sum.detach()
                state["tokens"] += int(mb["attention_mask"].sum())
                state["padded_tokens"] += mb["input_ids"].numel()
            if world > 1:
                dist.all_reduce(loss_total)
            step_loss = (loss_total / n_labelled).item()
            if not math.isfinite(step_loss):
                raise RunError(f"loss is {step_loss} at step {state['step'] + 1} (epoch {epoch + 1}); stopped. "
                               f"The last good checkpoint in {out} is kept; try a lower --lr or --amp off")
            if word_grad:
                word_grad.densify()
            if scaler:
                scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if word_grad:
                word_grad.clear()
            state["step"] += 1
            state["batch"] = b + 1
            state["samples"] += len(batches[b])
            lr = scheduler.get_last_lr()[0]
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}")
            if state["step"] % args.logging_steps == 0:
                log.write(type="train", step=state["step"], epoch=epoch + b / len(batches), loss=step_loss,
                          lr=lr, grad_norm=float(grad_norm))
            if args.save_steps and state["step"] % args.save_steps == 0 and b + 1 < len(batches):
                state["train_seconds"] += time.perf_counter() - t_epoch
                t_epoch = time.perf_counter()
                if is_main:
                    save_state(out / "last", model, optimizer, scheduler, scaler, state)
        bar.close()
        state["train_seconds"] += time.perf_counter() - t_epoch

        # -- validation at the end of each epoch ----------------------------------------------
        t0 = time.perf_counter()
        val = evaluate(model, val_set, model.config.id2label, args.eval_batch_size, device, amp_dtype,
                       progress=not args.no_progress, desc="validation")
        record = {"epoch": epoch + 1, "step": state["step"], "val_loss": val["loss"], "val_f1": val["f1"],
                  "eval_seconds": time.perf_counter() - t0}
        state["epochs"].append(record)
        log.write(type="eval", **record)
        if is_main:
            print(f"epoch {epoch + 1}: validation loss {val['loss']:.4f}, F1 {val['f1']:.4f}")
            if val["f1"] > state["best_f1"]:
                save_model(model, out, tokenizer_file=tokenizer_file)
        if val["f1"] > state["best_f1"]:
            state["best_f1"], state["best_epoch"] = val["f1"], epoch + 1
        state["epoch"], state["batch"] = epoch + 1, 0
        if is_main:
            save_state(out / "last", model, optimizer, scheduler, scaler, state)
        model.train()

    # -- test the best epoch on every evaluation language -----------------------------------
    if world > 1:
        dist.barrier()  # rank 0 has written the best weights
    best = load_model(out).to(device)
    tests = {}
    for lang, ds in test_sets.items():
        r = evaluate(best, ds, best.config.id2label, args.eval_batch_size, device, amp_dtype,
                     progress=not args.no_progress, desc=f"test {lang}")
        tests[lang] = {"f1": r["f1"], "precision": r["precision"], "recall": r["recall"],
                       "loss": r["loss"], "sentences": r["sentences"]}
        log.write(type="test", step=state["step"], lang=lang, **tests[lang])
    results = {
        "config": vars(args) | {"model_folder": str(folder), "world_size": world, "device": str(device),
                                "amp_dtype": str(amp_dtype), "train_sentences": len(train_set),
                                "validation_sentences": len(val_set), "total_steps": total_steps},
        "epochs": state["epochs"],
        "best_epoch": state["best_epoch"],
        "test_f1": {lang: r["f1"] for lang, r in tests.items()},
        "test": tests,
        "throughput": throughput(state, model, device, args.peak_tflops),
    }
    if is_main:
        write_json_atomic(out / "results.json", results)
        shutil.rmtree(out / "last.old", ignore_errors=True)
        if not args.keep_last:
            shutil.rmtree(out / "last", ignore_errors=True)
        print(f"\nbest epoch {state['best_epoch']} (validation F1 {state['best_f1']:.4f}); "
              f"trained in {state['train_seconds']:.0f} s")
        print(f1_table(results["test_f1"]))
        print(f"wrote {out}")
    if world > 1:
        dist.destroy_process_group()
    return results


def throughput(state: dict, model, device: torch.device, peak_tflops: float | None) -> dict:
    seconds = max(state["train_seconds"], 1e-9)
    # Training FLOPs per token ~ 6 x the parameters that multiply (not the embedding lookups).
    flops_per_token = 6 * sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    achieved = flops_per_token * state["padded_tokens"] / seconds
    result = {
        "train_seconds": seconds,
        "samples_per_second": state["samples"] / seconds,
        "tokens_per_second": state["tokens"] / seconds,
        "padded_tokens_per_second": state["padded_tokens"] / seconds,
        "padding_share": 1 - state["tokens"] / max(state["padded_tokens"], 1),
        "model_tflops_per_second": achieved / 1e12,
        "peak_memory_mb": peak_memory_mb(device),
    }
    if peak_tflops:
        result["mfu"] = achieved / (peak_tflops * 1e12)
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        train(args)
    except (RunError, CheckpointError, PanxError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
