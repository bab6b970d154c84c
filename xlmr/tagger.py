"""Tag raw text with a fine-tuned checkpoint: sub-word tags, word tags and entity spans.

The text is cut into words with their character offsets (by script: see words.py), the words
are encoded with our tokenizer (so every token knows its word id; a run of Han/kana is tokenised
as one string), a word's label probabilities come from its sub-words' by one of three
aggregation strategies, and the head's decoding (IOB2 Viterbi by default) turns them into tags,
as `eval.py test` does. Entities are runs of words merged by their B-/I- tags; their offsets
slice the original text. A text longer than the model's window is tagged in overlapping windows
cut at word boundaries (never inside a piece), and every word takes its tag from the window in
which it sits furthest from an edge, so it sees the most context.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from . import alignment
from .decoding import DECODINGS, inside_ids
from .entities import Entity, entities_from_tags
from .tokenizer import BOS, EOS, PAD, XLMRTokenizer
from .words import scan

AGGREGATIONS = ("first", "average", "max")


@dataclass
class Tagged:
    text: str
    words: list[tuple[int, int]]  # (start, end) character offsets of each word
    word_tags: list[str]
    word_scores: list[float]
    tokens: list[str] = field(default_factory=list)  # every sub-word, without <s> and </s>
    token_words: list[int] = field(default_factory=list)
    token_tags: list[str] = field(default_factory=list)
    token_scores: list[float] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)
    skipped: list[tuple[int, int]] = field(default_factory=list)  # control/format characters in no word




def plan_windows(token_counts: list[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Word ranges [start, end) whose tokens fit in `budget`, each sharing about `stride` tokens'
    worth of words with the next, covering every word. A word longer than the budget gets a
    window of its own (and is cut there; see `encode_windows`)."""
    if not token_counts:
        return []
    windows, start = [], 0
    while True:
        end, used = start, 0
        while end < len(token_counts) and (used + token_counts[end] <= budget or end == start):
            used += token_counts[end]
            end += 1
        windows.append((start, end))
        if end == len(token_counts):
            return windows
        # Step back from the end while the overlap stays within `stride` tokens, but always move on.
        nxt, overlap = end, 0
        while nxt - 1 > start and overlap + token_counts[nxt - 1] <= stride:
            nxt -= 1
            overlap += token_counts[nxt]
        start = nxt


def window_owner(windows: list[tuple[int, int]], n_words: int) -> list[int]:
    """For each word, the window in which it is furthest from an edge (ties: the earlier one)."""
    owner, margin = [0] * n_words, [-1] * n_words
    for k, (start, end) in enumerate(windows):
        for w in range(start, end):
            m = min(w - start, end - 1 - w)
            if m > margin[w]:
                owner[w], margin[w] = k, m
    return owner


def aggregate(probs: torch.Tensor, strategy: str) -> torch.Tensor:
    """One word's label probabilities (C,) from its sub-words' (n, C)."""
    if strategy == "first":
        return probs[0]
    if strategy == "average":
        return probs.mean(dim=0)
    if strategy == "max":
        return probs[probs.max(dim=1).values.argmax()]  # the sub-word most sure of its tag decides
    raise ValueError(f"unknown aggregation {strategy!r}; choose from {AGGREGATIONS}")


class Tagger:
    def __init__(self, model, tokenizer: XLMRTokenizer, device="cpu", amp_dtype=None,
                 max_length: int | None = None, stride: int | None = None, batch_size: int = 16,
                 unspaced: str = "runs"):
        self.model, self.tokenizer = model.to(device).eval(), tokenizer
        self.device, self.amp_dtype = torch.device(device), amp_dtype
        config = model.config
        window = config.max_position_embeddings - config.position_offset
        self.max_length = min(max_length or window, window)
        if self.max_length < 3:
            raise ValueError(f"max_length {self.max_length} leaves no room for a token between <s> and </s>")
        self.budget = self.max_length - 2  # tokens per window besides <s> and </s>
        self.stride = self.budget // 4 if stride is None else stride
        if not 0 <= self.stride < self.budget:
            raise ValueError(f"stride {self.stride} must be in 0..{self.budget - 1} for windows of {self.max_length}")
        self.batch_size, self.unspaced = batch_size, unspaced
        self.id2label = config.id2label
        labels = [self.id2label[i] for i in range(len(self.id2label))]
        self.inside = inside_ids(labels)

    def __call__(self, texts: str | list[str], aggregation: str = "first", decode: str = "viterbi") -> list[Tagged]:
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; choose from {AGGREGATIONS}")
        if decode not in DECODINGS:
            raise ValueError(f"unknown decoding {decode!r}; choose from {', '.join(DECODINGS)}")
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        scanned = [scan(t, self.tokenizer.piece_spans) for t in texts]
        spans = [words for words, _ in scanned]
        # Every word of every text in one tokenizer call: ids per word, no special tokens. In a
        # run of Han/kana a piece can hold several words; the first has it, the others none.
        encodings = self.tokenizer.encode_words_batch([[t[a:b] for a, b in s] for t, s in zip(texts, spans)],
                                                      max_length=None, unspaced=self.unspaced)
        windows, per_text = self._windows(encodings, [len(s) for s in spans])
        probs = self._probabilities([ids for _, ids in windows])

        out, word_probs, k = [], [], 0
        for i, (word_pieces, plan) in enumerate(per_text):
            mine = list(range(k, k + len(plan)))
            k += len(plan)
            owner = window_owner(plan, len(word_pieces))
            tagged = Tagged(texts[i], spans[i], [], [], skipped=scanned[i][1])
            heads, head_probs = [], []  # words with pieces of their own, and their label probabilities (C,)
            for w in range(len(word_pieces)):
                win = mine[owner[w]]
                rows_of, ids = windows[win]
                rows = rows_of[w]  # this word's sub-words in its window; none inside a run's piece
                p = probs[win][rows]  # (n, C)
                enc = encodings[i]
                if alignment.owns_head(enc.word_ids, enc.word_heads, w):  # pooled from its head on
                    heads.append(w)
                    head_probs.append(aggregate(p[alignment.head_offset(enc.word_ids, enc.word_heads, w):], aggregation))
                pieces = self.tokenizer.convert_ids_to_tokens([ids[j] for j in rows])
                top = p.max(dim=1)
                tagged.tokens += pieces
                tagged.token_words += [w] * len(rows)
                tagged.token_tags += [self.id2label[int(t)] for t in top.indices]
                tagged.token_scores += [float(s) for s in top.values]
            out.append(tagged)
            word_probs.append((heads, torch.stack(head_probs) if heads else torch.zeros(0, len(self.inside))))
        # One decoding for all texts: Viterbi steps through every sentence at once. A word whose
        # piece has no '▁' (inside a Han/kana run) may continue an entity as B- or I- (decoding.py).
        glued = [[enc.word_glued[w] for w in heads] for enc, (heads, _) in zip(encodings, word_probs)]
        decoded = self.model.decode([p.clamp_min(1e-30).log() for _, p in word_probs], decode, glued)
        for tagged, enc, (_, p), tags in zip(out, encodings, word_probs, decoded):
            tagged.word_tags, tagged.word_scores = self._word_tags(enc, p, tags)
            tagged.entities = entities_from_tags(tagged.text, tagged.words, tagged.word_tags, tagged.word_scores)
        return out[0] if single else out

    def _windows(self, encodings, n_words: list[int]):
        """Every text's windows: [(word -> its token positions in the window, input ids)] for all
        texts in order, and per text (each word's piece ids, the windows' word ranges)."""
        windows, per_text = [], []
        for enc, n in zip(encodings, n_words):
            word_pieces = [[] for _ in range(n)]
            for tok, w in zip(enc.input_ids[1:-1], enc.word_ids[1:-1]):
                word_pieces[w].append(tok)
            groups = alignment.piece_groups(enc.word_ids, enc.word_heads)
            group_plan = plan_windows([sum(len(word_pieces[w]) for w in range(a, b)) for a, b in groups],
                                      self.budget, self.stride)
            plan = [(groups[a][0], groups[b - 1][1]) for a, b in group_plan]  # the same windows, in words
            per_text.append((word_pieces, plan))
            for start, end in plan:
                ids, rows_of = [], {}
                for w in range(start, end):
                    # Only a word longer than the whole budget is cut (it has a window of its own).
                    pieces = word_pieces[w][: self.budget - len(ids)]
                    rows_of[w] = list(range(len(ids), len(ids) + len(pieces)))
                    ids.extend(pieces)
                windows.append((rows_of, ids))
        return windows, per_text

    def _word_tags(self, enc, p: torch.Tensor, decoded: list[int]) -> tuple[list[str], list[float]]:
        """Tags and scores of all words from the decoded tags of the words that own a head (their
        probabilities p (n_heads, C)), spread as xlmr/alignment.py spreads them: a word held inside
        another's piece takes the I- form of that word's tag, and its score."""
        owners = alignment.head_owners(enc.word_ids, enc.word_heads)
        tag_ids = alignment.spread_to_words(decoded, enc.word_ids, enc.word_heads, self.inside, 0)
        tags = [self.id2label[t] if k >= 0 else "O" for t, k in zip(tag_ids, owners)]
        return tags, [float(p[k, decoded[k]]) if k >= 0 else 0.0 for k in owners]

    @torch.no_grad()
    def _probabilities(self, windows: list[list[int]]) -> list[torch.Tensor]:
        """Label probabilities (n_tokens, C) for each window's tokens, batched by length."""
        out = [None] * len(windows)
        order = sorted(range(len(windows)), key=lambda j: len(windows[j]))
        for b in range(0, len(order), self.batch_size):
            chunk = order[b: b + self.batch_size]
            T = max(len(windows[j]) for j in chunk) + 2
            ids = torch.full((len(chunk), T), PAD, dtype=torch.long)
            mask = torch.zeros((len(chunk), T), dtype=torch.long)
            for row, j in enumerate(chunk):
                seq = [BOS, *windows[j], EOS]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            # amp_dtype is the runtime's decision, passed in (runtime.inference.ready_for_inference)
            amp = nullcontext() if self.amp_dtype is None else torch.autocast(self.device.type, dtype=self.amp_dtype)
            with amp:
                logits, _ = self.model(ids.to(self.device), mask.to(self.device))  # (B, T, C)
            probs = logits.float().softmax(dim=-1).cpu()
            for row, j in enumerate(chunk):
                out[j] = probs[row, 1: 1 + len(windows[j])]  # drop <s>; (n_tokens, C)
        return out
