"""The one CoNLL reader: sentences of `token ... tag` lines, blank lines between sentences, and
the error type every data file's reader raises, naming the file and line.

PAN-X's files (`token<TAB>tag`, loaders/panx.py) and the user's CoNLL files (loaders/nerfiles.py)
are both read here; only what they do with the tags differs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

TAG = re.compile(r"(?P<prefix>[BIES])-(?P<type>\S+)")
DOCSTART = "-DOCSTART-"


class NerDataError(ValueError):
    """A problem in a data file, with file:line (or file, row N for Parquet)."""


@dataclass
class Sentences:
    """Sentences read from one file: tokens, IOB2 tag strings, and where each sentence starts
    (a line, or a Parquet row), so that any token's place can be named in an error."""
    path: Path
    tokens: list[list[str]] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # the line (or row) of each sentence's first token
    one_token_a_line: bool = True  # CoNLL: token j of a sentence sits on line start + j
    rows: bool = False  # Parquet: places are rows, not lines
    class_names: list[str] | None = None  # a Parquet file's ClassLabel names, when it has them
    normalised: int = 0  # tags IOB1/BIOES -> IOB2 changed
    to_iob2: bool = True  # False: keep the tags as written (PAN-X's gold, I- openings in zh/ja included)

    def place(self, sentence: int, token: int = 0) -> str:
        at = self.starts[sentence] + (token if self.one_token_a_line else 0)
        return f"{self.path}, row {at}" if self.rows else f"{self.path}:{at}"

    def add(self, tokens: list[str], tags: list[str], start: int) -> None:
        self.starts.append(start)  # first, so that place() can name this sentence's tokens
        problem = _first_problem(tokens, tags)
        if problem is not None:
            j, message = problem
            raise NerDataError(f"{self.place(len(self.starts) - 1, j)}: {message}")
        if self.to_iob2:
            iob2 = to_iob2(tags)
            self.normalised += sum(a != b for a, b in zip(tags, iob2))
        self.tokens.append(list(tokens))
        self.tags.append(iob2 if self.to_iob2 else list(tags))


def _first_problem(tokens: list[str], tags: list[str]) -> tuple[int, str] | None:
    """(token index, what is wrong) for the first empty token or unreadable tag, else None."""
    for j, token in enumerate(tokens):
        if not isinstance(token, str) or not token.strip():
            return j, "empty token"
    for j, tag in enumerate(tags):
        if tag not in _VALID and not _valid_tag(tag):
            return j, f"tag {tag!r} is not O, B-X or I-X (IOB1, IOB2), nor S-X or E-X (BIOES)"
    return None


_VALID: set[str] = {"O"}  # tags already checked: a file repeats a handful of tags a million times


def _valid_tag(tag) -> bool:
    if isinstance(tag, str) and TAG.fullmatch(tag):
        _VALID.add(tag)
        return True
    return False


def to_iob2(tags: list[str]) -> list[str]:
    """IOB1, BIOES or IOB2 tags of one sentence as IOB2: an entity opens with B-, continues with I-.
    S-X opens (and closes) one; I-X and E-X continue the entity before them when it has type X,
    else open one (IOB1's I- opening an entity). IOB2 tags come back unchanged."""
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


def lines(path: Path):
    """(line number, text) of a UTF-8 file, decoded line by line so an error names its line."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise NerDataError(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[e.start]:02x} at column "
                                   f"{e.start + 1}); save the file as UTF-8") from None
            yield lineno, text.rstrip("\r\n")


def read_conll(path: Path, token_prefix: str = "", iob2: bool = True) -> Sentences:
    """Columns split on tabs when the line has them (a token may then hold a space), else on
    whitespace; the token first, the tag last. -DOCSTART- lines are skipped. `token_prefix` is cut
    off every token that has it (the original WikiANN layout writes `de:Berlin`). Tags are read
    as IOB2 (see to_iob2) unless `iob2` is False."""
    path = Path(path)
    sentences, tokens, tags, start = Sentences(path, to_iob2=iob2), [], [], 0

    def close():
        if tokens:
            sentences.add(tokens, tags, start)
            tokens.clear(), tags.clear()

    for lineno, line in lines(path):
        if not line.strip():
            close()
            continue
        columns = line.split("\t") if "\t" in line else line.split()
        if columns[0] == DOCSTART:
            close()
            continue
        if len(columns) < 2:
            raise NerDataError(f"{path}:{lineno}: expected 'token ... tag' columns, got {line[:80]!r}")
        if not tokens:
            start = lineno
        token = columns[0]
        tokens.append(token[len(token_prefix):] if token_prefix and token.startswith(token_prefix) else token)
        tags.append(columns[-1].strip())
    close()
    return sentences
