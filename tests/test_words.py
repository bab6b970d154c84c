"""Words for the tagger in every script: hand-worked spans for Chinese, Japanese, Arabic, Hindi
and Thai, and a property test over random text from many scripts."""
from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlmr.entities import entities_from_tags
from xlmr.tagger import Tagger
from xlmr.words import scan, split_words


def cut(text, segment=None):
    return [text[a:b] for a, b in split_words(text, segment)]


def test_chinese_is_one_word_per_character():
    text = "我在北京大学工作。"
    assert cut(text) == ["我", "在", "北", "京", "大", "学", "工", "作", "。"]
    tags = ["O", "O", "B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O", "O"]
    (e,) = entities_from_tags(text, split_words(text), tags, [1.0] * 9)
    assert (e.type, e.text, e.start, e.end) == ("ORG", "北京大学", 2, 6)


def test_japanese_kana_per_character_latin_and_digits_whole():
    text = "ソニーはTwitterで2022年に東京へ"
    assert cut(text) == ["ソ", "ニ", "ー", "は", "Twitter", "で", "2022", "年", "に", "東", "京", "へ"]
    tags = ["B-ORG", "I-ORG", "I-ORG", "O", "B-ORG", "O", "O", "O", "O", "B-LOC", "I-LOC", "O"]
    got = [(e.type, e.text, e.start, e.end) for e in entities_from_tags(text, split_words(text), tags, [1.0] * 12)]
    assert got == [("ORG", "ソニー", 0, 3), ("ORG", "Twitter", 4, 11), ("LOC", "東京", 18, 20)]


def test_arabic_keeps_logical_offsets():
    text = "ولد محمد في القاهرة."
    assert split_words(text) == [(0, 3), (4, 8), (9, 11), (12, 19), (19, 20)]
    tags = ["O", "B-PER", "O", "B-LOC", "O"]
    got = [(e.type, e.text, e.start, e.end) for e in entities_from_tags(text, split_words(text), tags, [1.0] * 5)]
    assert got == [("PER", "محمد", 4, 8), ("LOC", "القاهرة", 12, 19)]


def test_hindi_vowel_signs_and_virama_stay_in_their_word():
    text = "नरेंद्र मोदी दिल्ली में रहते हैं।"
    assert cut(text) == ["नरेंद्र", "मोदी", "दिल्ली", "में", "रहते", "हैं", "।"]
    tags = ["B-PER", "I-PER", "B-LOC", "O", "O", "O", "O"]
    got = [(e.type, e.text, e.start, e.end) for e in entities_from_tags(text, split_words(text), tags, [1.0] * 7)]
    assert got == [("PER", "नरेंद्र मोदी", 0, 12), ("LOC", "दिल्ली", 13, 19)]


def test_thai_runs_are_cut_into_sentencepiece_pieces(tokenizer):
    # Bangkok is the capital of Thailand: the pieces are the real vocabulary's.
    text = "กรุงเทพมหานครเป็นเมืองหลวงของไทย"
    assert cut(text, tokenizer.piece_spans) == ["กรุงเทพมหานคร", "เป็น", "เมือง", "หลวง", "ของ", "ไทย"]
    assert cut(text) == [text]  # without a segmenter the run is one word


def test_emoji_sequences_joiners_and_controls():
    text = "a\u200bb\x00 👩\u200d💻 👍🏽! e\u0301t\u00e9"
    words, skipped = scan(text)
    assert [text[a:b] for a, b in words] == ["a", "b", "👩\u200d💻", "👍🏽", "!", "e\u0301t\u00e9"]
    assert skipped == [(1, 2), (3, 4)]  # the zero-width space and the NUL


# -- property test -----------------------------------------------------------------------------

ALPHABET = (
    "abcXYZ019éüß-'’_.,;:!?()«»\"/&%"  # Latin, digits, punctuation, joiners
    "абвЖЯ" "αβΓ" "אבג" "ابجة" "كتب" "\u064e\u0651"  # Cyrillic, Greek, Hebrew, Arabic (+ harakat)
    "नमसत\u093f\u094d\u0902" "தமிழ\u0bcd" "한국어"  # Devanagari and Tamil with marks, Hangul
    "กขค\u0e31\u0e34ເລາ" "ភ្នំ"  # Thai, Lao, Khmer
    "中国北京々〇" "ひらがなカタカナー" "ｶﾀ"  # Han, kana, half-width kana
    "👍👩💻🏽\ufe0f\u20e3"  # emoji, a skin tone, a variation selector, a keycap
    "\u0301\u0308"  # combining marks
    "\u200b\u200c\u200d\u200e\u200f\ufeff\u2060"  # zero-width and direction marks
    "\x00\x07\x1b\x7f\ud800\u0378"  # controls, a lone surrogate, an unassigned code point
    " \t\n\u00a0\u3000\u2028"  # spaces of several kinds
)
texts = st.one_of(
    st.text(alphabet=ALPHABET, max_size=80),
    st.builds(lambda c, n: c * n, st.sampled_from("aก中👍\u0301"), st.integers(1, 600)),  # long runs without spaces
)


def check_words(text, words, skipped):
    covered = [False] * len(text)
    previous_end = 0
    for a, b in words:
        assert previous_end <= a < b <= len(text), (a, b)  # in order, non-empty, no overlap
        previous_end = b
        assert not any(c.isspace() for c in text[a:b]), text[a:b]
        for i in range(a, b):
            covered[i] = True
    for a, b in skipped:
        for i in range(a, b):
            assert not covered[i]
            assert unicodedata.category(text[i]) in ("Cc", "Cf", "Cs", "Cn"), repr(text[i])
            covered[i] = True
    assert all(covered[i] or text[i].isspace() or unicodedata.category(text[i]) in ("Zs", "Zl", "Zp")
               for i in range(len(text)))


@settings(max_examples=400, deadline=None)
@given(texts)
def test_any_text_splits_into_words_that_cover_it(text):
    words, skipped = scan(text)
    check_words(text, words, skipped)


@pytest.fixture(scope="module")
def tiny_tagger(spm_path, tmp_path_factory):
    from tests.tiny import tiny_checkpoint
    from xlmr.tokenizer import XLMRTokenizer
    from xlmr.weights import load_model

    folder = tiny_checkpoint(tmp_path_factory.mktemp("tiny-words"), spm_path, dropout=0.0)
    return Tagger(load_model(folder), XLMRTokenizer(folder), max_length=32)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts)
def test_tagger_never_raises_and_offsets_slice_the_text(tiny_tagger, text):
    tagged = tiny_tagger(text, aggregation="max")
    check_words(text, tagged.words, tagged.skipped)
    assert len(tagged.word_tags) == len(tagged.words)
    for e in tagged.entities:
        assert text[e.start:e.end] == e.text and e.text.strip() == e.text
