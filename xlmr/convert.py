"""Convert a checkpoint to our layout, or ours back to Hugging Face's.

    python -m xlmr.convert SRC DST            # Hugging Face folder or hub id -> our checkpoint
    python -m xlmr.convert SRC DST --to-hf    # our checkpoint -> Hugging Face layout

The ONNX export is applied to a loaded model from outside the model package:
`python -m runtime.onnx_export SRC DST`.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from .weights import CheckpointError, export_hf, load_model, resolve_folder, save_model, tokenizer_file_in


def convert(src, dst, to_hf: bool = False, labels: list[str] | None = None) -> None:
    folder = resolve_folder(src)
    with warnings.catch_warnings():  # a head-less source stays head-less unless --labels asks for one
        warnings.simplefilter("ignore" if not labels else "default")
        model = load_model(folder, id2label=dict(enumerate(labels)) if labels else None)
    tokenizer = tokenizer_file_in(folder)
    if to_hf:
        export_hf(model, dst, tokenizer_file=tokenizer)
    else:
        # A pretrained encoder without a head is saved without one: a random head baked in here
        # would come from whatever the random state was at conversion, not from the run's --seed.
        save_model(model, dst, tokenizer_file=tokenizer, with_head=bool(labels) or not model.head_is_new)
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
    except (CheckpointError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
