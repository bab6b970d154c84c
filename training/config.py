"""Every setting of a training run in one dataclass, with the book's recipe as the defaults.

`train_loop.py` turns these fields into command-line flags (the `help` metadata is the flag's
help text), and the experiments build a `TrainConfig` directly, so a setting has one default in
one place.
"""
from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

from xlmr.compile import COMPILE_CHOICES
from xlmr.decoding import DECODINGS
from xlmr.model import HEADS
from xlmr.precision import AMP_CHOICES
from xlmr.tokenizer import UNSPACED

DEFAULT_MODEL = "xlm-roberta-base"


class RunError(Exception):
    """A problem found before or during training, reported as one clear line."""


@dataclass
class TrainConfig:
    langs: list[str] = field(default_factory=lambda: ["de"], metadata={"help": "training languages (default: de)"})
    model: str = field(default=DEFAULT_MODEL, metadata={
        "help": "our checkpoint folder, a Hugging Face folder or a hub id (converted into weights/)"})
    data_dir: str | None = field(default=None, metadata={"help": "PAN-X folder (default: $PANX_DATA_DIR, else the hub)"})
    train_file: str | None = field(default=None, metadata={
        "help": "your own training data instead of PAN-X: CoNLL (token ... tag), .jsonl or .parquet with tokens and "
                "ner_tags; its labels become the model's"})
    validation_file: str | None = field(default=None, metadata={"help": "with --train-file: the data to pick the best epoch on"})
    test_file: str | None = field(default=None, metadata={"help": "with --train-file: test data, scored at the end"})
    output_dir: str | None = field(default=None, metadata={
        "help": "where the run is written (default: runs/<langs>, or runs/<train file name>)"})
    epochs: int = 3
    batch_size: int = field(default=24, metadata={"help": "sentences per optimizer step, over all processes"})
    eval_batch_size: int = 64
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    grad_accum: int = field(default=1, metadata={"help": "split each batch into this many micro-batches"})
    num_samples: int | None = field(default=None, metadata={"help": "train on a seeded subset of N sentences"})
    max_length: int = 512
    seed: int = 42
    amp: str = field(default="auto", metadata={
        "choices": AMP_CHOICES, "help": "autocast: auto = bf16 on GPUs (fp16 + gradient scaler without bf16) and on "
        "CPUs with native bf16 where a probe finds it faster; else fp32"})
    compile: str = field(default="auto", metadata={
        "choices": COMPILE_CHOICES, "help": "torch.compile the encoder layers (auto: where measured to help)"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 ... (default: cuda if available)"})
    eval_langs: list[str] = field(default_factory=lambda: ["de", "fr", "it", "en"], metadata={
        "help": "PAN-X test sets to score the best epoch on (not with --train-file)"})
    full_splits: bool = field(default=False, metadata={"help": "whole PAN-X splits instead of the Swiss-mix subsets"})
    random_batches: bool = field(default=False, metadata={"help": "plain shuffled batches instead of length-grouped ones"})
    head: str = field(default="linear", metadata={
        "choices": HEADS, "help": "linear = each word's cross-entropy (the book's); crf = a linear-chain "
        "CRF on top, trained on each sentence's likelihood, whose learnt transitions then decode (xlmr/crf.py)"})
    decode: str = field(default="viterbi", metadata={
        "choices": DECODINGS, "help": "how word scores become tags in validation and test: viterbi = the best "
        "valid IOB2 sequence, with the tag-transition prior once fitted (default), iob2 = the constraints alone, "
        "argmax = each word alone (the book's)"})
    transition_prior: str = field(default="fit", metadata={
        "choices": ("fit", "off"), "help": "fit = after training, count tag transitions over the training set and "
        "weight them in Viterbi decoding as validation F1 chooses (default; training/transitions.py), off = the "
        "IOB2 constraints alone"})
    unspaced: str = field(default="runs", metadata={
        "choices": UNSPACED, "help": "alignment: runs = each run of Han/kana words (PAN-X writes zh and ja a "
        "character per word) tokenised as one string, and a word's label moved off a bare '▁' onto its next piece "
        "(default); words = the book's: each word alone, labelled on its first piece"})
    logging_steps: int = 50
    save_steps: int = field(default=200, metadata={
        "help": "save the training state every N steps (0: epoch ends only)"})
    resume: str | None = field(default=None, metadata={
        "help": "output folder of an interrupted run to continue; pass the run's other arguments unchanged"})
    keep_last: bool = field(default=False, metadata={"help": "keep last/ (the resumable training state) after the run"})
    peak_tflops: float | None = field(default=None, metadata={"help": "device peak, to report model FLOPs utilisation"})
    no_progress: bool = field(default=False, metadata={"help": "no progress bars"})


def command_line(cfg: TrainConfig) -> list[str]:
    """The flags of `python train_loop.py` that give this configuration: those off their default."""
    argv = []
    for f in fields(cfg):
        value, default = getattr(cfg, f.name), f.default_factory() if f.default_factory is not MISSING else f.default
        if value == default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag)
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv
