"""Checkpoints: read Hugging Face folders (their key names are converted by `keymap`), save and
load ours, and export ours back to the Hugging Face layout.

Our checkpoint folder: `model.safetensors` (our key names, QKV fused), `config.json` (the Hugging
Face fields plus `"format": "xlmr-ner"`), and the tokenizer's `sentencepiece.bpe.model`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .atomic import write_atomic
from .config import BERT_FAMILY, FORMAT, ConfigError, XLMRConfig
from .hf_tokenizer import write_hf_tokenizer
from .hub import download_checkpoint
from .keymap import CheckpointError, hf_to_ours, ours_to_hf
from .model import XLMRForTokenClassification

__all__ = ["CheckpointError", "check_tensors", "checkpoint_config", "export_hf", "files_to_fetch", "is_ours", "load_model",
           "read_tensors", "resolve_folder", "save_model", "tokenizer_file_in"]

TOKENIZER_FILE = "sentencepiece.bpe.model"


# ---------------------------------------------------------------------------------------------
# Reading tensors from a folder

def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder: model.safetensors, sharded safetensors with an index,
    or pytorch_model.bin (loaded with weights_only=True, so no code in it runs)."""
    single, index, pickled = folder / "model.safetensors", folder / "model.safetensors.index.json", folder / "pytorch_model.bin"
    if single.is_file():
        return _read_safetensors(single)
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{index}: not a safetensors index ({e})") from None
        tensors = {}
        for shard in shards:
            if not (folder / shard).is_file():
                raise CheckpointError(f"{index} names shard {shard}, which is missing")
            tensors.update(_read_safetensors(folder / shard))
        return tensors
    if pickled.is_file():
        try:
            return torch.load(pickled, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for a damaged or unsafe file
            raise CheckpointError(f"{pickled}: cannot load ({e})") from None
    raise CheckpointError(f"{folder}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(file)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{file}: cannot read safetensors ({e}); the file may be truncated") from None


# ---------------------------------------------------------------------------------------------
# Loading and saving whole models

def resolve_folder(src: str | os.PathLike) -> Path:
    """A local folder as is; otherwise a Hugging Face Hub id, downloaded when the hub is reachable."""
    path = Path(src)
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the checkpoint folder that holds it")
    looks_like_hub_id = re.fullmatch(r"[\w.-]+(/[\w.-]+)?", str(src)) is not None
    if not looks_like_hub_id:
        raise CheckpointError(f"no model folder at {path}")
    return download_checkpoint(str(src), lambda listed: files_to_fetch(listed, str(src)))


# A Hub model repo holds the weights in several formats (xlm-roberta-base: model.safetensors,
# pytorch_model.bin, tf_model.h5, flax_model.msgpack, onnx/): one copy is fetched, in the order
# `read_tensors` reads them.
SHARD = re.compile(r"model-\d+-of-\d+\.safetensors")


def files_to_fetch(repo_files, repo_id: str) -> list[str]:
    """The files of a Hub model repo that make a checkpoint folder: config.json, the tokenizer
    when there is one, and the weights once: safetensors when the repo has them (one file, or an
    index and its shards), pytorch_model.bin only when it has not. Nothing in a subfolder."""
    top = {f for f in repo_files if "/" not in f}
    if "config.json" not in top:
        raise CheckpointError(f"{repo_id} on the Hugging Face Hub has no config.json: not a model checkpoint")
    if "model.safetensors" in top:
        weights = ["model.safetensors"]
    elif "model.safetensors.index.json" in top:
        weights = ["model.safetensors.index.json", *sorted(f for f in top if SHARD.fullmatch(f))]
    elif "pytorch_model.bin" in top:
        weights = ["pytorch_model.bin"]
    else:
        raise CheckpointError(f"{repo_id} on the Hugging Face Hub has no weights this project reads "
                              f"(model.safetensors, model.safetensors.index.json or pytorch_model.bin); it has "
                              f"{', '.join(sorted(top))}")
    return ["config.json", *weights, *([TOKENIZER_FILE] if TOKENIZER_FILE in top else [])]


def checkpoint_config(folder: Path) -> dict:
    """The raw config.json of a checkpoint folder, ours or Hugging Face's; the one check of
    "is this a checkpoint folder" that loading and training share."""
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder}: no config.json; is this a checkpoint folder?")
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_file}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{config_file}: not a JSON object")
    return raw


def is_ours(config: dict) -> bool:
    """Whether a checkpoint's config.json says it holds our key layout (else Hugging Face's)."""
    return config.get("format") == FORMAT


HEAD = ("classifier.weight", "classifier.bias")  # the token-classification head: both, or neither


def load_model(src, id2label: dict[int, str] | None = None, manual_attention: bool = False,
               for_inference: bool = False) -> XLMRForTokenClassification:
    """Load our checkpoint or a Hugging Face one (converted in memory). Weights that do not match
    the config (a shape, a missing or extra tensor, a head with another label count than
    config.json's id2label) are refused with the keys named. With `id2label`, the head must have
    that many labels; a checkpoint without a head gets a new one, initialised and reported, unless
    `for_inference` (a new head would tag at random)."""
    folder = resolve_folder(src)
    config_file, raw = folder / "config.json", checkpoint_config(folder)
    try:
        config = XLMRConfig.from_dict(raw, source=str(config_file))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    tensors = read_tensors(folder)
    state = tensors if is_ours(raw) else hf_to_ours(tensors, source=str(folder))
    state = {k: v.float() for k, v in state.items()}  # fp32 master weights; autocast does the rest

    labels = _head_labels(state, config, config_file, for_inference)
    if id2label is not None:
        id2label = {int(k): v for k, v in id2label.items()}
        if labels is not None and labels != len(id2label):
            raise CheckpointError(f"{folder}: the checkpoint's head has {labels} labels but the data has "
                                  f"{len(id2label)} ({', '.join(id2label.values())})")
        config.id2label = id2label

    # Build on the meta device: no time spent initialising weights that are overwritten next.
    with torch.device("meta"):
        model = XLMRForTokenClassification(config, manual_attention=manual_attention)
    has_head = labels is not None
    check_tensors(model, state, folder, allow_missing=() if has_head else HEAD)
    model.load_state_dict(state, strict=False, assign=True)
    model.head_is_new = not has_head  # `convert` then saves the encoder alone
    if not has_head:
        model.classifier.to_empty(device="cpu")
        model.reset_head()
        warnings.warn(
            f"{folder} has no token-classification head: a new {config.num_labels}-label head was "
            f"initialised (normal, std={config.initializer_range}); fine-tune before use",
            stacklevel=2,
        )
    return model


def _head_labels(state: dict, config: XLMRConfig, config_file: Path, for_inference: bool) -> int | None:
    """The label count of the checkpoint's head (None: it has none), which must be config.json's."""
    present = [k for k in HEAD if k in state]
    if not present:
        if for_inference:
            raise CheckpointError(f"{config_file.parent}: no token-classification head ({' and '.join(HEAD)} are "
                                  f"missing): a pretrained encoder, not a tagger; fine-tune it first")
        return None
    labels = state[present[0]].shape[0]
    if labels != config.num_labels:
        raise CheckpointError(f"{config_file}: id2label has {config.num_labels} labels but {present[0]} has "
                              f"{labels} rows")
    return labels


def check_tensors(model, state: dict, source, allow_missing=()) -> None:
    """The one check that tensors fit a model before they are loaded into it: every missing,
    unexpected and wrongly shaped key named (`allow_missing`: keys that may be absent)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state) - set(allow_missing))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [f"{k}: checkpoint {tuple(state[k].shape)}, model {expected[k]}"
                   for k in sorted(set(state) & set(expected)) if tuple(state[k].shape) != expected[k]]
    problems = [f"{what} {_listed(keys)}" for what, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong_shape)) if keys]
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))


def _listed(items: list[str], at_most: int = 8) -> str:
    """A list for a message: all of it, or its first entries and how many more (a checkpoint of
    another model size gets every key wrong)."""
    return str(items) if len(items) <= at_most else f"{items[:at_most]} and {len(items) - at_most} more"


def save_model(model: XLMRForTokenClassification, folder, tokenizer_file=None, with_head: bool = True) -> None:
    """Our checkpoint folder. `with_head=False` leaves the classifier out: a pretrained encoder
    converted for fine-tuning, whose head the training run draws from its own --seed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
             if with_head or not k.startswith("classifier.")}
    save_config(model.config, folder)
    write_atomic(folder / "model.safetensors", lambda p: save_file(state, p, metadata={"format": "pt"}))
    _copy_tokenizer(tokenizer_file, folder)


def save_config(config, folder) -> None:
    """config.json of our checkpoint folder, written atomically (also alone: a decoding setting
    fitted after the weights, such as the tag-transition prior)."""
    data = config.to_dict() | {"format": FORMAT}
    write_atomic(Path(folder) / "config.json", lambda p: p.write_text(json.dumps(data, indent=2)))


def _copy_tokenizer(tokenizer_file, folder: Path) -> None:
    if tokenizer_file is None:
        return
    tokenizer_file = Path(tokenizer_file)
    if tokenizer_file.resolve() != (folder / TOKENIZER_FILE).resolve():
        write_atomic(folder / TOKENIZER_FILE, lambda p: shutil.copyfile(tokenizer_file, p))


def export_hf(model: XLMRForTokenClassification, folder, tokenizer_file=None) -> None:
    """Write the Hugging Face layout: loadable by transformers.AutoModelForTokenClassification, and
    with a tokenizer file also by AutoTokenizer and pipeline("ner")."""
    folder = Path(folder)
    if model.crf is not None:
        raise CheckpointError(f"a CRF head has no place in transformers' token classification (its transitions would "
                              f"be lost, and the tags with them); not exported to {folder}")
    state = ours_to_hf({k: v.detach().cpu() for k, v in model.state_dict().items()}, model.config)
    write_hf_companions(model.config, folder, tokenizer_file)
    write_atomic(folder / "model.safetensors", lambda p: save_file(state, p, metadata={"format": "pt"}))


def write_hf_companions(c: XLMRConfig, folder: Path, tokenizer_file=None) -> None:
    """What sits beside the weights of a Hugging Face folder (or an ONNX one): config.json with
    the labels (id2label, label2id), and with a tokenizer file the fast tokenizer's files."""
    folder.mkdir(parents=True, exist_ok=True)
    is_bert = c.model_type in BERT_FAMILY
    config = c.to_dict() | {
        "architectures": ["BertForTokenClassification" if is_bert else "XLMRobertaForTokenClassification"],
        "position_embedding_type": "absolute",
        "bos_token_id": 0,
        "eos_token_id": 2,
    }
    config.pop("format", None)
    write_atomic(folder / "config.json", lambda p: p.write_text(json.dumps(config, indent=2)))
    _copy_tokenizer(tokenizer_file, folder)
    if tokenizer_file is not None:  # the fast tokenizer's files, so AutoTokenizer works on the folder as it is
        write_hf_tokenizer(Path(tokenizer_file), folder, c.max_position_embeddings - c.position_offset,
                           lambda path, text: write_atomic(path, lambda p: p.write_text(text, encoding="utf-8")))


def tokenizer_file_in(folder) -> Path | None:
    path = Path(folder) / TOKENIZER_FILE
    return path if path.is_file() else None
