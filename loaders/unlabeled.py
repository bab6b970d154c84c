"""Unlabeled text in the target languages, for adapting a tagger to it (training/adaptation.py).

    text (any suffix but .jsonl/.json)   a text a line, cut into words as the tagger cuts each
                                         script (xlmr/words.py: spaces, Han/kana a character a
                                         word, Thai/Lao/Khmer by SentencePiece)
    JSON lines (.jsonl, .json)           {"tokens": ["Nairobi", "ni", ...]} a sentence a line, the
                                         words as given; or {"text": "..."}, cut as a text line

One file holds one language: its name (the file's stem: `sw.jsonl`, `texts-sw.txt`) is what the
run reports sentences under. A blank line, an empty `tokens` list, or a text with no word in it
(only control characters) holds no sentence and is counted as skipped: with no labels to keep in step, nothing
after it moves. A line that cannot be read (not UTF-8, not a JSON object, `tokens` not a list of
non-empty strings) is an error naming file:line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from xlmr.words import split_words

from .conll import NerDataError, lines

JSON_SUFFIXES = (".jsonl", ".json")
Segment = Callable[[str], list[tuple[int, int]]]  # a Thai/Lao/Khmer run -> word offsets (XLMRTokenizer.piece_spans)


@dataclass
class UnlabeledText:
    """The sentences of one file and the line each came from."""
    path: Path
    tokens: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    skipped: int = 0  # lines that hold no sentence

    @property
    def name(self) -> str:
        return self.path.stem


def read_unlabeled(path, segment: Segment | None = None) -> UnlabeledText:
    """One unlabeled file's sentences as word lists. `segment` cuts runs of Thai, Lao and Khmer
    (the tagger passes its tokenizer's `piece_spans`); without it such a run is one word."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no unlabeled text file at {path}")
    as_json = path.suffix.lower() in JSON_SUFFIXES
    text = UnlabeledText(path)
    for lineno, line in lines(path):
        words = _json_words(line, f"{path}:{lineno}", segment) if as_json and line.strip() else _cut(line, segment)
        if words:
            text.tokens.append(words)
            text.lines.append(lineno)
        else:
            text.skipped += 1
    if not text.tokens:
        raise NerDataError(f"{path}: no sentences (every line is blank)")
    return text


def _cut(line: str, segment: Segment | None) -> list[str]:
    return [line[a:b] for a, b in split_words(line, segment)]


def _json_words(line: str, place: str, segment: Segment | None) -> list[str]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise NerDataError(f"{place}: not a JSON object ({e.msg})") from None
    if not isinstance(record, dict) or not ("tokens" in record or "text" in record):
        raise NerDataError(f"{place}: expected an object with 'tokens' (a list of words) or 'text' (a string)")
    if "tokens" in record:
        tokens = record["tokens"]
        if not isinstance(tokens, list):
            raise NerDataError(f"{place}: 'tokens' must be a list of words, got {type(tokens).__name__}")
        for j, token in enumerate(tokens):
            if not isinstance(token, str) or not token.strip():
                raise NerDataError(f"{place}: token {j} is {token!r}; every token must be a non-empty string")
        return list(tokens)
    if not isinstance(record["text"], str):
        raise NerDataError(f"{place}: 'text' must be a string, got {type(record['text']).__name__}")
    return _cut(record["text"], segment)
