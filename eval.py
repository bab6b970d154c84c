"""Evaluate, analyse and use fine-tuned checkpoints; run the cross-lingual experiments.

    python eval.py --model runs/de --langs de fr it en --data-dir ../shared/data/panx   # test F1
    python eval.py tag --model runs/de "Jeff Dean ist ein Informatiker bei Google"
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

from evaluation.reports import format_rows, write_json_atomic, write_text_atomic
from loaders.panx import PanxError, check_lang
from xlmr.compile import COMPILE_CHOICES, compile_if_chosen
from xlmr.decoding import DECODINGS
from xlmr.precision import AMP_CHOICES, amp_dtype_for, cast_linears_for_inference
from xlmr.tokenizer import UNSPACED
from xlmr.weights import CheckpointError

COMMANDS = ("test", "tag", "errors", "experiments", "sweep", "serve")
PANX_LANGS = ("de", "fr", "it", "en")
ERRORS = (CheckpointError, PanxError, FileNotFoundError, ValueError, RuntimeError)


def load_for_cli(args, model_dir: str | None = None, tokenizer_file: str | None = None):
    """(the checkpoint on --device, ready for inference at --amp's precision, its tokenizer, the
    device, the autocast dtype); its layers compiled where --compile chooses to."""
    from xlmr.tokenizer import XLMRTokenizer
    from xlmr.weights import load_model

    model_dir, device = model_dir or args.model, torch.device(args.device)
    amp = amp_dtype_for(args.amp, device)
    model = cast_linears_for_inference(load_model(model_dir).to(device), amp)
    compile_if_chosen(model, getattr(args, "compile", "off"), device)
    tokenizer = XLMRTokenizer(Path(model_dir) / "sentencepiece.bpe.model" if tokenizer_file is None else tokenizer_file)
    return model, tokenizer, device, amp


def test_sets(args, labels: list[str]):
    """name -> the raw test set, in the model's label ids: --test-file(s), else PAN-X languages."""
    from loaders.nerfiles import load_ner_file, relabel
    from loaders.panx import panx_splits

    if args.test_file:
        return {Path(f).name: (lambda f=f: load_ner_file(f, labels)) for f in args.test_file}
    for lang in args.langs:
        check_lang(lang)
    return {lang: (lambda lang=lang: relabel(panx_splits(lang, args.data_dir, args.full_splits)[args.split], labels,
                                             f"PAN-X {lang}")) for lang in args.langs}


def cmd_test(args) -> int:
    from datasets import DatasetDict

    from evaluation.predict import evaluate
    from evaluation.scoring import f1_table
    from loaders.align import encode_ner

    if args.test_file:
        for f in args.test_file:
            if not Path(f).is_file():
                raise FileNotFoundError(f"no data file at {f}")
    model, tokenizer, device, amp = load_for_cli(args, tokenizer_file=args.tokenizer)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    results = {"model": str(args.model), "split": args.split, "full_splits": args.full_splits,
               "decode": args.decode, "unspaced": args.unspaced, "langs": {}}
    for lang, load in test_sets(args, labels).items():
        encoded = encode_ner(DatasetDict({"test": load()}), tokenizer, max_length=args.max_length,
                             unspaced=args.unspaced)["test"]
        t0 = time.perf_counter()
        r = evaluate(model, encoded, model.config.id2label, args.batch_size, device, amp, progress=True,
                     desc=f"{lang} {args.split}", report=True, decode=args.decode)
        r["seconds"] = time.perf_counter() - t0
        print(f"\n== {lang} ({r['sentences']} sentences): F1 {r['f1']:.4f}\n{r['report_text']}")
        results["langs"][lang] = r
    print(f1_table({lang: r["f1"] for lang, r in results["langs"].items()}))
    if args.output:
        write_json_atomic(Path(args.output), results)
        print(f"wrote {args.output}")
    return 0


def cmd_tag(args) -> int:
    from xlmr.tagger import Tagger

    texts = list(args.texts)
    if args.file:
        try:
            texts += Path(args.file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise FileNotFoundError(f"cannot read {args.file}: {e}") from None
    if not texts:
        raise ValueError("nothing to tag; give texts as arguments or --file")
    model, tokenizer, device, amp = load_for_cli(args)
    tagger = Tagger(model, tokenizer, device, amp, args.max_length, args.stride, args.batch_size, args.unspaced)
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
    parts = [encode_ner(DatasetDict({"x": load()}), tokenizer, unspaced=args.unspaced)["x"]
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
        by_decode = sweep(model, tokenizer, test_sets, out_dir, args.batch_size, device, amp, args.chunk_sentences,
                          decodes=decodes, unspaced=args.unspaced)
        seconds = time.perf_counter() - t0
        for decode, results in by_decode.items():
            folder = out_dir if len(decodes) == 1 else out_dir / decode
            summary = summarise(results, args.train_langs or trained_langs(model_dir))
            summary |= {"decode": decode, "unspaced": args.unspaced, "seconds": seconds}
            write_sweep_reports(summary, folder)
            columns = ["lang", "name", "script", "sentences", "entities", "precision", "recall", "f1"]
            print(f"-- decoding: {decode}, Han/kana: {args.unspaced}\n{format_rows(summary['rows'], columns)}")
            print(f"{mean_line(summary)}; {seconds:.0f} s\nwrote {folder}")
            summaries[model_dir.name + ("" if len(decodes) == 1 else f" {decode}")] = summary
    if len(summaries) > 1:
        table = side_by_side(summaries)
        print("\n" + table)
        if args.compare_output:
            write_text_atomic(Path(args.compare_output), table)
            print(f"wrote {args.compare_output}")
    return 0


def cmd_serve(args) -> int:
    import os

    from serving.server import API_KEY_ENV, build_service, check_exposure, serve

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    check_exposure(args.host, api_key, args.no_auth)
    service = build_service(args.model, args.device, args.amp, args.max_batch, args.max_wait_ms,
                            batching=not args.no_batching, decode=args.decode, max_queued_texts=args.max_queue,
                            deadline_s=args.deadline, api_key=api_key)
    serve(service, args.host, args.port)
    return 0


def add_serve_command(sub, common) -> None:
    v = sub.add_parser("serve", help="an HTTP tagging service and its page (needs the serve extra)")
    common(v)
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--max-batch", type=int, default=32, help="texts tagged together at most")
    v.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="how long a batch waits for more requests once the model is free (0: it starts at once)")
    v.add_argument("--no-batching", action="store_true", help="tag every request alone")
    v.add_argument("--max-queue", type=int, default=256,
                   help="texts that may wait at once; past that, requests get 503 with Retry-After")
    v.add_argument("--deadline", type=float, default=10.0, help="seconds a request may wait before a 503")
    v.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on /api/tag (or set $XLMR_NER_API_KEY); needed to "
                        "bind beyond 127.0.0.1")
    v.add_argument("--no-auth", action="store_true", help="serve beyond 127.0.0.1 without an API key")


def add_sweep_command(sub, common) -> None:
    w = sub.add_parser("sweep", help="zero-shot F1 on the test set of every language in a folder (resumable)")
    common(w, with_model=False, compiles=True, decodings="+")
    w.add_argument("--model", nargs="+", required=True, help="checkpoint folder(s); several give a side-by-side table")
    w.add_argument("--data-dir", required=True, help="folder of test-<lang>.tsv files, e.g. ../shared/data/panx-xtreme")
    w.add_argument("--langs", nargs="+", default=None, help="languages to sweep (default: every test file there)")
    w.add_argument("--train-langs", nargs="+", default=None,
                   help="languages to mark as trained on (default: from the run's results.json)")
    w.add_argument("--output-dir", default=None, help="default: <model>/sweep")
    w.add_argument("--batch-size", type=int, default=64)
    w.add_argument("--chunk-sentences", type=int, default=40000,
                   help="sentences predicted together before results are saved (the unit of resuming)")
    w.add_argument("--compare-output", default=None, help="with several models: write the side-by-side table here")



def common_flags(q, with_model=True, compiles=False, decodings=None) -> None:
    """The flags every command shares: the checkpoint, device, precision and decoding."""
    if with_model:
        q.add_argument("--model", required=True, help="our checkpoint folder (as written by train_loop.py)")
    q.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    q.add_argument("--amp", default="auto", choices=AMP_CHOICES)
    q.add_argument("--decode", default=["viterbi"] if decodings else "viterbi", choices=DECODINGS, nargs=decodings,
                   help="word scores to tags: viterbi = the best valid IOB2 sequence (default), argmax = each word "
                        "alone (the book's)" + ("; several share one forward pass" if decodings else ""))
    q.add_argument("--unspaced", default="runs", choices=UNSPACED,
                   help="Han/kana words: runs = each run tokenised as one string (default), "
                        "words = each word alone (the book's)")
    if compiles:
        q.add_argument("--compile", default="auto", choices=COMPILE_CHOICES,
                       help="torch.compile the encoder layers (auto: where measured to help)")


def add_test_and_errors_commands(sub, common) -> None:
    t = sub.add_parser("test", help="test F1 per language and seqeval reports (the default command)")
    common(t, compiles=True)
    t.add_argument("--langs", nargs="+", default=list(PANX_LANGS))
    t.add_argument("--test-file", nargs="+", default=None,
                   help="score your own data instead of PAN-X: CoNLL, .jsonl or .parquet, read against the model's labels")
    t.add_argument("--data-dir", default=None, help="PAN-X folder (default: $PANX_DATA_DIR, else the hub)")
    t.add_argument("--split", default="test", choices=["train", "validation", "test"])
    t.add_argument("--full-splits", action="store_true", help="whole PAN-X splits instead of the Swiss-mix subsets")
    t.add_argument("--tokenizer", default=None, help="sentencepiece.bpe.model (default: the one in --model)")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--max-length", type=int, default=512)
    t.add_argument("--output", default=None, help="write the scores and reports to this JSON file")

    e = sub.add_parser("errors", help="error analysis on a validation split: token losses, confusion matrix")
    common(e, compiles=True)
    e.add_argument("--langs", nargs="+", default=["de"], help="languages whose split is analysed together")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--split", default="validation", choices=["train", "validation", "test"])
    e.add_argument("--full-splits", action="store_true")
    e.add_argument("--test-file", nargs="+", default=None, help="analyse your own data instead of PAN-X")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--top", type=int, default=10, help="rows per table and sentences shown")
    e.add_argument("--token", action="append", default=[], help="also show sentences containing this sub-word, e.g. '▁('")
    e.add_argument("--output-dir", default=None, help="where tables and the PNG go (default: <model>/errors)")


def add_tag_command(sub, common) -> None:
    g = sub.add_parser("tag", help="tag raw text: sub-word tags and entities with character offsets")
    common(g)
    g.add_argument("texts", nargs="*", help="texts to tag (or --file)")
    g.add_argument("--file", default=None, help="a UTF-8 file with one text per line")
    g.add_argument("--aggregation", default="first", choices=["first", "average", "max"],
                   help="how a word's sub-word predictions become its tag")
    g.add_argument("--max-length", type=int, default=None,
                   help="window length in tokens (default: the model's positions); longer texts are split")
    g.add_argument("--stride", type=int, default=None, help="tokens shared by neighbouring windows (default: a quarter)")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--no-tokens", action="store_true", help="print the entities only, not the token table")
    g.add_argument("--output", default=None, help="write tokens and entities to this JSON file")


def build_parser(with_experiments: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    add_test_and_errors_commands(sub, common_flags)
    add_tag_command(sub, common_flags)
    if with_experiments:
        from experiments.command import add_experiments_command  # loads the training side

        add_experiments_command(sub, common_flags)
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
