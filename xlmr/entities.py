"""Entities from word tags, and the one JSON shape they leave the project in.

The reader follows seqeval's default (lenient) mode, which the project's F1 is scored in, so a
tagger's entities are the ones its F1 counts: B-X opens an entity; I-X continues an open X
entity and opens one otherwise (an I- without a B-, as conlleval and seqeval read it); O, a B-,
or an I- of another type closes the open one. Two B-X in a row are two entities. A tag without a
B-/I- prefix is read as O, as decoding reads it (xlmr/decoding.py).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Entity:
    type: str  # PER, ORG, LOC
    text: str  # text[start:end] of the original string
    start: int
    end: int
    score: float  # mean of the words' scores
    words: tuple[int, int]  # first and last word index


def entity_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first word, last word) of every entity in a sentence's tags."""
    spans, open_ = [], None  # open_: [type, first word, last word]
    for w, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        if prefix == "I" and kind and open_ is not None and open_[0] == kind:
            open_[2] = w
            continue
        if open_ is not None:
            spans.append(tuple(open_))
        open_ = [kind, w, w] if prefix in ("B", "I") and kind else None
    if open_ is not None:
        spans.append(tuple(open_))
    return spans


def entities_from_tags(text: str, words: list[tuple[int, int]], tags: list[str], scores: list[float]) -> list[Entity]:
    """Entities of a text from its words' (start, end) offsets, tags and scores."""
    out = []
    for kind, a, b in entity_spans(tags):
        start, end = words[a][0], words[b][1]
        out.append(Entity(kind, text[start:end], start, end, sum(scores[a:b + 1]) / (b - a + 1), (a, b)))
    return out


def entity_dicts(entities: list[Entity], digits: int | None = None) -> list[dict]:
    """Entities as transformers' token-classification pipeline returns them with an aggregation
    strategy: entity_group, score, word, start, end. `digits` rounds the score (files that
    should not change with the last bits of a float)."""
    return [{"entity_group": e.type, "score": float(e.score) if digits is None else round(e.score, digits),
             "word": e.text, "start": e.start, "end": e.end} for e in entities]
