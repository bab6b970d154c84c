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
import re
from dataclasses import dataclass, field
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Sequence, Value

TAG = re.compile(r"(?P<prefix>[BIES])-(?P<type>\S+)")
DOCSTART = "-DOCSTART-"


class NerDataError(ValueError):
    """A problem in a data file, with file:line (or file, row N for Parquet)."""


@dataclass
class Sentences:
    """Sentences read from one file: tokens, IOB2 tag strings, and where each token came from."""
    path: Path
    tokens: list[list[str]] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)
    where: list[list[str]] = field(default_factory=list)  # "file:line" per token
    class_names: list[str] | None = None  # a Parquet file's ClassLabel names, when it has them
    normalised: int = 0  # tags IOB1/BIOES -> IOB2 changed

    def add(self, tokens: list[str], tags: list[str], where: list[str]) -> None:
        for token, place in zip(tokens, where):
            if not isinstance(token, str) or not token.strip():
                raise NerDataError(f"{place}: empty token")
        for tag, place in zip(tags, where):
            check_tag(tag, place)
        iob2 = to_iob2(tags)
        self.normalised += sum(a != b for a, b in zip(tags, iob2))
        self.tokens.append(list(tokens))
        self.tags.append(iob2)
        self.where.append(list(where))


def check_tag(tag, where: str) -> None:
    if tag != "O" and not (isinstance(tag, str) and TAG.fullmatch(tag)):
        raise NerDataError(f"{where}: tag {tag!r} is not O, B-X or I-X (IOB1, IOB2), nor S-X or E-X (BIOES)")


def to_iob2(tags: list[str]) -> list[str]:
    """IOB1, BIOES or IOB2 tags of one sentence as IOB2: an entity opens with B-, continues with I-.
    S-X opens (and closes) one; I-X and E-X continue the entity before them when it has type X,
    else open one (IOB1's I- opening an entity)."""
    out, previous = [], None  # previous: the type of the entity the last word is in
    for tag in tags:
        if tag == "O":
            out.append("O")
            previous = None
            continue
        prefix, kind = tag[0], tag[2:]
        continues = prefix in "IE" and previous == kind
        out.append(f"{'I' if continues else 'B'}-{kind}")
        previous = None if prefix in "SE" else kind
    return out


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
    reader = {".jsonl": _read_jsonl, ".json": _read_jsonl, ".parquet": _read_parquet}.get(suffix, _read_conll)
    sentences = reader(path)
    if not sentences.tokens:
        raise NerDataError(f"{path}: no sentences")
    return sentences


def _lines(path: Path):
    """(line number, text) of a UTF-8 file, decoded line by line so an error names its line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise NerDataError(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[e.start]:02x} at column "
                                   f"{e.start + 1}); save the file as UTF-8") from None
            yield lineno, text.rstrip("\r\n")


def _read_conll(path: Path) -> Sentences:
    sentences, tokens, tags, where = Sentences(path), [], [], []

    def close():
        if tokens:
            sentences.add(tokens, tags, where)
            tokens.clear(), tags.clear(), where.clear()

    for lineno, line in _lines(path):
        if not line.strip():
            close()
            continue
        # Tabs, when the line has them, are the columns (a token may then hold a space).
        columns = line.split("\t") if "\t" in line else line.split()
        if columns[0] == DOCSTART:
            close()
            continue
        if len(columns) < 2:
            raise NerDataError(f"{path}:{lineno}: expected 'token ... tag' columns, got {line[:80]!r}")
        tokens.append(columns[0])
        tags.append(columns[-1].strip())
        where.append(f"{path}:{lineno}")
    close()
    return sentences


def _read_jsonl(path: Path) -> Sentences:
    sentences = Sentences(path)
    for lineno, line in _lines(path):
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
        sentences.add(tokens, tags, [place] * len(tokens))
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
    sentences = Sentences(path, class_names=names)
    for row, record in enumerate(table.to_pylist()):
        place = f"{path}, row {row}"
        tokens, tags = _columns(record, place)
        if names is not None:
            tags = [names[t] if isinstance(t, int) and 0 <= t < len(names) else t for t in tags]
        if any(not isinstance(t, str) for t in tags):
            raise NerDataError(f"{place}: ner_tags holds {tags[0]!r}, with no ClassLabel names to read it by")
        sentences.add(tokens, tags, [place] * len(tokens))
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


def to_dataset(sentences: Sentences, labels: list[str]) -> Dataset:
    """The sentences with tag ids in `labels`' order; a tag outside it names its file:line."""
    ids = {label: i for i, label in enumerate(labels)}
    tag_ids = []
    for tags, where in zip(sentences.tags, sentences.where):
        for tag, place in zip(tags, where):
            if tag not in ids:
                raise NerDataError(f"{place}: tag {tag!r} is not one of the model's labels ({', '.join(labels)})")
        tag_ids.append([ids[t] for t in tags])
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=list(labels)))})
    return Dataset.from_dict({"tokens": sentences.tokens, "ner_tags": tag_ids}, features=features)


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
