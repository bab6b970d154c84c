"""The Hugging Face tokenizer files for XLM-R's vocabulary, written from the SentencePiece model
alone, so that an exported checkpoint works in `transformers` as it is (`AutoTokenizer`, then
`pipeline("ner")`).

`tokenizer.json` is the fast tokenizer's whole description: SentencePiece's normaliser (its
precompiled character map, read from the model file), a Metaspace pre-tokeniser, the Unigram
vocabulary in fairseq's order (<s> <pad> </s> <unk>, every SentencePiece piece from id 3 on
shifted by one, <mask> last), and the <s> ... </s> template. No protobuf library is needed: the
one field we need is read from the model file's wire format by hand.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import sentencepiece as spm

from .tokenizer import FAIRSEQ_OFFSET, SPECIAL_TOKENS

TOKENIZER_CONFIG = {
    "tokenizer_class": "XLMRobertaTokenizer",
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
    "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>",
}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message; length-delimited values as bytes."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def precompiled_charsmap(model_file: Path) -> bytes:
    """ModelProto.normalizer_spec (field 3) -> NormalizerSpec.precompiled_charsmap (field 2)."""
    for number, wire, value in _fields(Path(model_file).read_bytes()):
        if number == 3 and wire == 2:
            for n, w, v in _fields(value):
                if n == 2 and w == 2:
                    return v
    return b""


def tokenizer_json(model_file: Path, max_length: int = 512) -> dict:
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    n = sp.get_piece_size()
    mask_id = n + FAIRSEQ_OFFSET
    # fairseq's four specials, then SentencePiece's pieces from id 3 (its own <unk> <s> </s> are
    # replaced by the specials), then <mask>.
    vocab = [[SPECIAL_TOKENS[i], 0.0] for i in range(4)]
    vocab += [[sp.id_to_piece(i), sp.get_score(i)] for i in range(3, n)] + [["<mask>", 0.0]]
    special = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
    added = [{"id": i, "content": t, **special} for i, t in SPECIAL_TOKENS.items()]
    added.append({"id": mask_id, "content": "<mask>", **special})
    metaspace = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    bos, eos = ({"SpecialToken": {"id": t, "type_id": 0}} for t in ("<s>", "</s>"))
    seq = {"Sequence": {"id": "A", "type_id": 0}}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(precompiled_charsmap(model_file)).decode()},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": metaspace,
        "post_processor": {"type": "TemplateProcessing", "single": [bos, seq, eos],
                           "pair": [bos, seq, eos, eos, {"Sequence": {"id": "B", "type_id": 0}}, eos],
                           "special_tokens": {"</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]},
                                              "<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}},
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab},
    }


def write_hf_tokenizer(model_file: Path, folder: Path, max_length: int, write) -> None:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json into `folder`, each
    through `write(path, text)` (an atomic writer)."""
    write(folder / "tokenizer.json", json.dumps(tokenizer_json(model_file), ensure_ascii=False))
    write(folder / "tokenizer_config.json", json.dumps(TOKENIZER_CONFIG | {"model_max_length": max_length}, indent=2))
    write(folder / "special_tokens_map.json",
          json.dumps({k: v for k, v in TOKENIZER_CONFIG.items() if k != "tokenizer_class"}, indent=2))
