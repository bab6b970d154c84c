"""The training loop against what a user would pick instead: transformers' Trainer, tuned.

    python ../shared/models/multilingual-e5-small-q4/build_hf_checkpoint.py runs/e5-hf
    python -m benchmarks.trainer --hf-model runs/e5-hf --data-dir ../shared/data/panx --steps 60 --rounds 2

Both train e5-small on the same German Swiss-mix sentences, batches of 24, the book's learning
rate and weight decay, for `--steps` optimizer steps. The Trainer gets every speed flag a user
can set without changing the recipe: length-grouped batches, fused AdamW, and bf16 where it is fast
(where `--amp auto`'s probe measures it faster than fp32: AVX-512 BF16 or AMX; elsewhere bf16
autocast is ~100x slower than fp32, so a user would not set it). Ours runs with its defaults (`--amp auto`). The runs
alternate, `--rounds` of each, and the best of each counts: samples/s over the training steps,
as each reports it (the Trainer's `train_samples_per_second`, our `results.json` throughput).
Needs the `bench` extra (`pip install -e .[bench]`: transformers and accelerate, which the Trainer requires).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.provenance import provenance, summary, write_result
from loaders.align import encode_ner
from loaders.panx import swiss_corpus
from runtime.precision import cpu_choice
from training import TrainConfig, train
from training.prepare import prepare_model_folder
from xlmr.tokenizer import XLMRTokenizer


def fast_bf16() -> bool:
    """Whether a user would set the Trainer's bf16 here: where `--amp auto`'s probe measures bf16
    faster than fp32. The CPU's flags alone would say yes under an imitated AVX2-only CPU
    (docs/speed.md), where bf16 runs at ~1 GFLOP/s."""
    return cpu_choice()[0] is torch.bfloat16


def tuned_trainer(hf_model: Path, data_dir: str, steps: int, batch_size: int, bf16: bool) -> float:
    """samples/s of the Trainer with length-grouped batches, fused AdamW and, with `bf16`, bf16 autocast."""
    from transformers import (AutoModelForTokenClassification, DataCollatorForTokenClassification, Trainer,
                              TrainingArguments, XLMRobertaTokenizerFast)

    tokenizer = XLMRTokenizer(hf_model / "sentencepiece.bpe.model")
    sentences = encode_ner(swiss_corpus(data_dir, ["de"])["de"], tokenizer)["train"]
    sentences = sentences.select_columns(["input_ids", "labels"])
    hf_tok = XLMRobertaTokenizerFast(tokenizer_file=str(hf_model / "tokenizer.json"))
    model = AutoModelForTokenClassification.from_pretrained(hf_model, num_labels=7)
    flags = {"optim": "adamw_torch_fused", "bf16": bf16}
    # The flag's name changed across transformers versions.
    if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__:
        flags["train_sampling_strategy"] = "group_by_length"
    else:
        flags["group_by_length"] = True
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(out, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=5e-5,
                                 weight_decay=0.01, report_to=[], save_strategy="no", logging_strategy="no",
                                 eval_strategy="no", disable_tqdm=True, use_cpu=True, **flags)
        trainer = Trainer(model=model, args=args, train_dataset=sentences,
                          data_collator=DataCollatorForTokenClassification(hf_tok))
        return trainer.train().metrics["train_samples_per_second"]


def ours(model: Path, data_dir: str, steps: int, batch_size: int) -> float:
    """samples/s of the training loop with its defaults over `steps` steps."""
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(langs=["de"], eval_langs=["de"], model=str(model), data_dir=data_dir, epochs=1,
                          num_samples=steps * batch_size, batch_size=batch_size, output_dir=out,
                          no_progress=True, save_steps=0)
        return train(cfg)["throughput"]["samples_per_second"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hf-model", required=True, type=Path, help="Hugging Face checkpoint folder of e5-small")
    p.add_argument("--model", default=None, help="our converted folder (default: converted into weights/)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=24)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--output", type=Path, default=Path("runs/trainer/trainer.json"))
    args = p.parse_args(argv)
    record = provenance(__file__, sys.argv[1:] if argv is None else argv)
    print(summary(record))
    model = Path(args.model) if args.model else prepare_model_folder(str(args.hf_model))
    bf16 = fast_bf16()
    runs: dict[str, list[float]] = {"trainer": [], "ours": []}
    for _ in range(args.rounds):
        runs["trainer"].append(tuned_trainer(args.hf_model, args.data_dir, args.steps, args.batch_size, bf16))
        runs["ours"].append(ours(model, args.data_dir, args.steps, args.batch_size))
        print({k: [round(x, 1) for x in v] for k, v in runs.items()})
    best = {k: max(v) for k, v in runs.items()}
    trainer_row = f"Trainer: group_by_length, fused AdamW, {'bf16' if bf16 else 'fp32'}"
    markdown = (f"{args.steps} steps of {args.batch_size} German sentences, best of {args.rounds} alternating runs:\n\n"
                "| | samples/s | ratio |\n|---|---:|---:|\n"
                f"| {trainer_row} | {best['trainer']:.1f} | 1.00x |\n"
                f"| xlmr-ner, defaults | {best['ours']:.1f} | **{best['ours'] / best['trainer']:.2f}x** |\n")
    print(markdown)
    write_result(args.output, {"steps": args.steps, "batch_size": args.batch_size, "trainer_bf16": bf16,
                               "runs": runs, "best": best, "ratio": best["ours"] / best["trainer"]},
                 record, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
