"""Words and the tokenizer at their edges, worked by hand: the first and last character of every
script range in xlmr/words.py and its assigned neighbours outside it (each checked against its
Unicode name), and the tokenizer cases the PAN-X parity sample does not reach. Written for the
mutants the older tests let through (docs/testing.md)."""
from __future__ import annotations

import unicodedata

import pytest

from xlmr.words import SINGLE, SPACELESS, char_class, per_character, scan

# (code point, its Unicode name, whether PAN-X writes it one word per character). Inside: the
# ranges' first and last characters; outside: the assigned characters next to them. Unassigned
# neighbours are checked by test_whole_blocks_are_one_script_to_their_unassigned_ends below.
PER_CHARACTER_EDGES = [
    (0x3004, "JAPANESE INDUSTRIAL STANDARD SYMBOL", False), (0x3005, "IDEOGRAPHIC ITERATION MARK", True),
    (0x3007, "IDEOGRAPHIC NUMBER ZERO", True), (0x3008, "LEFT ANGLE BRACKET", False),
    (0x3020, "POSTAL MARK FACE", False), (0x3021, "HANGZHOU NUMERAL ONE", True),
    (0x3029, "HANGZHOU NUMERAL NINE", True), (0x302A, "IDEOGRAPHIC LEVEL TONE MARK", False),
    (0x3037, "IDEOGRAPHIC TELEGRAPH LINE FEED SEPARATOR SYMBOL", False), (0x3038, "HANGZHOU NUMERAL TEN", True),
    (0x303A, "HANGZHOU NUMERAL THIRTY", True), (0x303B, "VERTICAL IDEOGRAPHIC ITERATION MARK", True),
    (0x303C, "MASU MARK", True),
    (0x303D, "PART ALTERNATION MARK", False), (0x303F, "IDEOGRAPHIC HALF FILL SPACE", False),
    (0x3041, "HIRAGANA LETTER SMALL A", True), (0x309F, "HIRAGANA DIGRAPH YORI", True),
    (0x30A0, "KATAKANA-HIRAGANA DOUBLE HYPHEN", True), (0x30FF, "KATAKANA DIGRAPH KOTO", True),
    (0x31F0, "KATAKANA LETTER SMALL KU", True), (0x31FF, "KATAKANA LETTER SMALL RO", True),
    (0x3200, "PARENTHESIZED HANGUL KIYEOK", False), (0x33FF, "SQUARE GAL", False),
    (0x3400, "CJK UNIFIED IDEOGRAPH-3400", True), (0x4DBF, "CJK UNIFIED IDEOGRAPH-4DBF", True),
    (0x4DC0, "HEXAGRAM FOR THE CREATIVE HEAVEN", False), (0x4DFF, "HEXAGRAM FOR BEFORE COMPLETION", False),
    (0x4E00, "CJK UNIFIED IDEOGRAPH-4E00", True), (0x9FFF, "CJK UNIFIED IDEOGRAPH-9FFF", True),
    (0xA000, "YI SYLLABLE IT", False), (0xF900, "CJK COMPATIBILITY IDEOGRAPH-F900", True),
    (0xFB00, "LATIN SMALL LIGATURE FF", False), (0xFF65, "HALFWIDTH KATAKANA MIDDLE DOT", False),
    (0xFF66, "HALFWIDTH KATAKANA LETTER WO", True), (0xFF9F, "HALFWIDTH KATAKANA SEMI-VOICED SOUND MARK", True),
    (0xFFA0, "HALFWIDTH HANGUL FILLER", False), (0x20000, "CJK UNIFIED IDEOGRAPH-20000", True),
]
SPACELESS_EDGES = [  # Thai, Lao, Khmer and Khmer symbols: cut by SentencePiece, not per character
    (0x0E01, "THAI CHARACTER KO KAI", True), (0x0E81, "LAO LETTER KO", True), (0x0F00, "TIBETAN SYLLABLE OM", False),
    (0x1780, "KHMER LETTER KA", True), (0x1800, "MONGOLIAN BIRGA", False), (0x19DF, "NEW TAI LUE SIGN LAEV", False),
    (0x19E0, "KHMER SYMBOL PATHAMASAT", True), (0x19FF, "KHMER SYMBOL DAP-PRAM ROC", True),
    (0x1A00, "BUGINESE LETTER KA", False),
]


@pytest.mark.parametrize("code, name, inside", PER_CHARACTER_EDGES, ids=[f"{c:04X}" for c, _, _ in PER_CHARACTER_EDGES])
def test_the_edges_of_the_per_character_scripts(code, name, inside):
    c = chr(code)
    assert unicodedata.name(c) == name
    assert per_character(c) == inside and (char_class(c) == SINGLE) == inside
    if inside:  # in a text, a run of them is one word per character
        assert scan(c * 3)[0] == [(0, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize("code, name, inside", SPACELESS_EDGES, ids=[f"{c:04X}" for c, _, _ in SPACELESS_EDGES])
def test_the_edges_of_the_scripts_written_without_spaces(code, name, inside):
    c = chr(code)
    assert unicodedata.name(c) == name
    assert (char_class(c) == SPACELESS) == inside


# The ranges that are whole Unicode blocks (Blocks.txt), with the class every code point in them
# gets, assigned or not: a character a later Unicode version adds there (Python's database calls
# it unassigned) is still cut as its block's script. Outside, the code point next to each end is
# not of that class unless it starts or ends the adjacent block of the same script.
BLOCKS = [
    (0x3040, 0x309F, SINGLE, "Hiragana"), (0x30A0, 0x30FF, SINGLE, "Katakana"),
    (0x31F0, 0x31FF, SINGLE, "Katakana Phonetic Extensions"), (0x3400, 0x4DBF, SINGLE, "CJK Extension A"),
    (0x4E00, 0x9FFF, SINGLE, "CJK Unified Ideographs"), (0xF900, 0xFAFF, SINGLE, "CJK Compatibility Ideographs"),
    (0x20000, 0x3FFFF, SINGLE, "planes 2 and 3, the ideographic planes"),
    (0x0E00, 0x0E7F, SPACELESS, "Thai"), (0x0E80, 0x0EFF, SPACELESS, "Lao"),
    (0x1780, 0x17FF, SPACELESS, "Khmer"), (0x19E0, 0x19FF, SPACELESS, "Khmer Symbols"),
]


@pytest.mark.parametrize("lo, hi, kind, block", BLOCKS, ids=[b for *_, b in BLOCKS])
def test_whole_blocks_are_one_script_to_their_unassigned_ends(lo, hi, kind, block):
    same = [(a, b) for a, b, k, _ in BLOCKS if k == kind]
    assert char_class(chr(lo)) == kind and char_class(chr(hi)) == kind
    for outside in (lo - 1, hi + 1):
        if not any(a <= outside <= b for a, b in same):
            assert char_class(chr(outside)) != kind, f"U+{outside:04X} next to {block}"


def test_skin_tone_modifiers_and_their_neighbours():
    # U+1F3FB..U+1F3FF modify the emoji before them (one word); U+1F3FA AMPHORA and U+1F400 RAT
    # are emoji of their own (two words).
    for code, name, joins in [(0x1F3FA, "AMPHORA", False), (0x1F3FB, "EMOJI MODIFIER FITZPATRICK TYPE-1-2", True),
                              (0x1F3FF, "EMOJI MODIFIER FITZPATRICK TYPE-6", True), (0x1F400, "RAT", False)]:
        assert unicodedata.name(chr(code)) == name
        assert len(scan("\U0001F44D" + chr(code))[0]) == (1 if joins else 2), name


def test_private_use_next_to_the_compatibility_ideographs_is_not_per_character():
    # U+F8FF, the last private-use character (it has no name), sits just below U+F900.
    assert unicodedata.category("\uf8ff") == "Co" and not per_character("\uf8ff") and per_character("\uf900")
    from xlmr.words import OTHER

    assert char_class("\uf8ff") == OTHER  # a symbol of its own, as punctuation is


def test_character_classes_and_per_character_words_by_hand():
    from xlmr.words import OTHER, SKIP, SPACE, WORD

    assert [char_class(c) for c in "a\u0301 \t\u3000\u200b!北ก_"] == [
        WORD, WORD, SPACE, SPACE, SPACE, SKIP, OTHER, SINGLE, SPACELESS, WORD]
    assert per_character("北京") and per_character("ソニー")
    assert not per_character("") and not per_character("北a") and not per_character("a北")


def test_controls_that_are_spaces_and_zero_width_joiners_at_the_edges():
    # A tab and a newline are spaces (str.isspace), though their category is Cc, not Z*.
    assert scan("a\tb\nc") == ([(0, 1), (2, 3), (4, 5)], [])
    # A zero-width joiner joins two non-space characters; at the end of the text, or before a
    # space, it joins nothing and is skipped.
    assert scan("a\u200db") == ([(0, 3)], [])
    assert scan("a\u200d") == ([(0, 1)], [(1, 2)])
    assert scan("a\u200d b") == ([(0, 1), (3, 4)], [(1, 2)])


def test_a_hyphen_or_apostrophe_joins_only_when_a_letter_follows_it_even_at_the_end():
    # Jean-L and l'a end on the one letter after the joiner: one word. A joiner that ends the
    # text, or stands before a space, joins nothing and is a word of its own.
    assert scan("Jean-L") == ([(0, 6)], [])
    assert scan("l'a") == ([(0, 3)], [])
    assert scan("Jean-") == ([(0, 4), (4, 5)], [])
    assert scan("Jean- L") == ([(0, 4), (4, 5), (6, 7)], [])


def test_a_joiner_after_a_segmented_piece_extends_that_piece():
    # Thai cut by a segmenter into ก | ข; a zero-width joiner and x after the run join the last
    # piece (the joiner is inside the word, not skipped). Words before it stay as they were.
    segment = lambda run: [(i, i + 1) for i in range(len(run))]  # noqa: E731  one piece per character
    assert scan("กข\u200dx", segment) == ([(0, 1), (1, 4)], [])
    assert scan("a กข\u200dx", segment) == ([(0, 1), (2, 3), (3, 6)], [])


def test_a_combining_mark_from_outside_the_block_stays_inside_a_thai_run():
    # U+0301 COMBINING ACUTE ACCENT is not Thai, but a mark belongs to the letter before it, so
    # ก + U+0301 + ข is one unsegmented run, not ก´ | ข.
    assert scan("\u0e01\u0301\u0e02") == ([(0, 3)], [])


# -- xlmr/tokenizer.py -----------------------------------------------------------------------------

def test_the_tokenizer_opens_a_folder_given_as_a_string_and_names_a_missing_model(spm_path, tmp_path):
    from xlmr.tokenizer import XLMRTokenizer

    tok = XLMRTokenizer(str(spm_path.parent))  # a str, and the folder rather than the file
    assert tok.path == spm_path and tok.encode("Hello world!") == [0, 35378, 8999, 38, 2]
    with pytest.raises(FileNotFoundError, match="no SentencePiece model at .*missing"):
        XLMRTokenizer(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="sentencepiece.bpe.model"):
        XLMRTokenizer(tmp_path)  # a folder without the model


def test_encode_without_special_tokens_and_its_512_token_default(tokenizer):
    assert tokenizer.encode("Hello world!", add_special_tokens=False) == [35378, 8999, 38]
    assert tokenizer.encode("Hello world!", add_special_tokens=False, max_length=2) == [35378, 8999]
    assert tokenizer.encode("Hello world!", add_special_tokens=False, max_length=None) == [35378, 8999, 38]
    (haus,) = tokenizer.convert_tokens_to_ids(["▁Haus"])
    text = "Haus " * 600
    assert tokenizer.encode(text) == [0] + [haus] * 510 + [2]  # the model's 512, <s> and </s> kept
    assert tokenizer.encode(text, max_length=None) == [0] + [haus] * 600 + [2]
    assert tokenizer.encode(text, max_length=6) == [0, haus, haus, haus, haus, 2]


def test_ids_to_pieces_at_the_ends_of_the_vocabulary(tokenizer, hf_fast_tokenizer):
    # fairseq ids 4 and 5, and the last SentencePiece piece (250000), as the fast tokenizer names them.
    ids = [4, 5, 250000]
    assert tokenizer.convert_ids_to_tokens(ids) == [hf_fast_tokenizer.id_to_token(i) for i in ids]
    assert tokenizer.convert_tokens_to_ids(tokenizer.convert_ids_to_tokens(ids)) == ids
    for bad in (-1, 250002, 10**6):
        with pytest.raises(ValueError, match=f"id {bad} is outside the vocabulary of 250002"):
            tokenizer.convert_ids_to_tokens([bad])


def test_piece_spans_after_a_bare_space_and_where_normalisation_moves_the_cuts(tokenizer):
    # "Thai is a language": SentencePiece opens the run with a bare '▁' (no characters of its own).
    text = "ภาษาไทยเป็นภาษา"
    assert tokenizer.tokenize(text) == ["▁", "ภาษาไทย", "เป็น", "ภาษา"]
    assert [text[a:b] for a, b in tokenizer.piece_spans(text)] == ["ภาษาไทย", "เป็น", "ภาษา"]
    assert tokenizer.piece_spans("") == []
    # Half-width ｶ and ﾞ normalise one by one to カ and a combining mark, together to ガ: the
    # pieces cannot be placed on the characters, so the run is one span.
    assert tokenizer.piece_spans("ｶﾞ") == [(0, 2)]
    # The ligature ﬃ normalises to "ffi" and SentencePiece cuts f | fix, inside it: one span.
    assert tokenizer.tokenize("ﬃx") == ["▁f", "fix"]
    assert tokenizer.piece_spans("ﬃx") == [(0, 2)]


def test_the_512_token_default_of_every_entry_point(tokenizer):
    (haus,) = tokenizer.convert_tokens_to_ids(["▁Haus"])
    words = ["Haus"] * 511  # <s>, 511 pieces, </s>: one over 512
    for enc in (tokenizer.encode_words(words), tokenizer.encode_words_batch([words])[0]):
        assert enc.truncated and enc.input_ids == [0] + [haus] * 510 + [2]
        assert enc.word_ids == [None, *range(510), None] and enc.word_heads == [*range(1, 511), -1]
    fits = tokenizer.encode_words(["Haus"] * 510)
    assert not fits.truncated and len(fits.input_ids) == 512
    assert tokenizer(["Haus " * 600, "Haus"]) == [[0] + [haus] * 510 + [2], [0, haus, 2]]


def test_decode_with_and_without_special_tokens_as_the_fast_tokenizer(tokenizer, hf_fast_tokenizer):
    ids = [0, 35378, 8999, 250001, 38, 1, 2]  # <s> ▁Hello ▁world <mask> ! <pad> </s>
    for skip in (True, False):
        assert tokenizer.decode(ids, skip_special_tokens=skip) == hf_fast_tokenizer.decode(ids, skip_special_tokens=skip)
    assert tokenizer.decode(ids) == "Hello world!"
    assert tokenizer.decode(ids, skip_special_tokens=False) == "<s> Hello world<mask>!<pad></s>"


def test_a_han_run_followed_by_a_latin_word_and_an_unknown_unspaced_mode(tokenizer):
    # The run 北京大学 ("Peking University") is one string cut into pieces of at most two Han
    # characters; the Latin word after it is a word of its own, with its own '▁'.
    enc = tokenizer.encode_words_batch([["北", "京", "大", "学", "Berlin"]], unspaced="runs")[0]
    assert tokenizer.convert_ids_to_tokens(enc.input_ids) == ["<s>", "北京", "大学", "▁Berlin", "</s>"]
    assert enc.word_ids == [None, 0, 2, 4, None] and enc.word_heads == [1, 1, 2, 2, 3]
    with pytest.raises(ValueError, match="unknown unspaced mode 'chars'; choose from runs, words"):
        tokenizer.encode_words_batch([["北"]], unspaced="chars")


def test_runs_with_an_unknown_character_and_runs_that_normalisation_merges(tokenizer):
    # U+20000 has no piece: inside a run it is one <unk> of its own word, the run around it cut as usual.
    enc = tokenizer.encode_words_batch([["北", "\U00020000", "京"]], unspaced="runs")[0]
    assert tokenizer.convert_ids_to_tokens(enc.input_ids) == ["<s>", "北", "<unk>", "京", "</s>"]
    assert enc.word_ids == [None, 0, 1, 2, None]
    # Half-width ｶ and ﾞ normalise together to ガ, so the run's pieces cannot be placed on its
    # words: it is encoded word by word (each word's bare '▁' then its piece, the head past the '▁'),
    # and the next sentence's run is still cut as a run.
    merged, plain = tokenizer.encode_words_batch([["ｶ", "ﾞ"], ["北", "京", "大", "学"]], unspaced="runs")
    assert tokenizer.convert_ids_to_tokens(merged.input_ids) == ["<s>", "▁", "カ", "▁", "゙", "</s>"]
    assert merged.word_ids == [None, 0, 0, 1, 1, None] and merged.word_heads == [2, 4]
    assert tokenizer.convert_ids_to_tokens(plain.input_ids) == ["<s>", "北京", "大学", "</s>"]


def test_a_run_of_one_piece_drops_its_bare_space_and_a_last_piece_starts_in_the_last_word(tokenizer):
    # SentencePiece cuts 北京 as '▁' + 北京 and 北京大 as '▁' + 北京 + 大 (the run model's own cut);
    # the bare '▁' is dropped even before a single piece, and 大 is word 2's.
    assert tokenizer._run_processor().encode(["北京", "北京大"], out_type=str) == [["▁", "北京"], ["▁", "北京", "大"]]
    one, two = tokenizer.encode_words_batch([["北", "京"], ["北", "京", "大"]], unspaced="runs")
    assert tokenizer.convert_ids_to_tokens(one.input_ids) == ["<s>", "北京", "</s>"]
    assert one.word_ids == [None, 0, None] and one.word_heads == [1, 1]
    assert tokenizer.convert_ids_to_tokens(two.input_ids) == ["<s>", "北京", "大", "</s>"]
    assert two.word_ids == [None, 0, 2, None] and two.word_heads == [1, 1, 2]


def test_a_run_whose_first_piece_has_its_own_space_keeps_it(tokenizer):
    # 日本語 ("Japanese") is cut '▁日本' + '語': no bare '▁' to drop, so the first piece stays and
    # is not glued (it has its '▁'); 語 continues it.
    assert tokenizer._run_processor().encode("日本語", out_type=str) == ["▁日本", "語"]
    enc = tokenizer.encode_words_batch([["日", "本", "語"]], unspaced="runs")[0]
    assert tokenizer.convert_ids_to_tokens(enc.input_ids) == ["<s>", "▁日本", "語", "</s>"]
    assert enc.word_ids == [None, 0, 2, None] and enc.word_glued == [False, False, True]


def test_a_combining_mark_after_a_han_character_or_a_symbol_stays_with_it():
    # U+0301 COMBINING ACUTE ACCENT (category Mn) attaches to the character before it whatever its class.
    assert unicodedata.category("\u0301") == "Mn"
    assert scan("北\u0301京") == ([(0, 2), (2, 3)], [])
    assert scan("!\u0301 a") == ([(0, 2), (3, 4)], [])
