"""The user's own NER data: CoNLL files, JSON lines and Parquet, any label set.

    CoNLL (any other suffix)   token ... tag         whitespace (or tab) columns, the token first and
                                                     the tag last; blank lines end a sentence;
                                                     -DOCSTART- lines are skipped
    JSON lines (.jsonl, .json) {"tokens": [...], "ner_tags": ["B-PER", ...]}  one sentence a line
    Parquet (.parquet)         columns tokens and ner_tags: tag strings, or ids with datasets'
                               ClassLabel names (as `Dataset.to_parquet` writes them)

Tags are normalised to IOB2, the scheme the decoder's allowed transitions assume: IOB1 (an
entity may open with I-; B- only splits two adjacent entities of one type) and BIOES (S- a
one-word entity, E- its last word) read as the same entities in IOB2. An IOB2 file is unchanged.

The label list comes from the training data: the ClassLabel order of a Parquet file when it has
one, else O first and then every type's B- and I- tags, sorted (B-X and I-X both, so any entity
can be decoded). The checkpoint keeps it as id2label; validation and test files are read against
it, and a tag outside it is an error naming file:line. So are a malformed line, a file that is
not UTF-8 and an empty token: a line skipped in silence would shift every label after it.
"""
from __future__ import annotations

import json
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Sequence, Value

from .conll import NerDataError, Sentences, lines, read_conll


def label_list(tag_lists) -> list[str]:
    """O, then B- and I- of every entity type seen, sorted."""
    kinds = {tag[2:] for tags in tag_lists for tag in tags if tag != "O"}
    return ["O"] + sorted([f"B-{k}" for k in kinds] + [f"I-{k}" for k in kinds])


# ---------------------------------------------------------------------------------------------
# Readers

def read_ner_file(path) -> Sentences:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data file at {path}")
    suffix = path.suffix.lower()
    reader = {".jsonl": _read_jsonl, ".json": _read_jsonl, ".parquet": _read_parquet}.get(suffix, read_conll)
    sentences = reader(path)
    if not sentences.tokens:
        raise NerDataError(f"{path}: no sentences")
    return sentences


def _read_jsonl(path: Path) -> Sentences:
    sentences = Sentences(path, one_token_a_line=False)
    for lineno, line in lines(path):
        if not line.strip():
            continue
        place = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise NerDataError(f"{place}: not a JSON object ({e.msg})") from None
        tokens, tags = _columns(record, place)
        if any(not isinstance(t, str) for t in tags):
            raise NerDataError(f"{place}: ner_tags holds numbers, and a JSON lines file carries no label names; "
                               "write the tags as strings (\"B-PER\", \"O\", ...)")
        sentences.add(tokens, tags, lineno)
    return sentences


def _read_parquet(path: Path) -> Sentences:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise NerDataError(f"{path}: cannot read Parquet ({e})") from None
    features = Features.from_arrow_schema(table.schema)
    tag_feature = getattr(features.get("ner_tags"), "feature", None)
    names = tag_feature.names if isinstance(tag_feature, ClassLabel) else None
    sentences = Sentences(path, one_token_a_line=False, rows=True, class_names=names)
    for row, record in enumerate(table.to_pylist()):
        place = f"{path}, row {row}"
        tokens, tags = _columns(record, place)
        if names is not None:
            tags = [names[t] if isinstance(t, int) and 0 <= t < len(names) else t for t in tags]
        if any(not isinstance(t, str) for t in tags):
            raise NerDataError(f"{place}: ner_tags holds {tags[0]!r}, with no ClassLabel names to read it by")
        sentences.add(tokens, tags, row)
    return sentences


def _columns(record, place: str) -> tuple[list, list]:
    if not isinstance(record, dict) or "tokens" not in record or "ner_tags" not in record:
        raise NerDataError(f"{place}: expected an object with 'tokens' and 'ner_tags'")
    tokens, tags = record["tokens"], record["ner_tags"]
    if not isinstance(tokens, list) or not isinstance(tags, list) or len(tokens) != len(tags):
        raise NerDataError(f"{place}: 'tokens' and 'ner_tags' must be lists of one length "
                           f"(got {_size(tokens)} and {_size(tags)})")
    return tokens, tags


def _size(value) -> str:
    return f"{len(value)} items" if isinstance(value, list) else type(value).__name__


# ---------------------------------------------------------------------------------------------
# Datasets

def labels_of(train: Sentences) -> list[str]:
    """The label list a training file gives: its ClassLabel order when that is IOB2 already
    (and names every tag used), else O first and the B-/I- tags sorted."""
    names = train.class_names
    derived = label_list(train.tags)
    if names and all(n == "O" or n[0] in "BI" for n in names) and set(derived) <= set(names):
        return list(names)
    return derived


def tag_ids(sentences: Sentences, labels: list[str], whose: str = "the model's") -> list[list[int]]:
    """Each sentence's tags as ids in `labels`' order; a tag outside it names its file:line."""
    ids = {label: i for i, label in enumerate(labels)}
    out = []
    for i, tags in enumerate(sentences.tags):
        for j, tag in enumerate(tags):
            if tag not in ids:
                raise NerDataError(f"{sentences.place(i, j)}: tag {tag!r} is not one of {whose} labels "
                                   f"({', '.join(labels)})")
        out.append([ids[t] for t in tags])
    return out


def to_dataset(sentences: Sentences, labels: list[str]) -> Dataset:
    """The sentences with tag ids in `labels`' order, as a Dataset whose ner_tags name them."""
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=list(labels)))})
    return Dataset.from_dict({"tokens": sentences.tokens, "ner_tags": tag_ids(sentences, labels)}, features=features)


def load_ner_file(path, labels: list[str]) -> Dataset:
    return to_dataset(read_ner_file(path), labels)


def relabel(ds, labels: list[str], source: str):
    """A Dataset or DatasetDict with its tag ids in `labels`' order (a model's id2label), e.g. PAN-X
    for a model trained on other data. A tag the model does not know is an error."""
    from datasets import DatasetDict

    if isinstance(ds, DatasetDict):
        return DatasetDict({name: relabel(split, labels, f"{source} {name}") for name, split in ds.items()})
    names = list(ds.features["ner_tags"].feature.names)
    if names == list(labels):
        return ds
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise NerDataError(f"{source}: tag(s) {', '.join(unknown)} are not among the model's labels "
                           f"({', '.join(labels)})")
    to_model = [labels.index(n) for n in names]
    features = ds.features.copy()
    features["ner_tags"] = Sequence(ClassLabel(names=list(labels)))
    return ds.map(lambda b: {"ner_tags": [[to_model[t] for t in tags] for tags in b["ner_tags"]]},
                  batched=True, features=features, load_from_cache_file=False)
