"""Every setting of a training run in one dataclass, with the book's recipe as the defaults.

`train_loop.py` turns the fields above the "settings" line into command-line flags (the `help`
metadata is the flag's help text); the fields below it, knobs that only a measurement needs, have
no flag of their own and are set with `--set name=value` (nanoGPT's configurator, one option for
all of them). The experiments build a `TrainConfig` directly, so a setting has one default in one
place.
"""
from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields

from runtime.compile import COMPILE_CHOICES
from runtime.precision import AMP_CHOICES
from xlmr.crf import HEADS
from xlmr.decoding import DECODINGS
from xlmr.tokenizer import UNSPACED

DEFAULT_MODEL = "xlm-roberta-base"


class RunError(Exception):
    """A problem found before or during training, reported as one clear line."""


def setting(default, help: str, **metadata):
    """A field without a flag of its own, set with `--set name=value`."""
    return field(default=default, metadata={"help": help, "setting": True, **metadata})


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
    teacher: str | None = field(default=None, metadata={
        "help": "adapt this checkpoint of ours to --unlabeled-file: its tags on that text train the student, which "
                "starts from the teacher's weights unless --model names another start; validation and test data are "
                "the teacher's own, as its results.json records them (docs/adaptation.md)"})
    unlabeled_file: list[str] = field(default_factory=list, metadata={
        "help": "with --teacher: text to adapt to, a file per language: a text a line, or .jsonl with tokens or text"})
    output_dir: str | None = field(default=None, metadata={
        "help": "where the run is written (default: runs/<langs>, or runs/<train file name>)"})
    epochs: int = 3
    batch_size: int = field(default=24, metadata={"help": "sentences per optimizer step, over all processes"})
    lr: float = 5e-5
    grad_accum: int = field(default=1, metadata={"help": "split each batch into this many micro-batches"})
    num_samples: int | None = field(default=None, metadata={"help": "train on a seeded subset of N sentences"})
    max_length: int = 512
    seed: int = 42
    amp: str = field(default="auto", metadata={
        "choices": AMP_CHOICES, "help": "autocast: auto = bf16 on GPUs (fp16 + gradient scaler without bf16) and on "
        "CPUs with native bf16 where a probe finds it faster; else fp32"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1 ... (default: cuda if available)"})
    eval_langs: list[str] = field(default_factory=lambda: ["de", "fr", "it", "en"], metadata={
        "help": "PAN-X test sets to score the best epoch on (not with --train-file)"})
    full_splits: bool = field(default=False, metadata={"help": "whole PAN-X splits instead of the Swiss-mix subsets"})
    head: str = field(default="linear", metadata={
        "choices": HEADS, "help": "linear = each word's cross-entropy (the book's); crf = a linear-chain "
        "CRF on top, trained on each sentence's likelihood, whose learnt transitions then decode (xlmr/crf.py)"})
    decode: str = field(default="viterbi", metadata={
        "choices": DECODINGS, "help": "how word scores become tags in validation and test: viterbi = the best "
        "valid IOB2 sequence, with the tag-transition prior once fitted (default), iob2 = the constraints alone, "
        "argmax = each word alone (the book's)"})
    save_steps: int = field(default=200, metadata={
        "help": "save the training state every N steps (0: epoch ends only)"})
    resume: str | None = field(default=None, metadata={
        "help": "output folder of an interrupted run to continue; pass the run's other arguments unchanged"})
    keep_last: bool = field(default=False, metadata={"help": "keep last/ (the resumable training state) after the run"})
    no_progress: bool = field(default=False, metadata={"help": "no progress bars"})
    # ---- settings: no flag of their own; `python train_loop.py --set name=value` --------------------
    eval_batch_size: int = setting(64, "sentences per batch in validation and test")
    weight_decay: float = setting(0.01, "AdamW's decoupled weight decay (not on biases and LayerNorm weights)")
    warmup_ratio: float = setting(0.0, "share of the steps over which the learning rate warms up from 0")
    max_grad_norm: float = setting(1.0, "gradient clipping")
    # 20: fp16's gradient scaler halves its scale on each overflow and needs 16 skips in a row to
    # go from 65536 to 1; a healthy run never needs that many, a corrupt batch or two is skipped.
    max_skipped_in_a_row: int = setting(20, "stop the run after this many steps in a row skipped for a non-finite "
                                        "loss or gradient (each skipped step updates nothing)")
    random_batches: bool = setting(False, "plain shuffled batches instead of length-grouped ones")
    compile: str = setting("auto", "torch.compile the encoder layers (auto: where measured to help)",
                           choices=COMPILE_CHOICES)
    transition_prior: str = setting("fit", "fit = after training, count tag transitions over the training set and "
                                    "weight them in Viterbi decoding as validation F1 chooses (training/"
                                    "transitions.py); off = the IOB2 constraints alone", choices=("fit", "off"))
    unspaced: str = setting("runs", "alignment: runs = each run of Han/kana words (PAN-X writes zh and ja a "
                            "character per word) tokenised as one string, and a word's label moved off a bare '▁' "
                            "onto its next piece; words = the book's: each word alone, labelled on its first piece",
                            choices=UNSPACED)
    logging_steps: int = setting(50, "a metrics.jsonl line every N steps")
    peak_tflops: float | None = setting(None, "device peak, to report model FLOPs utilisation")
    adapt_sentences: int = setting(500, "with --teacher: sentences drawn from each unlabeled file (seeded), so one "
                                   "large file cannot drown the other languages; 0 = all")
    adapt_mix_source: int = setting(0, "with --teacher: sentences of the teacher's own labelled training data "
                                    "mixed in (seeded); 0 = none")

    def __post_init__(self):
        if self.teacher and self.model == DEFAULT_MODEL:  # the student starts from its teacher's weights
            self.model = self.teacher


def is_setting(f: Field) -> bool:
    return bool(f.metadata.get("setting"))


def default_of(f: Field):
    return f.default_factory() if f.default_factory is not MISSING else f.default


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def read_setting(text: str, allowed: dict[str, Field], chosen: tuple[str, ...] = ()) -> tuple[str, object]:
    """("name", value) from "name=value", the value read as the field's type: true/false for a
    switch, none for an optional number, one of the choices where it has them. ValueError says
    what is wrong. `allowed`: the fields `--set` may set; `chosen`: those the command sets itself
    (any other field has a flag)."""
    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep:
        raise ValueError(f"{text!r}: expected NAME=VALUE, e.g. warmup_ratio=0.1")
    if name not in allowed:
        known = any(f.name == name for f in fields(TrainConfig))
        why = ("is chosen by the command" if name in chosen else f"has a flag of its own: --{name.replace('_', '-')}"
               if known else "is no setting of a run")
        raise ValueError(f"{name} {why}; --set takes {', '.join(allowed)}")
    f, raw = allowed[name], raw.strip()
    kinds = str(f.type).split(" | ")  # "float | None" -> ["float", "None"]
    try:
        if "None" in kinds and raw.lower() == "none":
            return name, None
        if kinds[0] == "bool":
            if raw.lower() not in _TRUE + _FALSE:
                raise ValueError
            return name, raw.lower() in _TRUE
        value = {"int": int, "float": float, "str": str}[kinds[0]](raw)
    except ValueError:
        hint = " (true or false)" if kinds[0] == "bool" else ""
        raise ValueError(f"{name}={raw}: not a {kinds[0]}{hint}") from None
    if f.metadata.get("choices") and value not in f.metadata["choices"]:
        raise ValueError(f"{name}={raw}: choose from {', '.join(f.metadata['choices'])}")
    return name, value


def setting_text(value) -> str:
    """A setting's value as `--set` reads it back: true/false, none, else as printed."""
    return str(value).lower() if value is None or isinstance(value, bool) else str(value)


def command_line(cfg: TrainConfig) -> list[str]:
    """The arguments of `python train_loop.py` that give this configuration: those off their
    default, as flags or as `--set name=value`."""
    argv = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if value == default_of(f):
            continue
        flag = "--" + f.name.replace("_", "-")
        if is_setting(f):
            argv += ["--set", f"{f.name}={setting_text(value)}"]
        elif isinstance(value, bool):
            argv.append(flag)
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv
