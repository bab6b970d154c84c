"""The tagging service as a plain ASGI app (no web framework): uvicorn runs it.

    GET  /            the page (page.html)
    GET  /health      {"status": "ok"}
    GET  /api/info    model, labels, device, precision, window, limits, batching
    POST /api/tag     {"text": "..."} or {"texts": [...]}, optional "aggregation" (first|average|max)
                      and "tokens" (true adds the sub-word table)

Entities come in the shape of transformers' pipeline("ner", aggregation_strategy=...):
entity_group, score, word, start, end (offsets into the text sent). Bad input gets a JSON error
with its status (400 unreadable JSON, 404/405 unknown route or method, 413 over a limit, 422 a
well-formed request that asks for something impossible) and the service stays up.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from xlmr.tagger import AGGREGATIONS

PAGE = Path(__file__).with_name("page.html")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1_000_000
    max_text_chars: int = 20_000  # longer texts are tagged in the tagger's windows; this bounds one request's work
    max_texts: int = 64


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def pipeline_entities(tagged) -> list[dict]:
    return [{"entity_group": e.type, "score": float(e.score), "word": e.text, "start": e.start, "end": e.end}
            for e in tagged.entities]


def token_rows(tagged) -> list[dict]:
    return [{"token": t, "word": w, "tag": g, "score": float(s)}
            for t, w, g, s in zip(tagged.tokens, tagged.token_words, tagged.token_tags, tagged.token_scores)]


def parse_request(body: bytes, limits: Limits) -> tuple[list[str], bool, str, bool]:
    """(texts, whether one text was sent, aggregation, whether tokens are wanted), or BadRequest."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(400, f"the body is not valid JSON: {e}") from None
    if not isinstance(payload, dict):
        raise BadRequest(422, 'send a JSON object: {"text": "..."} or {"texts": ["...", ...]}')
    if ("text" in payload) == ("texts" in payload):
        raise BadRequest(422, 'give exactly one of "text" (a string) and "texts" (a list of strings)')
    single = "text" in payload
    texts = [payload["text"]] if single else payload["texts"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise BadRequest(422, '"text" must be a string' if single else '"texts" must be a list of strings')
    if len(texts) > limits.max_texts:
        raise BadRequest(413, f"{len(texts)} texts in one request; the limit is {limits.max_texts}")
    longest = max((len(t) for t in texts), default=0)
    if longest > limits.max_text_chars:
        raise BadRequest(413, f"a text of {longest} characters; the limit is {limits.max_text_chars}")
    aggregation = payload.get("aggregation", "first")
    if aggregation not in AGGREGATIONS:
        raise BadRequest(422, f"unknown aggregation {aggregation!r}; choose from {', '.join(AGGREGATIONS)}")
    tokens = payload.get("tokens", False)
    if not isinstance(tokens, bool):
        raise BadRequest(422, '"tokens" must be true or false')
    return texts, single, aggregation, tokens


class TagService:
    """The ASGI application: `await app(scope, receive, send)`."""

    def __init__(self, batcher, info: dict, limits: Limits = Limits()):
        self.batcher, self.info, self.limits = batcher, info, limits
        self.page = PAGE.read_bytes()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        routes = {"/": "GET", "/health": "GET", "/api/info": "GET", "/api/tag": "POST"}
        if path not in routes:
            return await _json(send, 404, {"error": f"no route {path}; see GET /api/info"})
        if method != routes[path]:
            return await _json(send, 405, {"error": f"{path} takes {routes[path]}"}, [(b"allow", routes[path].encode())])
        if path == "/":
            return await _send(send, 200, self.page, b"text/html; charset=utf-8")
        if path == "/health":
            return await _json(send, 200, {"status": "ok"})
        if path == "/api/info":
            return await _json(send, 200, self.info | {"limits": vars(self.limits)})
        try:
            body = await _read_body(scope, receive, self.limits.max_body_bytes)
            texts, single, aggregation, with_tokens = parse_request(body, self.limits)
        except BadRequest as e:
            return await _json(send, e.status, {"error": str(e)})
        t0 = time.perf_counter()
        tagged = await self.batcher.tag(texts, aggregation)
        results = [{"entities": pipeline_entities(t), **({"tokens": token_rows(t)} if with_tokens else {}),
                    **({"skipped": t.skipped} if t.skipped else {})} for t in tagged]
        latency = {"latency_ms": (time.perf_counter() - t0) * 1000, "aggregation": aggregation}
        await _json(send, 200, (results[0] if single else {"results": results}) | latency)

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.batcher.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _read_body(scope, receive, limit: int) -> bytes:
    declared = dict(scope.get("headers", [])).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"a body of {int(declared)} bytes; the limit is {limit}")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest(400, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"a body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send, status: int, body: bytes, content_type: bytes, headers=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def _json(send, status: int, obj, headers=()) -> None:
    await _send(send, status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), b"application/json", headers)
