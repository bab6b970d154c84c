"""The user's own data files: each format read by hand-checked examples, tag schemes normalised to
the same entities seqeval finds in the original, labels from the data, and every bad input an
error naming file:line."""
from __future__ import annotations

import json
import random

import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value
from seqeval.metrics.sequence_labeling import get_entities

from loaders.conll import NerDataError, to_iob2
from loaders.nerfiles import label_list, labels_of, load_ner_file, read_ner_file, relabel
from loaders.panx import TAGS

CONLL_2003_IOB1 = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
. . O O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER
Paris NNP I-NP I-LOC
Berlin NNP I-NP B-LOC

-DOCSTART- -X- -X- O

Faust NNP B-NP I-WORKS
"""


def test_conll_2003_file_read_by_hand(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(CONLL_2003_IOB1, encoding="utf-8")
    s = read_ner_file(path)
    assert s.tokens == [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn", "Paris", "Berlin"], ["Faust"]]
    # IOB1: an entity opens with I-; B- splits two adjacent entities of one type.
    assert s.tags == [["B-ORG", "O", "B-MISC", "O", "O"], ["B-PER", "I-PER", "B-LOC", "B-LOC"], ["B-WORKS"]]
    assert s.normalised == 5
    assert s.place(1, 3) == f"{path}:12"  # Berlin
    assert labels_of(s) == ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "B-WORKS",
                            "I-LOC", "I-MISC", "I-ORG", "I-PER", "I-WORKS"]


def test_bioes_read_by_hand(tmp_path):
    path = tmp_path / "dev.bioes"
    path.write_text("New\tB-LOC\nYork\tE-LOC\nand\tO\nBonn\tS-LOC\nUlm\tS-LOC\nVan\tB-PER\nder\tI-PER\nBerg\tE-PER\n",
                    encoding="utf-8")
    assert read_ner_file(path).tags == [["B-LOC", "I-LOC", "O", "B-LOC", "B-LOC", "B-PER", "I-PER", "I-PER"]]


def random_iob2(rng, n):
    tags, previous = [], "O"
    for _ in range(n):
        kind = rng.choice(["PER", "LOC", "WORKS"])
        choice = rng.random()
        if choice < 0.4:
            tags.append("O")
        elif choice < 0.7 or previous == "O":
            tags.append(f"B-{kind}")
        else:
            tags.append(f"I-{previous[2:]}")
        previous = tags[-1]
    return tags


def to_iob1(tags):
    """IOB2 -> IOB1 by its definition: B- only where an entity directly follows one of its type."""
    out = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-") and not (i and tags[i - 1] != "O" and tags[i - 1][2:] == tag[2:]):
            tag = "I-" + tag[2:]
        out.append(tag)
    return out


def to_bioes(tags):
    out = []
    for i, tag in enumerate(tags):
        ends = i + 1 == len(tags) or not tags[i + 1].startswith("I-")
        if tag == "O":
            out.append(tag)
        elif tag.startswith("B-"):
            out.append(("S-" if ends else "B-") + tag[2:])
        else:
            out.append(("E-" if ends else "I-") + tag[2:])
    return out


def test_schemes_normalise_to_the_same_entities():
    """IOB2 is left as it is; IOB1 and BIOES written from it come back to it, with the entities
    seqeval reads in the original."""
    rng = random.Random(0)
    for _ in range(500):
        iob2 = random_iob2(rng, rng.randint(1, 12))
        assert to_iob2(iob2) == iob2
        for other in (to_iob1(iob2), to_bioes(iob2)):
            assert to_iob2(other) == iob2, other
            assert get_entities(to_iob2(other)) == get_entities(iob2)


def test_label_list_is_o_first_then_sorted_with_both_forms():
    assert label_list([["B-WORKS", "O"], ["B-LOC", "I-LOC"]]) == ["O", "B-LOC", "B-WORKS", "I-LOC", "I-WORKS"]


def test_jsonl_and_parquet(tmp_path):
    rows = [{"tokens": ["Goethe", "schrieb", "Faust"], "ner_tags": ["S-PER", "O", "S-WORKS"]},
            {"tokens": ["in", "Weimar"], "ner_tags": ["O", "B-LOC"]}]
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    s = read_ner_file(jsonl)
    assert s.tags == [["B-PER", "O", "B-WORKS"], ["O", "B-LOC"]]

    # datasets writes ClassLabel names into the Parquet file: their order is the label list.
    names = ["O", "B-WORKS", "I-WORKS", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names))})
    parquet = tmp_path / "train.parquet"
    Dataset.from_dict({"tokens": [r["tokens"] for r in rows], "ner_tags": [[3, 0, 1], [0, 5]]},
                      features=features).to_parquet(parquet)
    s = read_ner_file(parquet)
    assert s.tags == [["B-PER", "O", "B-WORKS"], ["O", "B-LOC"]]
    assert labels_of(s) == names
    ds = load_ner_file(parquet, labels_of(s))
    assert ds["ner_tags"] == [[3, 0, 1], [0, 5]]


@pytest.mark.parametrize("name,content,message", [
    ("a.conll", "Paris B-LOC\nParis\n", r"a.conll:2: expected 'token ... tag' columns, got 'Paris'"),
    ("b.conll", "Paris\tB-LOC\n\tO\n", r"b.conll:2: empty token"),
    ("c.conll", "Paris LOC\n", r"c.conll:1: tag 'LOC' is not O, B-X or I-X"),
    ("d.conll", "\n\n-DOCSTART- O\n\n", r"d.conll: no sentences"),
    ("e.jsonl", '{"tokens": ["a"], "ner_tags": ["O"]}\n{"tokens": ["a"]\n', r"e.jsonl:2: not a JSON object"),
    ("f.jsonl", '{"tokens": ["a", "b"], "ner_tags": ["O"]}\n', r"f.jsonl:1: 'tokens' and 'ner_tags' must be lists of one length"),
    ("g.jsonl", '{"tokens": ["a"], "ner_tags": [0]}\n', r"g.jsonl:1: ner_tags holds numbers"),
    ("h.jsonl", '{"tokens": [""], "ner_tags": ["O"]}\n', r"h.jsonl:1: empty token"),
])
def test_bad_input_names_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(NerDataError, match=message):
        read_ner_file(tmp_path / name)


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.conll"
    path.write_bytes("Paris B-LOC\n\nM\u00fcnchen B-LOC\n".encode("latin-1"))
    with pytest.raises(NerDataError, match=r"latin1.conll:3: not UTF-8 \(byte 0xfc at column 2\)"):
        read_ner_file(path)


def test_a_label_the_model_does_not_know(tmp_path):
    path = tmp_path / "test.conll"
    path.write_text("Paris B-LOC\n\nFaust B-WORKS\n", encoding="utf-8")
    with pytest.raises(NerDataError, match=r"test.conll:3: tag 'B-WORKS' is not one of the model's labels"):
        load_ner_file(path, list(TAGS))


def test_relabel_maps_panx_ids_to_a_model_of_other_order():
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=list(TAGS)))})
    ds = Dataset.from_dict({"tokens": [["Jeff", "Dean", "Google"]], "ner_tags": [[1, 2, 3]]}, features=features)
    model_labels = ["O", "B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG", "I-PER"]
    assert relabel(ds, model_labels, "PAN-X")["ner_tags"] == [[3, 6, 2]]
    with pytest.raises(NerDataError, match="PAN-X: tag.s. B-PER, I-PER are not among the model's labels"):
        relabel(ds, ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG"], "PAN-X")
