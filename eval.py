"""Evaluate, analyse and use fine-tuned checkpoints; run the cross-lingual experiments.

    python eval.py --model runs/de --langs de fr it en --data-dir ../shared/data/panx   # test F1
    python eval.py tag --model runs/de "Jeff Dean ist ein Informatiker bei Google"
    python eval.py tag --model runs/de --input corpus.txt --output tagged.jsonl   # a corpus; rerun to resume
    python eval.py errors --model runs/de --langs de --data-dir ../shared/data/panx --token '▁('
    python eval.py experiments --model weights/e5-small --data-dir ../shared/data/panx [--quick]
    python eval.py sweep --model runs/en runs/de --data-dir ../shared/data/panx-xtreme   # zero-shot, 39 languages
    python eval.py serve --model runs/de [--host 127.0.0.1] [--port 8000]                # the API and its page

This file is the command line only: argument parsing and printing. The work is done by
`evaluation` (prediction, scoring, error analysis), `xlmr.tagger` and `experiments`.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from evaluation.flags import (add_serve_command, add_sweep_command, add_tag_command, add_test_and_errors_commands,
                              common_flags)
from evaluation.reports import format_rows, write_json_atomic, write_text_atomic
from loaders.conll import NerDataError
from runtime.compile import compile_if_chosen
from runtime.devices import process_device
from runtime.inference import ready_for_inference
from xlmr.atomic import WriteError
from xlmr.weights import CheckpointError

COMMANDS = ("test", "tag", "errors", "experiments", "sweep", "serve")
ERRORS = (CheckpointError, NerDataError, FileNotFoundError, ValueError, RuntimeError, WriteError)


def load_for_cli(args, model_dir: str | None = None):
    """(the checkpoint on --device, ready for inference at --amp's precision, its tokenizer, the
    device, the autocast dtype); its layers compiled where --compile (the sweep's) chooses to."""
    from xlmr.tokenizer import XLMRTokenizer
    from xlmr.weights import load_model

    model_dir, device = model_dir or args.model, torch.device(args.device)
    tokenizer = XLMRTokenizer(Path(model_dir) / "sentencepiece.bpe.model")
    model = load_model(model_dir, for_inference=True)  # a checkpoint without its head is no tagger: refused
    compile_choice = getattr(args, "compile", "off")
    model, amp, _ = ready_for_inference(model, device, args.amp, getattr(args, "quantize", "off"), tokenizer,
                                        prepack=compile_choice != "on")
    compile_if_chosen(model, compile_choice, device)
    return model, tokenizer, device, amp


def test_sets(args, labels: list[str]):
    """name -> a loader of the raw set to score, in the model's label ids (loaders/data.py):
    --test-file(s), else PAN-X languages (the test split, or `errors`' --split)."""
    from loaders.data import ner_data

    source = ner_data(eval_langs=args.langs, data_dir=args.data_dir, full_splits=args.full_splits,
                      test_files=args.test_file)
    source.check()
    return source.evaluation(labels, getattr(args, "split", "test"))


def cmd_test(args) -> int:
    from datasets import DatasetDict

    from evaluation.predict import evaluate
    from evaluation.scoring import f1_table
    from loaders.align import encode_ner

    model, tokenizer, device, amp = load_for_cli(args)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    results = {"model": str(args.model), "split": "test", "full_splits": args.full_splits,
               "decode": args.decode, "unspaced": args.unspaced, "langs": {}}
    for lang, load in test_sets(args, labels).items():
        encoded = encode_ner(DatasetDict({"test": load()}), tokenizer, max_length=args.max_length,
                             unspaced=args.unspaced)["test"]
        t0 = time.perf_counter()
        r = evaluate(model, encoded, model.config.id2label, args.batch_size, device, amp, progress=True,
                     desc=f"{lang} test", report=True, decode=args.decode)
        r["seconds"] = time.perf_counter() - t0
        print(f"\n== {lang} ({r['sentences']} sentences): F1 {r['f1']:.4f}\n{r['report_text']}")
        results["langs"][lang] = r
    print(f1_table({lang: r["f1"] for lang, r in results["langs"].items()}))
    if args.output:
        write_json_atomic(Path(args.output), results)
        print(f"wrote {args.output}")
    return 0


def cmd_tag_corpus(args) -> int:
    """--input FILE --output FILE: a whole corpus, streamed, resumable, sharded under torchrun."""
    import os

    import torch.distributed as dist

    from evaluation.corpus import tag_corpus
    from xlmr.tagger import Tagger

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        args.device = str(process_device(args.device))  # each rank on its own GPU (cuda:LOCAL_RANK), taken first
        dist.init_process_group("gloo")  # the chunks are shared out by rank; see evaluation/corpus.py
    model, tokenizer, device, amp = load_for_cli(args)
    tagger = Tagger(model, tokenizer, device, amp, batch_size=args.batch_size)
    r = tag_corpus(tagger, Path(args.input), Path(args.output), args.chunk_lines, args.aggregation, args.decode)
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(f"{r['written']} of {r['lines']} lines in {args.output}; {r['tagged_here']} tagged by this process "
              f"in {r['seconds']:.1f} s ({r['texts_per_s']:.1f} texts/s)")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def cmd_tag(args) -> int:
    from evaluation.corpus import read_chunks
    from xlmr.tagger import Tagger

    if args.input and not Path(args.input).is_file():
        raise FileNotFoundError(f"no input file at {args.input}")
    if args.input and args.output:
        return cmd_tag_corpus(args)
    texts = list(args.texts)
    if args.input:  # without --output: its texts printed like the arguments'
        texts += [text for _, lines in read_chunks(Path(args.input), 1 << 20) for _, _, text in lines]
    if not texts:
        raise ValueError("nothing to tag; give texts as arguments or --input")
    model, tokenizer, device, amp = load_for_cli(args)
    tagger = Tagger(model, tokenizer, device, amp, batch_size=args.batch_size)
    results = tagger(texts, aggregation=args.aggregation, decode=args.decode)
    for n, r in enumerate(results):
        print(f"\n== text {n + 1}: {len(r.words)} words, {len(r.tokens)} tokens")
        if not args.no_tokens:
            rows = [{"token": t, "word": w, "tag": g, "score": s}
                    for t, w, g, s in zip(r.tokens, r.token_words, r.token_tags, r.token_scores)]
            print(format_rows(rows, ["token", "word", "tag", "score"]))
        ents = [{"type": e.type, "text": e.text, "start": e.start, "end": e.end, "score": e.score} for e in r.entities]
        print(f"\nentities ({args.aggregation}, {args.decode}):" if ents else "\nno entities")
        if ents:
            print(format_rows(ents, ["type", "text", "start", "end", "score"]))
    if args.output:
        write_json_atomic(Path(args.output), [asdict(r) for r in results])
        print(f"wrote {args.output}")
    return 0


def cmd_errors(args) -> int:
    from datasets import DatasetDict, concatenate_datasets

    from evaluation.errors import error_analysis
    from loaders.align import encode_ner

    model, tokenizer, device, amp = load_for_cli(args)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    # Only the split analysed, in the model's label ids.
    parts = [encode_ner(DatasetDict({"x": load()}), tokenizer)["x"]
             for load in test_sets(args, labels).values()]
    for token in args.token:
        if tokenizer.convert_tokens_to_ids([token])[0] == tokenizer.unk_id and token != "<unk>":
            raise ValueError(f"{token!r} is not a sub-word of the vocabulary (sub-words that start a word "
                             f"begin with '▁', e.g. '▁(')")
    out_dir = Path(args.output_dir) if args.output_dir else Path(args.model) / "errors"
    print(error_analysis(model, concatenate_datasets(parts), tokenizer, out_dir, args.top, args.token,
                         args.batch_size, device, amp, args.decode))
    print(f"wrote {out_dir}")
    return 0


def cmd_sweep(args) -> int:
    from evaluation.sweep import (find_test_sets, mean_line, side_by_side, summarise, sweep, trained_langs,
                                  write_sweep_reports)

    test_sets = find_test_sets(Path(args.data_dir), args.langs)
    summaries = {}
    decodes = tuple(dict.fromkeys(args.decode))
    for model_dir in map(Path, args.model):
        model, tokenizer, device, amp = load_for_cli(args, str(model_dir))
        out_dir = Path(args.output_dir) / model_dir.name if args.output_dir else model_dir / "sweep"
        print(f"== {model_dir}: {len(test_sets)} languages -> {out_dir}")
        t0 = time.perf_counter()
        by_decode = sweep(model, tokenizer, test_sets, out_dir, args.batch_size, device, amp, decodes=decodes,
                          unspaced=args.unspaced)
        seconds = time.perf_counter() - t0
        for decode, results in by_decode.items():
            folder = out_dir if len(decodes) == 1 else out_dir / decode
            summary = summarise(results, trained_langs(model_dir))
            summary |= {"decode": decode, "unspaced": args.unspaced, "seconds": seconds}
            write_sweep_reports(summary, folder)
            columns = ["lang", "name", "script", "sentences", "entities", "precision", "recall", "f1"]
            print(f"-- decoding: {decode}, Han/kana: {args.unspaced}\n{format_rows(summary['rows'], columns)}")
            print(f"{mean_line(summary)}; {seconds:.0f} s\nwrote {folder}")
            summaries[model_dir.name + ("" if len(decodes) == 1 else f" {decode}")] = summary
    if len(summaries) > 1:
        table = side_by_side(summaries)
        print("\n" + table)
        if args.output_dir:
            write_text_atomic(Path(args.output_dir) / "compare.md", table)
            print(f"wrote {Path(args.output_dir) / 'compare.md'}")
    return 0


def cmd_serve(args) -> int:
    import os

    from serving.server import API_KEY_ENV, build_service, check_exposure, serve

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    check_exposure(args.host, api_key, args.no_auth)
    service = build_service(args.model, args.device, args.amp, args.max_batch, decode=args.decode,
                            max_queued_texts=args.max_queue, deadline_s=args.deadline, api_key=api_key,
                            quantize=args.quantize)
    serve(service, args.host, args.port)
    return 0


def build_parser(with_experiments: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    add_test_and_errors_commands(sub, common_flags)
    add_tag_command(sub, common_flags)
    if with_experiments:
        from experiments.command import add_experiments_command  # loads the training side

        add_experiments_command(sub)
    add_sweep_command(sub, common_flags)
    add_serve_command(sub, common_flags)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS + ("-h", "--help"):
        argv = ["test", *argv]  # `python eval.py --model DIR --langs ...` is the test command
    args = build_parser(with_experiments=argv[0] in ("experiments", "-h", "--help")).parse_args(argv)
    command = getattr(args, "run", None) or {"test": cmd_test, "tag": cmd_tag, "errors": cmd_errors,
               "sweep": cmd_sweep, "serve": cmd_serve}[args.command]
    try:
        return command(args)
    except ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
