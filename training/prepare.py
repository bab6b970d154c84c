"""Set-up before the first step: processes and device, the output folder, the model folder and
the encoded data. Everything that can fail does so here, before anything slow."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from datasets import DatasetDict, concatenate_datasets

from loaders.align import encode_ner
from loaders.nerfiles import labels_of, load_ner_file, read_ner_file, to_dataset
from loaders.panx import TAGS, PanxError, check_lang, panx_splits
from xlmr.convert import convert
from xlmr.precision import DTYPE_NAMES, choose, cpu_bf16_attention_by_matmul, use_cpu_bf16_attention_by_matmul
from xlmr.weights import checkpoint_config, is_ours, resolve_folder

from .config import RunError, TrainConfig
from .state import resumable_state

HOME_ENV = "XLMR_NER_HOME"
CHECKOUT = Path(__file__).resolve().parents[1]


def weights_home() -> Path:
    """Where Hugging Face folders are converted to once, then reused: $XLMR_NER_HOME/weights when
    set; else the checkout's weights/ when running from a clone; else a user cache folder, never
    the installed package's own folder (site-packages may be read-only or shared)."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser() / "weights"
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "weights").is_dir():
        return CHECKOUT / "weights"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "xlmr-ner" / "weights"


def setup_distributed(device_arg: str | None) -> tuple[int, int, torch.device]:
    """(rank, world size, device); under torchrun the process group is started here."""
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


def check_langs(langs) -> None:
    for lang in langs:
        try:
            check_lang(lang)
        except PanxError as e:
            raise RunError(str(e)) from None


def check_output_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunError(f"cannot write to output folder {path}: {e.strerror or e}") from None


def prepare_model_folder(src: str) -> Path:
    """Our checkpoint folder as is; a Hugging Face folder or hub id is converted into
    `weights_home()` once."""
    folder = resolve_folder(src)
    if is_ours(checkpoint_config(folder)):
        return folder
    target = weights_home() / folder.name
    if not (target / "model.safetensors").is_file():
        print(f"converting {folder} -> {target}")
        convert(folder, target)
    return target


def check_data_flags(cfg: TrainConfig) -> None:
    """Your own files (--train-file with --validation-file) or PAN-X languages, checked before
    anything is loaded."""
    if cfg.train_file or cfg.validation_file or cfg.test_file:
        if not (cfg.train_file and cfg.validation_file):
            raise RunError("--train-file and --validation-file go together (the best epoch is picked on validation)")
        for path in (cfg.train_file, cfg.validation_file, cfg.test_file):
            if path and not Path(path).is_file():
                raise RunError(f"no data file at {path}")
    else:
        check_langs(cfg.langs + cfg.eval_langs)


def load_data(cfg: TrainConfig, tokenizer):
    """(train, validation, {name: test set}, label list), encoded: from --train-file and its
    companions, whose training file gives the labels; else PAN-X's training languages (the Swiss
    mix, or the full splits) and the test sets of the evaluation languages."""
    if cfg.train_file:
        train_sentences = read_ner_file(cfg.train_file)
        labels = labels_of(train_sentences)
        raw = {"train": to_dataset(train_sentences, labels),
               "validation": load_ner_file(cfg.validation_file, labels)}
        if cfg.test_file:
            raw["test"] = load_ner_file(cfg.test_file, labels)
        if train_sentences.normalised:
            print(f"{cfg.train_file}: {train_sentences.normalised} tags read as IOB2 (from IOB1 or BIOES)")
        data = encode_ner(DatasetDict(raw), tokenizer, cfg.max_length, cfg.unspaced)
        train, validation = data["train"], data["validation"]
        tests = {Path(cfg.test_file).name: data["test"]} if cfg.test_file else {}
    else:
        labels, cache = list(TAGS), {}
        for lang in dict.fromkeys(cfg.langs + cfg.eval_langs):
            cache[lang] = encode_ner(panx_splits(lang, cfg.data_dir, cfg.full_splits), tokenizer, cfg.max_length,
                                     cfg.unspaced)
        train = concatenate_datasets([cache[lang]["train"] for lang in cfg.langs])
        validation = concatenate_datasets([cache[lang]["validation"] for lang in cfg.langs])
        tests = {lang: cache[lang]["test"] for lang in cfg.eval_langs}
    if cfg.num_samples is not None:
        if not 0 < cfg.num_samples <= len(train):
            raise RunError(f"--num-samples {cfg.num_samples} is outside 1..{len(train)}")
        keep = np.random.default_rng(cfg.seed).permutation(len(train))[: cfg.num_samples]
        train = train.select(np.sort(keep))
    return train, validation, tests, labels


def decide_precision(cfg: TrainConfig, device: torch.device, world: int) -> dict:
    """The run's precision, decided once: {"amp": "bf16"|"fp16"|"fp32", "reason": ...,
    "attention_by_matmul": the CPU bf16 attention path or None}. `--amp auto` times matrix
    products on CPUs, and a busy machine can time them differently from one call to the next,
    so a resumed run reuses the decision its state recorded, and under DDP rank 0 decides and
    every rank takes its decision. The attention path is fixed for this process here."""
    saved = resumable_state(Path(cfg.resume)) if cfg.resume else None
    decision = json.loads((saved / "state.json").read_text()).get("precision") if saved else None
    if decision is None and (world == 1 or dist.get_rank() == 0):
        dtype, reason = choose(cfg.amp, device)
        by_matmul = cpu_bf16_attention_by_matmul() if device.type == "cpu" and dtype == torch.bfloat16 else None
        decision = {"amp": DTYPE_NAMES[dtype], "reason": reason, "attention_by_matmul": by_matmul}
    elif decision is not None:
        decision = {**decision, "reason": f"{decision['reason']} (decided when the run started)"}
    if world > 1:
        shared = [decision]
        dist.broadcast_object_list(shared, src=0)
        decision = shared[0]
    use_cpu_bf16_attention_by_matmul(decision["attention_by_matmul"])
    return decision
