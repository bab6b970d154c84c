"""Words -> pieces -> the piece that carries each word's label, and back from pieces to words.

This is the one place that decides which sub-word speaks for a word. The tokenizer records it
(Encoding.word_heads, word_glued), training puts the word's gold tag there (loaders/align.py),
prediction, the sweep and the tagger read the word's scores there and spread the decoded tags
back over every word (evaluation/predict.py, xlmr/tagger.py). Nothing else computes a head.

A word's head is its first piece, with two exceptions:
- a bare '▁': SentencePiece gives a word that starts with a character it does not join to '▁'
  (German ( „ . but also 18% of Korean, 19% of Georgian and 17% of Hebrew words) a lone '▁'
  first. It holds no letter of the word, and a model fine-tuned on German calls it O (it comes
  before punctuation there), so under unspaced="runs" the label moves to the word's next piece
  (`past_bare_space`). Measured on the German recipe: 39-language mean .610 -> .614, my +.06.
- a run of Han/kana characters tokenised as one string (PAN-X writes Chinese and Japanese one
  character per word): one piece can hold several words. The first takes the piece; the others
  have no piece of their own and sit inside it, taking the I- form of its tag (`spread_to_words`).

Shapes: word_ids has one entry per token (None, or -1 in a dataset column, for <s> and </s>);
word_heads one per word: a token position, or -1 for a word that truncation cut off.
"""
from __future__ import annotations

from typing import Callable


def word_heads(word_ids: list[int | None], n_words: int) -> list[int]:
    """Each word's first token, before truncation; a word with no token of its own sits inside
    the piece of the nearest earlier word that has one (-1 when no earlier word has one)."""
    first: dict[int, int] = {}
    for position, w in enumerate(word_ids):
        if w is not None and w >= 0 and w not in first:
            first[w] = position
    heads, owner = [], -1
    for w in range(n_words):
        owner = first.get(w, owner)
        heads.append(owner)
    return heads


def past_bare_space(ids: list[int], word_ids: list[int | None], heads: list[int], bare_space_id: int) -> list[int]:
    """Heads moved off a bare '▁' onto the word's next piece (see the module's docstring)."""
    moved = {h: h + 1 for w, h in enumerate(heads)
             if h >= 0 and word_ids[h] == w and ids[h] == bare_space_id
             and h + 1 < len(ids) and word_ids[h + 1] == w}
    return [moved.get(h, h) for h in heads]


def truncate_heads(heads: list[int], n_tokens: int) -> list[int]:
    """Heads after the tokens were cut to n_tokens: a word whose head was cut off has none."""
    return [h if h < n_tokens else -1 for h in heads]


def glued_heads(ids: list[int], word_ids: list[int | None], heads: list[int], bare_space_id: int,
                continues: Callable[[int], bool]) -> list[bool]:
    """Per word, whether the piece that carries its label has no '▁' of its own and continues
    the text of an earlier word, as pieces inside a run of Han/kana do. `continues(id)` says
    whether a piece id has no leading '▁'. A piece after the word's own bare '▁' is not glued:
    the word did start with a space. (Why it matters: xlmr/decoding.py.)"""
    return [h >= 0 and word_ids[h] == w and continues(ids[h])
            and not (ids[h - 1] == bare_space_id and word_ids[h - 1] == w) for w, h in enumerate(heads)]


def owns_head(word_ids: list[int | None], word_heads: list[int], w: int) -> bool:
    """Whether word w's head is a piece of its own (not inside another word's, not cut off)."""
    h = word_heads[w]
    return h >= 0 and word_ids[h] == w


def head_positions(word_ids: list[int | None], word_heads: list[int]) -> list[int]:
    """The token positions whose scores are decoded, in word order: the head of every word that
    owns one."""
    return [h for w, h in enumerate(word_heads) if owns_head(word_ids, word_heads, w)]


def head_glued(word_ids: list[int | None], word_heads: list[int], word_glued: list[bool]) -> list[bool]:
    """Encoding.word_glued for the words at `head_positions`, in that order."""
    return [g for w, g in enumerate(word_glued) if owns_head(word_ids, word_heads, w)]


def head_offset(word_ids: list[int | None], word_heads: list[int], w: int) -> int:
    """How many of word w's own pieces come before its head: 1 past a bare '▁', else 0. Where
    a word's pieces are pooled (the tagger's aggregations), pooling starts at its head."""
    h = word_heads[w]
    first = h
    while first > 0 and word_ids[first - 1] == w:
        first -= 1
    return h - first if owns_head(word_ids, word_heads, w) else 0


def head_owners(word_ids: list[int | None], word_heads: list[int]) -> list[int]:
    """For each word, the index (in `head_positions` order) of the head it takes its tag from:
    its own, or that of the word whose piece holds it; -1 for a word cut off by truncation."""
    index_of = {h: k for k, h in enumerate(head_positions(word_ids, word_heads))}
    return [index_of.get(h, -1) for h in word_heads]


def piece_groups(word_ids: list[int | None], word_heads: list[int]) -> list[tuple[int, int]]:
    """[first, end) word ranges that share one head: a word that owns its piece and the words held
    inside it (a Han/kana run's). A window over a long text must not cut one (xlmr/tagger.py)."""
    groups: list[list[int]] = []  # [first, end, owner]
    for w, k in enumerate(head_owners(word_ids, word_heads)):
        if groups and groups[-1][2] == k:
            groups[-1][1] = w + 1
        else:
            groups.append([w, w + 1, k])
    return [(a, b) for a, b, _ in groups]


def spread_to_words(head_tags: list[int], word_ids: list[int | None], word_heads: list[int], inside: list[int],
                    outside: int) -> list[int]:
    """Word tags from the decoded tags of the head positions (in `head_positions` order): a word
    held inside another word's piece takes the I- form of that word's tag (`inside`, per tag id);
    a word cut off by truncation is `outside` (O)."""
    out = []
    for w, k in enumerate(head_owners(word_ids, word_heads)):
        if k < 0:
            out.append(outside)
        elif owns_head(word_ids, word_heads, w):
            out.append(head_tags[k])
        else:
            out.append(inside[head_tags[k]])
    return out


def labelled_tokens(token_labels: list[int], ignore_index: int) -> list[int]:
    """The heads of a dataset that has token labels but no word_heads: its labelled tokens."""
    return [t for t, label in enumerate(token_labels) if label != ignore_index]
