"""The tagging service's HTTP layer: FastAPI routes with their request and response models, so
`/docs` and `/openapi.json` describe the API; uvicorn runs it.

    GET  /              the page (page.html)
    GET  /health        {"status": "ok", "queued_texts": n}: answered by the event loop, never queued
    GET  /api/info      model, labels, device, precision, window, limits, batching
    POST /api/tag       TagRequest -> TagResponse (one text) or TagsResponse (several)

Entities come in the shape of transformers' pipeline("ner", aggregation_strategy=...):
entity_group, score, word, start, end (offsets into the text sent). Every error is JSON
{"error": "..."} with its status: 400 unreadable JSON, 401 a missing or wrong API key, 404/405
unknown route or method, 413 over a limit, 422 a request the schema refuses, 503 (with
Retry-After) when the queue is full or the request's deadline passes, 500 when the model fails.
The service stays up through all of them.
"""
from __future__ import annotations

import hmac
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from xlmr.entities import entity_dicts
from xlmr.tagger import AGGREGATIONS

from .batcher import DeadlinePassed, Overloaded

PAGE = Path(__file__).with_name("page.html")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1_000_000
    max_text_chars: int = 20_000  # longer texts are tagged in the tagger's windows; this bounds one request's work
    max_texts: int = 64
    # Past max_body_bytes the body is still read (and dropped) up to this many bytes before the
    # 413 goes out: a client that is still sending when the server answers and closes gets a
    # connection reset instead of the 413 (Python's urllib does). Past this bound the
    # connection is closed.
    max_drained_bytes: int = 64_000_000


class TagRequest(BaseModel):
    """Exactly one of `text` and `texts`."""
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(None, description="one text to tag")
    texts: list[str] | None = Field(None, description="several texts, tagged together; answered in order")
    aggregation: Literal[AGGREGATIONS] = Field(
        "first", description="how a word's sub-word probabilities become its scores")
    decode: Literal["viterbi", "iob2", "argmax"] | None = Field(
        None, description="word scores to tags: the best valid IOB2 sequence with the model's tag-transition "
                          "prior, the constraints alone, or each word alone (default: the service's)")
    tokens: StrictBool = Field(False, description="add every sub-word with its tag and score")

    @model_validator(mode="after")
    def one_of_text_and_texts(self):
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" (a string) and "texts" (a list of strings)')
        return self


class Entity(BaseModel):
    entity_group: str = Field(description="the entity type, e.g. PER, ORG, LOC")
    score: float = Field(description="mean of the entity's word scores")
    word: str = Field(description="text[start:end]")
    start: int
    end: int


class Token(BaseModel):
    token: str
    word: int = Field(description="index of the word the sub-word belongs to")
    tag: str
    score: float


class TagResult(BaseModel):
    entities: list[Entity]
    tokens: list[Token] | None = Field(None, description="with tokens=true")
    skipped: list[tuple[int, int]] | None = Field(None, description="control characters in no word (offsets)")


class Timing(BaseModel):
    latency_ms: float
    aggregation: str
    decode: str


class TagResponse(TagResult, Timing):
    """The answer to one `text`."""


class TagsResponse(Timing):
    """The answer to `texts`: one result per text, in order."""
    results: list[TagResult]


class ErrorResponse(BaseModel):
    error: str


def token_rows(tagged) -> list[dict]:
    return [{"token": t, "word": w, "tag": g, "score": float(s)}
            for t, w, g, s in zip(tagged.tokens, tagged.token_words, tagged.token_tags, tagged.token_scores)]


def result_of(tagged, with_tokens: bool) -> dict:
    return {"entities": entity_dicts(tagged.entities), **({"tokens": token_rows(tagged)} if with_tokens else {}),
            **({"skipped": tagged.skipped} if tagged.skipped else {})}


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _readable(e: RequestValidationError) -> str:
    """The first schema error as one line: where, and what is wrong."""
    first = e.errors()[0]
    where = ".".join(str(x) for x in first.get("loc", ())[1:])
    message = first.get("msg", "invalid request").removeprefix("Value error, ")
    if first.get("type") == "json_invalid":
        return f"the body is not valid JSON: {first.get('ctx', {}).get('error', message)}"
    return f'"{where}": {message}' if where else message


def build_app(batcher, info: dict, limits: Limits = Limits(), api_key: str | None = None) -> FastAPI:
    """The FastAPI app over a started-on-demand Batcher. With `api_key`, POST /api/tag needs
    `Authorization: Bearer <key>` (compared in constant time)."""
    app = FastAPI(title="xlmr-ner tagging service", version="1", docs_url="/docs", redoc_url=None,
                  description="Named entities in any of XLM-R's 100 languages, in the shape of transformers' "
                              "pipeline('ner').", lifespan=_lifespan(batcher))
    page = PAGE.read_bytes()
    errors = {status: {"model": ErrorResponse} for status in (400, 401, 413, 422, 500, 503)}

    _json_errors(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "queued_texts": batcher.queued_texts}

    @app.get("/api/info")
    async def api_info() -> dict:
        return info | {"limits": asdict(limits), "auth": api_key is not None}

    @app.post("/api/tag", response_model=TagResponse | TagsResponse, response_model_exclude_none=True,
              responses=errors)
    async def tag(body: TagRequest, request: Request):
        if api_key is not None and not _authorised(request, api_key):
            return error(401, "this service needs an API key: send 'Authorization: Bearer <key>'",
                         {"www-authenticate": "Bearer"})
        texts = [body.text] if body.text is not None else body.texts
        if len(texts) > limits.max_texts:
            return error(413, f"{len(texts)} texts in one request; the limit is {limits.max_texts}")
        longest = max((len(t) for t in texts), default=0)
        if longest > limits.max_text_chars:
            return error(413, f"a text of {longest} characters; the limit is {limits.max_text_chars}")
        decode = body.decode or info.get("decode", "viterbi")
        t0 = time.perf_counter()
        try:
            tagged = await batcher.tag(texts, body.aggregation, decode)
        except Overloaded as e:
            return error(503, str(e), {"retry-after": str(e.retry_after)})
        except DeadlinePassed as e:
            return error(503, str(e), {"retry-after": "1"})
        except Exception as e:  # the model failed: say so in JSON, keep serving
            return error(500, f"tagging failed: {type(e).__name__}: {e}")
        results = [result_of(t, body.tokens) for t in tagged]
        timing = {"latency_ms": (time.perf_counter() - t0) * 1000, "aggregation": body.aggregation, "decode": decode}
        return JSONResponse((results[0] if body.text is not None else {"results": results}) | timing)

    return app


def _json_errors(app: FastAPI) -> None:
    """FastAPI's own errors (schema, route, method) in the service's {"error": ...} shape."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        status = 400 if e.errors() and e.errors()[0].get("type") == "json_invalid" else 422
        return error(status, _readable(e))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        if e.status_code == 404:
            return error(404, f"no route {request.url.path}; see GET /api/info or /docs")
        if e.status_code == 405:
            return error(405, f"{request.url.path} takes {e.headers.get('Allow', 'another method')}",
                         {"allow": e.headers.get("Allow", "")})
        return error(e.status_code, str(e.detail))


def _authorised(request: Request, api_key: str) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), api_key.encode())


def _lifespan(batcher):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()  # after uvicorn has let the requests in flight finish

    return lifespan


class BodyLimit:
    """ASGI middleware in front of the app: a body over `limits.max_body_bytes` is answered with
    a JSON 413, after reading and dropping what the client sends up to `max_drained_bytes`, so
    that clients which send the whole body before reading (urllib) receive the answer."""

    def __init__(self, app, limits: Limits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        limit = self.limits.max_body_bytes
        if declared.isdigit() and int(declared) > limit:
            return await self._refuse(receive, send, f"a body of {int(declared)} bytes; the limit is {limit}",
                                      drain=int(declared) <= self.limits.max_drained_bytes)
        # Read the body here, bounded, then hand it to the app: a chunked body (no length) is
        # held to the same limit.
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > limit:
                return await self._refuse(receive, send, f"a body over {limit} bytes",
                                          drain=message.get("more_body", False), already=seen)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as uvicorn would

        await self.app(scope, replay, send)

    async def _refuse(self, receive, send, message: str, drain: bool, already: int = 0) -> None:
        seen, more = already, True
        while drain and more and seen <= self.limits.max_drained_bytes:
            chunk = await receive()
            if chunk["type"] == "http.disconnect":
                return
            seen += len(chunk.get("body", b""))
            more = chunk.get("more_body", False)
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
