"""Convert a checkpoint to our layout, or ours back to Hugging Face's.

    python -m xlmr.convert SRC DST            # Hugging Face folder or hub id -> our checkpoint
    python -m xlmr.convert SRC DST --to-hf    # our checkpoint -> Hugging Face layout
"""
from __future__ import annotations

import argparse
import sys

from .weights import CheckpointError, export_hf, load_model, resolve_folder, save_model, tokenizer_file_in


def convert(src, dst, to_hf: bool = False, labels: list[str] | None = None) -> None:
    folder = resolve_folder(src)
    model = load_model(folder, id2label=dict(enumerate(labels)) if labels else None)
    tokenizer = tokenizer_file_in(folder)
    (export_hf if to_hf else save_model)(model, dst, tokenizer_file=tokenizer)
    if tokenizer is None:
        print(f"note: {folder} has no sentencepiece.bpe.model; copy one into {dst} before training", file=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m xlmr.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="checkpoint folder (Hugging Face or ours) or a Hugging Face Hub id")
    p.add_argument("dst", help="folder to write")
    p.add_argument("--to-hf", action="store_true", help="write the Hugging Face layout instead of ours")
    p.add_argument("--labels", nargs="+", default=None,
                   help="give a checkpoint without a head a new head with these labels, e.g. PAN-X's "
                        "O B-PER I-PER B-ORG I-ORG B-LOC I-LOC")
    args = p.parse_args(argv)
    try:
        convert(args.src, args.dst, to_hf=args.to_hf, labels=args.labels)
    except (CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
