"""Survivors judged by hand, per module and mutant number (`python tools/mutate.py --list MODULE`
prints the numbers): equivalent ones, which cannot change what the module does for any input its
callers can give, leave the kill rate's denominator; the ones not worth a test stay in it. Each
entry is (line, the original text, why), checked against the module as it is now: an entry whose
line or text no longer matches (the module changed) is reported and not used."""
from __future__ import annotations

# Position 0 of every word_ids list these functions read is <s> (None, or -1 in a dataset's
# column), and a full one ends with </s>: no word's head is 0, and word_ids[-1] is never a word.
_HEAD_AT_ZERO = "no head is 0: position 0 is always <s>, so h >= 0 and h > 0 (and h >= 1) agree"
_HEAD_AT_MINUS_ONE = ("h = -1 now reads word_ids[-1]: </s> in an Encoding or a dataset row (never a word); "
                      "before </s> is appended it is a token of an earlier word, or the cut word's own bare '▁'")

EQUIVALENT = {
    "xlmr/alignment.py": {
        5: (31, "0", "w >= -1 also records the -1 of <s>/</s> in a dataset's column, which no word looks up"),
        19: (43, "h >= 0", _HEAD_AT_ZERO),
        20: (43, "0", _HEAD_AT_ZERO),
        21: (43, "0", "h = -1 is a word before any token: word_ids[-1] is a later word's token, never w"),
        40: (59, "h >= 0", _HEAD_AT_ZERO),
        41: (59, "0", _HEAD_AT_ZERO),
        42: (59, "0", _HEAD_AT_MINUS_ONE + ", which starts with '▁' so continues() is False"),
        56: (66, "h >= 0", _HEAD_AT_ZERO),
        57: (66, "0", _HEAD_AT_ZERO),
        58: (66, "0", _HEAD_AT_MINUS_ONE),
        66: (85, "first > 0", "the walk back stops at <s> (word_ids[0] is never w) before first reaches 0"),
        67: (85, "0", "the walk back stops at <s> (word_ids[0] is never w) before first reaches 0"),
        68: (85, "0", "the walk back stops at <s> (word_ids[0] is never w) before first reaches 0"),
    },
    "loaders/align.py": {
        11: (36, "0", "all names equal the first iff they all equal the last"),
        15: (38, "0", "the line above has checked that every split's names are equal"),
        27: (62, "1000", "Dataset.map's batch size: the function encodes each sentence on its own"),
        28: (62, "1000", "Dataset.map's batch size: the function encodes each sentence on its own"),
    },
    "loaders/collate.py": {
        13: (30, "0", "a batch's rows come from one dataset and have the same columns: first or last alike"),
    },
    "xlmr/decoding.py": {
        4: (44, "1e4", "any finite penalty far beyond a sentence's spread of log-probabilities decodes alike"),
        54: (109, "0.0", "adds the same 1 to the score of every allowed path (all start once)"),
        56: (110, "0.0", "adds the same n-1 to the score of every allowed path of n words"),
        57: (111, "self.prior = prior", "nothing in the project reads TagDecoder.prior (the penalties hold it)"),
        72: (129, "-1", "scores are (n_words, C): dimension 1 is the last"),
        130: (174, "-1", "best is (B, C): dimension 1 is the last"),
    },
    "xlmr/crf.py": {
        8: (32, "1", "only for a batch of no sentences (B = 0), where every tensor is empty whatever N is"),
        38: (54, "emissions = emissions.float()",
             "its one caller (XLMRForTokenClassification.loss) passes logits.float(), and fp32 parameters "
             "promote half emissions anyway"),
        66: (65, "-1", "alpha is (B, C): dimension 1 is the last"),
    },
    "xlmr/tokenizer.py": {
        12: (44, "False", "Encoding's default: its one constructor (encode_words_batch) always passes truncated"),
        48: (90, "0 <= i < self.vocab_size", "ids 0-3 are special tokens, returned above: 0 <= i and 0 < i agree"),
        50: (90, "0", "ids 0-3 are special tokens, returned above: 0 <= i and 1 <= i agree"),
        59: (96, "0", "the first and the last item of a one-item list"),
        112: (137, "0", "the first and the last item of a one-item list"),
        192: (223, "len(ids) > 1", "a run has characters, so a bare '▁' first piece always has a piece after it"),
        194: (223, "1", "a run has characters, so a bare '▁' first piece always has a piece after it"),
        204: (225, ":-1", "an extra word start at the run's end lies past every piece's start"),
    },
    "xlmr/words.py": {
        16: (37, "0x309F", "Hiragana's end moved onto U+30A0, where Katakana starts: both are per-character"),
        19: (37, "0x30A0", "Katakana's start moved onto U+309F, where Hiragana ends: both are per-character"),
        48: (43, "0x0E7F", "Thai's end moved onto U+0E80, where Lao starts: both are cut by SentencePiece"),
        51: (43, "0x0E80", "Lao's start moved onto U+0E7F, where Thai ends: both are cut by SentencePiece"),
        212: (129, "2", "the character after the joiner is a letter (checked above), so stepping one takes it "
                        "in the next turn of the loop"),
    },
}

NOT_WORTH = {  # survivors that stay in the denominator
    "xlmr/crf.py": {
        33: (44, "100", "the CRF's learning-rate factor, a tuning constant: a test could only restate it"),
        34: (44, "100", "the CRF's learning-rate factor, a tuning constant: a test could only restate it"),
    },
}
