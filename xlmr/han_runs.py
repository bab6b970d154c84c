"""Runs of Han/kana words (PAN-X writes Chinese and Japanese one character per word): where
they are, and where SentencePiece's pieces of a run start among its characters. Used by
`XLMRTokenizer.encode_words_batch(unspaced="runs")`."""
from __future__ import annotations

from .words import per_character


def run_parts(words: list[str], join_runs: bool) -> list[tuple[int, int]]:
    """[first, end) word ranges: runs of two or more Han/kana words when `join_runs`, else
    (and for every other word) one word each."""
    parts, i = [], 0
    while i < len(words):
        j = i + 1
        if join_runs and per_character(words[i]):
            while j < len(words) and per_character(words[j]):
                j += 1
        parts.append((i, j))
        i = j
    return parts



def piece_starts(words: list[str], pieces: list[str | None], normalize, is_unknown) -> list[int] | None:
    """The character offset in the run (the words joined) where each piece starts, pieces given
    without '▁' (None for <unk>, which spans a stretch of unknown characters); None when the
    pieces do not spell the normalised run character by character."""
    per_char = [normalize(c) for w in words for c in w]
    text = "".join(per_char)
    begin_of, total = {}, 0  # normalised offset -> the original character that starts there
    for i, c in enumerate(per_char):
        begin_of.setdefault(total, i)
        total += len(c)
    begin_of.setdefault(total, len(per_char))
    starts, at = [], 0
    for p in pieces:
        if at not in begin_of:
            return None
        starts.append(min(begin_of[at], len(per_char) - 1))  # a lone '▁' at the end: the last word
        if p is None:
            end = at
            while end < len(text) and is_unknown(text[end]):
                end += 1
            if end == at:
                return None
            at = end
        elif text.startswith(p, at):
            at += len(p)
        else:
            return None
    return starts if at == len(text) else None
