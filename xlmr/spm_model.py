"""Marking pieces of a SentencePiece model unused, on the model file's bytes.

A SentencePiece model file is a protobuf `ModelProto` whose field 1 repeats one `SentencePiece`
message per piece (field 1 the piece, 2 its score, 3 its type; NORMAL = 1 when absent, UNUSED =
5). A piece of type UNUSED keeps its id but is never chosen when segmenting. Editing the bytes
here needs no protobuf package (sentencepiece's own `sentencepiece_model_pb2` does).
"""
from __future__ import annotations

from typing import Callable

NORMAL, UNUSED = 1, 5


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b, value = value & 0x7F, value >> 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(buf: bytes):
    """(field number, wire type, value or payload, the field's raw bytes) for each field."""
    i = 0
    while i < len(buf):
        start = i
        tag, i = _varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"unexpected protobuf wire type {wire} in a SentencePiece model")
        yield number, wire, value, buf[start:i]


def mark_unused(model: bytes, unused: Callable[[str], bool]) -> bytes:
    """The model with every NORMAL piece for which `unused(piece)` holds made UNUSED."""
    out = bytearray()
    for number, wire, value, raw in _fields(model):
        if number != 1 or wire != 2:
            out += raw
            continue
        parts = list(_fields(value))
        text = next((v.decode("utf-8") for n, _, v, _ in parts if n == 1), "")
        kind = next((v for n, w, v, _ in parts if n == 3 and w == 0), NORMAL)
        if kind == NORMAL and unused(text):
            value = b"".join(r for n, _, _, r in parts if n != 3) + b"\x18" + _encode_varint(UNUSED)
        out += b"\x0a" + _encode_varint(len(value)) + value
    return bytes(out)
