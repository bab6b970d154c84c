"""Tagging a whole corpus: `python eval.py tag --model RUN --input corpus.txt --output out.jsonl`.

    input   .txt: one text a line;  .jsonl: {"text": ..., "id": ...} a line (id optional, kept)
    output  JSON lines, one per input line, in input order:
            {"line": 1, "id": ..., "text": ..., "entities": [{"entity_group", "score", "word", "start", "end"}]}

Streaming in constant memory: the input is read in chunks of `chunk_lines` lines; each chunk is
tagged (the tagger batches its windows by length), written whole to `<output>.parts/<chunk>.jsonl`
(atomically), then appended to the output in order. Killed at any moment and run again with
the same arguments, it continues: a half-written last output line is cut off, the lines the
output holds are skipped, and a chunk whose part is written is not tagged again. The parts
folder records the settings that decide the bytes (chunk size, batch size, windows, precision,
decoding) and a rerun with other settings is refused: a chunk is then tagged in the same
batches whichever run tags it, so the output is the uninterrupted run's byte for byte in every
precision (a different batch size can move a score's last digit, in fp32 as in bf16). Under
`torchrun --nproc_per_node N`, process r tags the chunks c with c % N == r and rank 0 appends
them in order, so the output is the one a single process writes: chunks, and so batches, are
the same whatever the number of processes. Scores are rounded to 6 decimals.
"""
from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import torch.distributed as dist
from tqdm.auto import tqdm

from xlmr.atomic import write_text_atomic
from xlmr.entities import entity_dicts


class CorpusError(ValueError):
    pass


def read_chunks(path: Path, chunk_lines: int, wanted=lambda chunk: True):
    """(chunk index, [(line number, id, text)]) for every chunk `wanted` says yes to; the lines
    of the others are read past, not parsed."""
    jsonl = path.suffix.lower() in (".jsonl", ".json")
    with open(path, "rb") as f:
        for chunk in itertools.count():
            raw_lines = list(itertools.islice(f, chunk_lines))
            if not raw_lines:
                return
            if wanted(chunk):
                first = chunk * chunk_lines + 1
                yield chunk, [parse_line(path, first + i, raw, jsonl) for i, raw in enumerate(raw_lines)]


def parse_line(path: Path, lineno: int, raw: bytes, jsonl: bool) -> tuple[int, object, str]:
    try:
        text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}:{lineno}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})") from None
    if not jsonl:
        return lineno, None, text
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path}:{lineno}: not a JSON object ({e.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise CorpusError(f"{path}:{lineno}: expected an object with a 'text' string")
    return lineno, record.get("id"), record["text"]


def record_line(lineno: int, id_, tagged) -> str:
    record = {"line": lineno} | ({} if id_ is None else {"id": id_}) | {
        "text": tagged.text, "entities": entity_dicts(tagged.entities, digits=6)}
    return json.dumps(record, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------
# The output: complete lines only, appended in order

def recover_output(output: Path) -> int:
    """The number of complete lines in the output, after cutting off a half-written last line
    (a kill during an append). Creates an empty output when there is none."""
    if not output.exists():
        output.touch()
        return 0
    with open(output, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        cut, pos = 0, end
        while pos > 0:
            step = min(1 << 16, pos)
            f.seek(pos - step)
            found = f.read(step).rfind(b"\n")
            if found >= 0:
                cut = pos - step + found + 1
                break
            pos -= step
        if cut < end:
            f.truncate(cut)
        f.seek(0)
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def part_path(parts: Path, chunk: int) -> Path:
    return parts / f"{chunk:08d}.jsonl"


def merge_ready(output: Path, parts: Path, done: int, chunk_lines: int) -> int:
    """Append every part that continues the output, in order (skipping what a cut-short earlier
    append already wrote), each flushed to disk before its part is removed; the new line count."""
    while True:
        chunk = done // chunk_lines
        part = part_path(parts, chunk)
        if not part.exists():
            return done
        lines = part.read_text(encoding="utf-8").splitlines(keepends=True)
        with open(output, "a", encoding="utf-8") as f:
            f.write("".join(lines[done - chunk * chunk_lines:]))
            f.flush()
            os.fsync(f.fileno())
        part.unlink()
        done = chunk * chunk_lines + len(lines)
        if len(lines) < chunk_lines:  # the input's last chunk
            return done


def tagging_settings(tagger, chunk_lines: int, aggregation: str, decode: str) -> dict:
    """What decides the output's bytes besides the input and the model: how lines are grouped
    into batches and windows, the precision they run in, and how tags are read off."""
    return {"chunk_lines": chunk_lines, "batch_size": tagger.batch_size, "max_length": tagger.max_length,
            "stride": tagger.stride, "precision": str(tagger.amp_dtype or "float32").removeprefix("torch."),
            "unspaced": tagger.unspaced, "aggregation": aggregation, "decode": decode}


def start_parts(parts: Path, done: int, settings: dict, source: Path) -> None:
    """The parts folder, checked to belong to this input and these settings; parts already in
    the output (a kill between an append and a removal) are removed."""
    parts.mkdir(exist_ok=True)
    meta, expected = parts / "meta.json", {"input": str(source.resolve()), **settings}
    if meta.exists() and (before := json.loads(meta.read_text())) != expected:
        differ = ", ".join(f"{k} {before.get(k)!r} there, {v!r} here"
                           for k, v in expected.items() if before.get(k) != v)
        raise CorpusError(f"{parts} belongs to another run ({differ}); rerun with the same --input, --chunk-lines "
                          f"and tagging flags, or remove it")
    write_text_atomic(meta, json.dumps(expected))
    chunk_lines = settings["chunk_lines"]
    for part in parts.glob("[0-9]*.jsonl"):
        if (int(part.stem) + 1) * chunk_lines <= done:
            part.unlink()


# ---------------------------------------------------------------------------------------------
# The run

def ranks() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def tag_corpus(tagger, source: Path, output: Path, chunk_lines: int = 1024, aggregation: str = "first",
               decode: str = "viterbi", progress: bool = True) -> dict:
    """Tag every line of `source` into `output` (see the module's docstring); returns counts and
    texts/s of this process."""
    source, output = Path(source), Path(output)
    if not source.is_file():
        raise FileNotFoundError(f"no input file at {source}")
    rank, world = ranks()
    parts = output.with_name(output.name + ".parts")
    shared = [None]
    if rank == 0:
        done = recover_output(output)
        start_parts(parts, done, tagging_settings(tagger, chunk_lines, aggregation, decode), source)
        with open(source, "rb") as f:
            total = sum(1 for _ in f)
        shared = [(done, total)]
    if world > 1:
        dist.broadcast_object_list(shared, src=0)
    done, total = shared[0]

    def mine(chunk: int) -> bool:
        return chunk >= done // chunk_lines and chunk % world == rank and not part_path(parts, chunk).exists()

    bar = tqdm(total=total, initial=done, unit="text", disable=rank != 0 or not progress, dynamic_ncols=True,
               desc="tagging" + (f" (process 1 of {world})" if world > 1 else ""))
    tagged_here, t0 = 0, time.perf_counter()
    for chunk, rows in read_chunks(source, chunk_lines, mine):
        results = tagger([text for _, _, text in rows], aggregation=aggregation, decode=decode)
        write_text_atomic(part_path(parts, chunk), "".join(record_line(n, i, r) for (n, i, _), r in zip(rows, results)))
        tagged_here += len(rows)
        bar.update(len(rows) * world)
        if rank == 0:
            done = merge_ready(output, parts, done, chunk_lines)
    seconds = time.perf_counter() - t0
    if world > 1:
        dist.barrier()  # every part is written
    if rank == 0:
        done = merge_ready(output, parts, done, chunk_lines)
        if done == total:
            for leftover in parts.iterdir():
                leftover.unlink()
            parts.rmdir()
    bar.close()
    return {"lines": total, "written": done, "tagged_here": tagged_here, "seconds": seconds,
            "texts_per_s": tagged_here / seconds if seconds else 0.0}
