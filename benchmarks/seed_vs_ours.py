"""Training throughput: the seed pipeline (transformers' Trainer, fp32, batch 24) against ours,
on the same German Swiss-mix sentences, in one process, one after the other.

    python ../shared/models/multilingual-e5-small-q4/build_hf_checkpoint.py /tmp/e5-hf
    python benchmarks/seed_vs_ours.py --hf-model /tmp/e5-hf --data-dir ../shared/data/panx --steps 150

Needs the test extra (transformers) and accelerate, which the Trainer requires. Prints samples/s
of each and their ratio; the ratio, not the absolute numbers, is what carries to other machines.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from training import TrainConfig, train  # noqa: E402
from training.prepare import prepare_model_folder  # noqa: E402
from loaders.align import encode_ner  # noqa: E402
from loaders.panx import swiss_corpus  # noqa: E402
from xlmr.tokenizer import XLMRTokenizer  # noqa: E402


def seed_trainer(hf_model: Path, data_dir: str, steps: int, batch_size: int, tuned: bool = False) -> float:
    """samples/s of the book's Trainer set-up for `steps` optimizer steps; `tuned` adds every
    speed flag a user can set without changing the recipe: length-grouped batches and fused
    AdamW (fp32, as the seed)."""
    from transformers import (AutoModelForTokenClassification, DataCollatorForTokenClassification, Trainer,
                              TrainingArguments, XLMRobertaTokenizerFast)

    tokenizer = XLMRTokenizer(hf_model / "sentencepiece.bpe.model")
    train = encode_ner(swiss_corpus(data_dir, ["de"])["de"], tokenizer)["train"].select_columns(["input_ids", "labels"])
    hf_tok = XLMRobertaTokenizerFast(tokenizer_file=str(hf_model / "tokenizer.json"))
    model = AutoModelForTokenClassification.from_pretrained(hf_model, num_labels=7)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(out, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=5e-5,
                                 weight_decay=0.01, report_to=[], save_strategy="no", logging_strategy="no",
                                 eval_strategy="no", disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
                                 **tuned_flags(train) if tuned else {})
        trainer = Trainer(model=model, args=args, train_dataset=train,
                          data_collator=DataCollatorForTokenClassification(hf_tok))
        metrics = trainer.train().metrics
    return metrics["train_samples_per_second"]


def tuned_flags(train) -> dict:
    from transformers import TrainingArguments

    flags = {"optim": "adamw_torch_fused"}
    # The flag's name changed across transformers versions.
    if "train_sampling_strategy" in TrainingArguments.__dataclass_fields__:
        flags["train_sampling_strategy"] = "group_by_length"
    else:
        flags["group_by_length"] = True
    return flags


def ours(model: Path, data_dir: str, steps: int, batch_size: int, amp: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(langs=["de"], eval_langs=["de"], model=str(model), data_dir=data_dir, epochs=1,
                          num_samples=steps * batch_size, batch_size=batch_size, amp=amp, output_dir=out,
                          no_progress=True, save_steps=0)
        results = train(cfg)
    return results["throughput"]["samples_per_second"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hf-model", required=True, type=Path, help="Hugging Face checkpoint folder")
    p.add_argument("--model", default=None, help="our converted folder (default: converted into weights/)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=24)
    p.add_argument("--amp", default="auto")
    args = p.parse_args()
    model = Path(args.model) if args.model else prepare_model_folder(str(args.hf_model))
    reference = seed_trainer(args.hf_model, args.data_dir, args.steps, args.batch_size)
    tuned = seed_trainer(args.hf_model, args.data_dir, args.steps, args.batch_size, tuned=True)
    mine = ours(model, args.data_dir, args.steps, args.batch_size, args.amp)
    print(f"\n{args.steps} steps of {args.batch_size} German sentences, one run after the other:")
    print(f"| seed Trainer (fp32) | {reference:.1f} samples/s | 1.00x |")
    print(f"| Trainer, group_by_length + fused AdamW (fp32) | {tuned:.1f} samples/s | {tuned / reference:.2f}x |")
    print(f"| xlmr-ner (--amp {args.amp}) | {mine:.1f} samples/s | {mine / reference:.2f}x "
          f"({mine / tuned:.2f}x the tuned Trainer) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
