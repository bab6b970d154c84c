"""The flags of `python eval.py`'s commands, one function a command; eval.py builds its parser
from them (`experiments` adds its own command, in experiments/command.py). A flag is here when a
user of the command needs it; the knobs only a measurement used live on as the functions'
arguments (evaluation.sweep.sweep's chunk_sentences, xlmr.tagger.Tagger's stride, ...)."""
from __future__ import annotations

import torch

from loaders.panx import SWISS_LANGS
from runtime.compile import COMPILE_CHOICES
from runtime.precision import AMP_CHOICES
from runtime.quantize import QUANTIZE_CHOICES
from xlmr.decoding import DECODINGS
from xlmr.tagger import AGGREGATIONS
from xlmr.tokenizer import UNSPACED



def add_serve_command(sub, common) -> None:
    v = sub.add_parser("serve", help="an HTTP tagging service and its page (needs the serve extra)")
    common(v)
    quantize_flag(v)
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--max-batch", type=int, default=32, help="texts tagged together at most (1: each text alone)")
    v.add_argument("--max-queue", type=int, default=256,
                   help="texts that may wait at once; past that, requests get 503 with Retry-After")
    v.add_argument("--deadline", type=float, default=10.0, help="seconds a request may wait before a 503")
    v.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on /api/tag (or set $XLMR_NER_API_KEY); needed to "
                        "bind beyond 127.0.0.1")
    v.add_argument("--no-auth", action="store_true", help="serve beyond 127.0.0.1 without an API key")


def add_sweep_command(sub, common) -> None:
    w = sub.add_parser("sweep", help="zero-shot F1 on the test set of every language in a folder (resumable)")
    common(w, with_model=False, decodings="+")
    quantize_flag(w)
    unspaced_flag(w)
    w.add_argument("--compile", default="auto", choices=COMPILE_CHOICES,
                   help="torch.compile the encoder layers: on pays for its compile time on long sweeps (auto: off)")
    w.add_argument("--model", nargs="+", required=True, help="checkpoint folder(s); several give a side-by-side table")
    w.add_argument("--data-dir", required=True, help="folder of test-<lang>.tsv files, e.g. ../shared/data/panx-xtreme")
    w.add_argument("--langs", nargs="+", default=None, help="languages to sweep (default: every test file there)")
    w.add_argument("--output-dir", default=None,
                   help="default: <model>/sweep; with several models also their side-by-side table, compare.md")
    w.add_argument("--batch-size", type=int, default=64)


def common_flags(q, with_model=True, decodings=None) -> None:
    """The flags every command shares: the checkpoint, device, precision and decoding."""
    if with_model:
        q.add_argument("--model", required=True, help="our checkpoint folder (as written by train_loop.py)")
    q.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    q.add_argument("--amp", default="auto", choices=AMP_CHOICES)
    q.add_argument("--decode", default=["viterbi"] if decodings else "viterbi", choices=DECODINGS, nargs=decodings,
                   help="word scores to tags: viterbi = the best valid IOB2 sequence, with the run's tag-transition "
                        "prior (default), iob2 = the constraints alone, argmax = each word alone (the book's)"
                        + ("; several share one forward pass" if decodings else ""))


def quantize_flag(q) -> None:
    q.add_argument("--quantize", default="off", choices=QUANTIZE_CHOICES,
                   help="int8: the encoder's Linear weights in int8 on a CPU (dynamic quantization; --amp is then off)")


def unspaced_flag(q) -> None:
    q.add_argument("--unspaced", default="runs", choices=UNSPACED,
                   help="alignment: runs = each run of Han/kana words tokenised as one string, and a label "
                        "never on a bare '▁' (default); words = the book's: each word alone, labelled on its "
                        "first piece")


def add_test_and_errors_commands(sub, common) -> None:
    t = sub.add_parser("test", help="test F1 per language and seqeval reports (the default command)")
    common(t)
    quantize_flag(t)
    unspaced_flag(t)
    t.add_argument("--langs", nargs="+", default=list(SWISS_LANGS))
    t.add_argument("--test-file", nargs="+", default=None,
                   help="score your own data instead of PAN-X: CoNLL, .jsonl or .parquet, read against the model's labels")
    t.add_argument("--data-dir", default=None, help="PAN-X folder (default: $PANX_DATA_DIR, else the hub)")
    t.add_argument("--full-splits", action="store_true", help="whole PAN-X splits instead of the Swiss-mix subsets")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--max-length", type=int, default=512)
    t.add_argument("--output", default=None, help="write the scores and reports to this JSON file")

    e = sub.add_parser("errors", help="error analysis on a validation split: token losses, confusion matrix")
    common(e)
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
    quantize_flag(g)
    g.add_argument("texts", nargs="*", help="texts to tag (or --input)")
    g.add_argument("--input", default=None,
                   help="a file of texts: .txt (a text a line) or .jsonl ({\"text\": ..., \"id\": ...}); printed, or "
                        "with --output tagged into it, streamed and resumable, sharded over torchrun processes")
    g.add_argument("--chunk-lines", type=int, default=1024, help="with --input: lines tagged and saved together")
    g.add_argument("--aggregation", default="first", choices=AGGREGATIONS,
                   help="how a word's sub-word predictions become its tag")
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--no-tokens", action="store_true", help="print the entities only, not the token table")
    g.add_argument("--output", default=None,
                   help="write tokens and entities to this JSON file (with --input: JSON lines, one per input line)")
