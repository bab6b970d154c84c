"""Cutting raw text into words the way PAN-X writes them, for every script, with character offsets.

A fine-tuned model has learnt from PAN-X's words, so the tagger should hand it the same kind:
- scripts written with spaces (Latin, Cyrillic, Greek, Arabic, Hebrew, Devanagari, Tamil,
  Hangul, Georgian, Myanmar ...): a word is a run of letters, digits and combining marks (a
  Hindi vowel sign or virama belongs to its word), joined across one inner hyphen or apostrophe
  ("Baden-Württemberg", "l'Italia"); any other visible character is a word of its own, since
  PAN-X writes punctuation apart;
- Han characters, Hiragana and Katakana: one word per character, as PAN-X writes Chinese and
  Japanese. A run of Latin letters or digits inside such text stays one word ("Twitter", "2022"),
  as a model trained on other languages has seen it;
- Thai, Lao and Khmer, written without spaces between words and with no per-character
  convention in PAN-X: a run of them is cut where SentencePiece cuts it (its pieces are the
  words), when a `segment` function is given; without one the run is one word;
- control and format characters (a zero-width space, a byte-order mark, U+0000 ...) belong to no
  word: `split_words` reports them as skipped. A zero-width joiner or non-joiner between two
  non-space characters, a variation selector and an emoji skin-tone modifier stay inside the word
  they join or modify, so an emoji sequence is one word.

Offsets index the original string: right-to-left text keeps its logical order, and nothing is
normalised before cutting, so `text[start:end]` is always the word as written.
"""
from __future__ import annotations

import unicodedata
from typing import Callable

SPACE, SINGLE, SPACELESS, WORD, SKIP, OTHER = range(6)
JOINERS = "-'’"  # may join two runs of letters into one word
ZERO_WIDTH_JOINERS = "\u200c\u200d"  # ZWNJ (Persian, Indic) and ZWJ (emoji sequences)

# Scripts written one word per character in PAN-X, as code-point ranges: whole Unicode blocks
# (unassigned code points included, so a character newer than Python's Unicode database is cut as
# its block's script) and, among the CJK symbols, the letters and numerals only.
PER_CHARACTER = (
    (0x3005, 0x3007), (0x3021, 0x3029), (0x3038, 0x303C),  # 々 〆 〇, Hangzhou numerals 1-9, 10-30 and 〻 〼
    (0x3040, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF),  # Hiragana, Katakana, its extensions
    (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),  # CJK ideographs, extension A, compatibility
    (0xFF66, 0xFF9F), (0x20000, 0x3FFFF),  # half-width Katakana; ideograph extensions B and later
)
# Scripts written without spaces between words, whose words SentencePiece's pieces stand in for
# (whole blocks, as above).
WITHOUT_SPACES = ((0x0E00, 0x0E7F), (0x0E80, 0x0EFF), (0x1780, 0x17FF), (0x19E0, 0x19FF))  # Thai, Lao, Khmer
SKIN_TONES = (0x1F3FB, 0x1F3FF)


def _in(ranges, o: int) -> bool:
    return any(a <= o <= b for a, b in ranges)


def per_character(word: str) -> bool:
    """Whether a word is Han or kana only: the characters PAN-X writes one word each, and which
    the tokenizer can join into runs (XLMRTokenizer.encode_words_batch)."""
    return bool(word) and all(_in(PER_CHARACTER, ord(c)) for c in word)


def char_class(c: str) -> int:
    o, cat = ord(c), unicodedata.category(c)
    if c.isspace() or cat in ("Zs", "Zl", "Zp"):
        return SPACE
    if _in(PER_CHARACTER, o):
        return SINGLE
    if _in(WITHOUT_SPACES, o):
        return SPACELESS
    if cat[0] in "LNM" or c == "_":
        return WORD
    if cat in ("Cc", "Cf", "Cs", "Cn"):
        return SKIP
    return OTHER  # punctuation, symbols, emoji, private use


def _attaches(text: str, i: int) -> bool:
    """Whether text[i] belongs to the word before it whatever its class: a combining mark, a
    variation selector, a skin-tone modifier, or a zero-width joiner with a non-space after it."""
    c = text[i]
    if unicodedata.category(c)[0] == "M" or SKIN_TONES[0] <= ord(c) <= SKIN_TONES[1]:
        return True
    return c in ZERO_WIDTH_JOINERS and i + 1 < len(text) and char_class(text[i + 1]) not in (SPACE, SKIP)


def split_words(text: str, segment: Callable[[str], list[tuple[int, int]]] | None = None
                ) -> list[tuple[int, int]]:
    """(start, end) offsets of the words of `text`, in order, never overlapping. `segment` cuts a
    run of Thai, Lao or Khmer into words (offsets within the run)."""
    return scan(text, segment)[0]


def scan(text: str, segment=None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(words, skipped): the words, and the spans of control and format characters that are in
    no word. Every other non-space character is in exactly one word."""
    words, skipped, i, n = [], [], 0, len(text)
    while i < n:
        kind = char_class(text[i])
        if kind == SPACE:
            i += 1
            continue
        if kind == SKIP and not (words and words[-1][1] == i and _attaches(text, i)):
            skipped.append((i, i + 1))
            i += 1
            continue
        start, i = i, i + 1
        if kind in (WORD, SKIP):  # a skipped character only gets here as a joiner: it extends the last word
            if kind == SKIP:
                start = words.pop()[0]
            i = _word_end(text, i)
        elif kind == SPACELESS:
            while i < n and (char_class(text[i]) == SPACELESS or unicodedata.category(text[i])[0] == "M"):
                i += 1
            if segment is not None:
                words += [(start + a, start + b) for a, b in segment(text[start:i])]
                continue
        while i < n and _attaches(text, i):  # marks and joiners after a single character or symbol
            i += 1
            if text[i - 1] in ZERO_WIDTH_JOINERS:
                i = i + 1 if char_class(text[i]) != WORD else _word_end(text, i)
        words.append((start, i))
    return words, skipped


def _word_end(text: str, i: int) -> int:
    """The end of a run of letters, digits and marks that has started before i, across inner
    hyphens and apostrophes and zero-width joiners."""
    n = len(text)
    while i < n:
        c = text[i]
        if char_class(c) == WORD or _attaches(text, i):
            i += 1
        elif c in JOINERS and i + 1 < n and char_class(text[i + 1]) == WORD:
            i += 2
        else:
            break
    return i
