"""XLM-R's SentencePiece tokenizer with fairseq ids and word ids.

fairseq put four special tokens in front of the SentencePiece vocabulary and kept SentencePiece's
order for the rest, so every SentencePiece id is shifted by one:

    fairseq:        <s>=0  <pad>=1  </s>=2  <unk>=3  ',' = 6 ... <mask>=250001
    SentencePiece:  <unk>=0  <s>=1  </s>=2  ',' = 5 ...

SentencePiece's own <unk> (0) would become 1, the pad id, so it is mapped to 3 instead.
"""
from __future__ import annotations

import re
import itertools
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

import sentencepiece as spm

from . import alignment
from .spm_model import mark_unused
from .han_runs import piece_starts, run_parts
from .words import PER_CHARACTER

BOS, PAD, EOS, UNK = 0, 1, 2, 3
SPECIAL_TOKENS = {BOS: "<s>", PAD: "<pad>", EOS: "</s>", UNK: "<unk>"}
FAIRSEQ_OFFSET = 1
SPIECE_UNDERLINE = "\u2581"  # '▁', SentencePiece's mark for "a space came before this piece"


UNSPACED = ("runs", "words")  # how words of Han and kana are tokenised: see encode_words_batch
# In a run, pieces longer than this many Han/kana characters are not used: whole pieces such as
# 在北京 ("in Beijing", SentencePiece's own cut of 我在北京大学) would hide an entity's edges
# inside one token. (Measured, README: SentencePiece's own cut scores a little higher on the
# PAN-X test subsets, zh .374 vs .370, ja .249 vs .222, but tags 在北京大学 where this tags 北京大学.)
RUN_PIECE_CHARS = 2


@dataclass
class Encoding:
    input_ids: list[int]
    word_ids: list[int | None]  # the word each token starts in; None for <s> and </s>
    truncated: bool = False
    # Per word, the position of the token that carries its label (xlmr/alignment.py): its first token (its second
    # when the first is a bare '▁', unless unspaced="words"), or for a word held inside another
    # word's piece (a run of Han/kana), that word's head; -1 where truncation cut the word off.
    # Empty when not computed.
    word_heads: list[int] = field(default_factory=list)
    # Per word, whether the piece that carries its label has no '▁' of its own and continues the
    # text of an earlier word, as pieces inside a run of Han/kana do (a piece after the word's own
    # bare '▁' does not). A model fine-tuned on spaced text
    # never saw a label on such a piece, so its B-/I- split there means little (xlmr/decoding.py).
    word_glued: list[bool] = field(default_factory=list)


class XLMRTokenizer:
    def __init__(self, path: str | Path):
        path = Path(path)
        if path.is_dir():
            path = path / "sentencepiece.bpe.model"
        if not path.is_file():
            raise FileNotFoundError(f"no SentencePiece model at {path}")
        self.path = path
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        # The model's character map alone (NFKC and friends), without SentencePiece's trimming of
        # spaces: a word can normalise to something with spaces in it, and those matter (below).
        self.normalizer = spm.SentencePieceNormalizer(
            model_file=str(path), add_dummy_prefix=False, escape_whitespaces=False, remove_extra_whitespaces=False
        )
        self.space_piece_id = self.sp.piece_to_id(SPIECE_UNDERLINE) + FAIRSEQ_OFFSET
        n = self.sp.get_piece_size()
        self.mask_id = n + FAIRSEQ_OFFSET  # 250001 for XLM-R's 250000 pieces
        self.vocab_size = n + FAIRSEQ_OFFSET + 1
        self.bos_id, self.pad_id, self.eos_id, self.unk_id = BOS, PAD, EOS, UNK
        self._run_sp = None  # built on first use: see _run_processor

    # -- ids <-> pieces ------------------------------------------------------------------------
    def _to_fairseq(self, sp_ids: list[int]) -> list[int]:
        return [UNK if i == 0 else i + FAIRSEQ_OFFSET for i in sp_ids]

    def convert_ids_to_tokens(self, ids) -> list[str]:
        return [self._id_to_piece(int(i)) for i in ids]

    def _id_to_piece(self, i: int) -> str:
        if i in SPECIAL_TOKENS:
            return SPECIAL_TOKENS[i]
        if i == self.mask_id:
            return "<mask>"
        if not 0 <= i < self.vocab_size:
            raise ValueError(f"id {i} is outside the vocabulary of {self.vocab_size}")
        return self.sp.id_to_piece(i - FAIRSEQ_OFFSET)

    def convert_tokens_to_ids(self, tokens) -> list[int]:
        inverse = {v: k for k, v in SPECIAL_TOKENS.items()} | {"<mask>": self.mask_id}
        return [inverse[t] if t in inverse else self._to_fairseq([self.sp.piece_to_id(t)])[0] for t in tokens]

    # -- encoding ------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True, max_length: int | None = 512) -> list[int]:
        ids = self._to_fairseq(self.sp.encode(text))
        if not add_special_tokens:
            return ids if max_length is None else ids[:max_length]
        if max_length is not None:
            ids = ids[: max_length - 2]
        return [BOS, *ids, EOS]

    def piece_spans(self, run: str) -> list[tuple[int, int]]:
        """(start, end) offsets in `run` of the SentencePiece pieces it is cut into: the words
        of a script written without spaces (see xlmr/words.py). Offsets are exact when
        normalisation leaves the run as it is or changes it character by character; otherwise
        the run is one span."""
        per_char = [self.normalizer.normalize(c) for c in run]
        pieces = [p.replace(SPIECE_UNDERLINE, "") for p in self.sp.encode(run, out_type=str)]
        if "".join(pieces) != "".join(per_char).replace(" ", ""):
            return [(0, len(run))] if run else []
        # Normalised offset -> original offset, through each character's normalised length.
        ends, total = {0: 0}, 0
        for i, c in enumerate(per_char):
            total += len(c.replace(" ", ""))
            ends[total] = i + 1
        spans, at = [], 0
        for p in pieces:
            if p and at in ends and at + len(p) in ends:
                spans.append((ends[at], ends[at + len(p)]))
            elif p:
                return [(0, len(run))]
            at += len(p)
        return spans

    def tokenize(self, text: str) -> list[str]:
        return self.sp.encode(text, out_type=str)

    def encode_words(self, words: list[str], max_length: int | None = 512) -> Encoding:
        """Encode pre-split words as Hugging Face's `is_split_into_words=True` does: each word is
        tokenised on its own, as if preceded by a space, so word boundaries come from the input,
        not from SentencePiece."""
        return self.encode_words_batch([words], max_length)[0]

    def _word_segments(self, word: str) -> list[str]:
        """The pieces Hugging Face's fast tokenizer cuts one word into before its Unigram model
        runs: normalise, squeeze runs of spaces, mark spaces with '▁', put '▁' in front, and
        split before every '▁'. A space that normalisation leaves at the end of a word (a
        left-to-right mark becomes one) therefore gives a lone '▁' token; SentencePiece alone
        would trim it. Returned without their leading '▁', which `sp.encode` adds back."""
        text = re.sub(" {2,}", " ", self.normalizer.normalize(word)).replace(" ", SPIECE_UNDERLINE)
        if not text.startswith(SPIECE_UNDERLINE):
            text = SPIECE_UNDERLINE + text
        return [seg[1:] for seg in re.findall(f"{SPIECE_UNDERLINE}[^{SPIECE_UNDERLINE}]*", text)]

    def _encode_segments(self, segments: list[str]) -> list[list[int]]:
        encoded = self.sp.encode(segments) if segments else []
        # An empty segment is a bare '▁', which sp.encode would drop.
        return [self._to_fairseq(ids) if seg else [self.space_piece_id] for seg, ids in zip(segments, encoded)]

    def encode_words_batch(self, batch: list[list[str]], max_length: int | None = 512,
                           unspaced: str = "words") -> list[Encoding]:
        """Encode sentences of pre-split words. With unspaced="runs", each run of two or more
        Han/kana words (PAN-X writes Chinese and Japanese one character per word) is tokenised
        as one string, as SentencePiece saw such text in pretraining, instead of as lone '▁'
        pieces before every character; a piece then starts in one word and may hold the next
        ones (see Encoding.word_heads), and a word's label moves off a bare '▁' onto its next
        piece (xlmr/alignment.py). "words" is Hugging Face's is_split_into_words and the book's
        alignment: each word alone, labelled on its first piece."""
        if unspaced not in UNSPACED:
            raise ValueError(f"unknown unspaced mode {unspaced!r}; choose from {', '.join(UNSPACED)}")
        # Each sentence as parts: a lone word, or a run of Han/kana words (first, end).
        parts = [run_parts(words, unspaced == "runs") for words in batch]
        # One SentencePiece call for every segment of every lone word of the batch, and one for
        # every run: far faster than a call per word.
        lone = [words[a] for words, ps in zip(batch, parts) for a, b in ps if b == a + 1]
        segments_per_word = [self._word_segments(w) for w in lone]
        encoded = iter(self._encode_segments([seg for segs in segments_per_word for seg in segs]))
        word_segments = iter(segments_per_word)
        runs = iter(self._encode_runs([words[a:b] for words, ps in zip(batch, parts) for a, b in ps if b > a + 1]))
        out = []
        for words, ps in zip(batch, parts):
            ids, word_ids = [BOS], [None]
            for a, b in ps:
                if b > a + 1:
                    run_ids, run_words = next(runs)
                    ids.extend(run_ids)
                    word_ids.extend(a + w for w in run_words)
                    continue
                for _ in next(word_segments):
                    piece_ids = next(encoded)
                    ids.extend(piece_ids)
                    word_ids.extend([a] * len(piece_ids))
            heads = alignment.word_heads(word_ids, len(words))
            if unspaced == "runs":
                heads = alignment.past_bare_space(ids, word_ids, heads, self.space_piece_id)
            truncated = max_length is not None and len(ids) + 1 > max_length
            if truncated:  # keep </s>: the model was pretrained with it closing every sequence
                ids, word_ids = ids[: max_length - 1], word_ids[: max_length - 1]
                heads = alignment.truncate_heads(heads, len(ids))  # words cut off have no label
            glued = alignment.glued_heads(ids, word_ids, heads, self.space_piece_id, self._glued)
            out.append(Encoding(ids + [EOS], word_ids + [None], truncated, heads, glued))
        return out

    def _glued(self, i: int) -> bool:
        """Whether piece i continues the text before it: a piece without a leading '▁'."""
        return i not in SPECIAL_TOKENS and i != self.mask_id and not self._id_to_piece(i).startswith(SPIECE_UNDERLINE)

    def _encode_runs(self, runs: list[list[str]]) -> list[tuple[list[int], list[int]]]:
        """(ids, for each piece the run's word it starts in) for runs of Han/kana words, each
        tokenised as one string after one '▁', as `_word_segments` treats a word. A run whose
        pieces cannot be placed on its characters (normalisation that merges characters) is
        encoded word by word instead."""
        if not runs:  # building the run model takes seconds: not for text without Han/kana
            return []
        sp = self._run_processor()
        out = []
        for words, ids in zip(runs, sp.encode(["".join(w) for w in runs])):
            starts = piece_starts(words, [None if i == 0 else sp.id_to_piece(i).replace(SPIECE_UNDERLINE, "")
                                           for i in ids], self.normalizer.normalize, self._is_unknown)
            if starts is None:
                out.append(self._encode_word_by_word(words))
                continue
            # SentencePiece often opens a run with a lone '▁' (no characters of its own) before
            # its first piece. Left in, it would carry the first word's label, and a model
            # trained on spaced text calls a lone '▁' O (it precedes punctuation there), so the
            # first character of nearly every run was missed. Measured on the German model's
            # zh/ja test subsets (docs/zero-shot.md): dropping it lifts zh from .309 to .370 F1.
            if len(ids) > 1 and sp.id_to_piece(ids[0]) == SPIECE_UNDERLINE:
                ids, starts = ids[1:], starts[1:]
            word_starts = list(itertools.accumulate((len(w) for w in words[:-1]), initial=0))
            out.append((self._to_fairseq(ids), [bisect_right(word_starts, c) - 1 for c in starts]))
        return out

    def _is_unknown(self, char: str) -> bool:
        """A character with no piece of its own: SentencePiece gives it (and its unknown
        neighbours) one <unk> piece."""
        return self.sp.piece_to_id(char) == 0 and self.sp.piece_to_id(SPIECE_UNDERLINE + char) == 0

    def _encode_word_by_word(self, words: list[str]) -> tuple[list[int], list[int]]:
        ids, word_ids = [], []
        for w, word in enumerate(words):
            for piece_ids in self._encode_segments(self._word_segments(word)):
                ids += piece_ids
                word_ids += [w] * len(piece_ids)
        return ids, word_ids

    def _run_processor(self) -> spm.SentencePieceProcessor:
        """The same SentencePiece model with pieces of more than RUN_PIECE_CHARS Han/kana
        characters marked unused, so a run is cut into short pieces (ids are unchanged)."""
        if self._run_sp is None:
            long_piece = re.compile("(?:[%s].*){%d}" % ("".join(f"{chr(a)}-{chr(b)}" for a, b in PER_CHARACTER),
                                                         RUN_PIECE_CHARS + 1))
            model = mark_unused(self.path.read_bytes(), lambda piece: bool(long_piece.search(piece)))
            self._run_sp = spm.SentencePieceProcessor(model_proto=model)
        return self._run_sp


    def __call__(self, texts: list[str], max_length: int | None = 512) -> list[list[int]]:
        return [self.encode(t, max_length=max_length) for t in texts]

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        pieces = []
        for i in map(int, ids):
            if i in SPECIAL_TOKENS or i == self.mask_id:
                if not skip_special_tokens:
                    pieces.append(self._id_to_piece(i))
                continue
            pieces.append(self._id_to_piece(i))
        return "".join(pieces).replace(SPIECE_UNDERLINE, " ").strip()

