"""Build the service for a checkpoint and run it with uvicorn (`pip install -e ".[serve]"`)."""
from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import torch

from xlmr.decoding import DECODINGS
from runtime.inference import ready_for_inference
from xlmr.tagger import AGGREGATIONS, Tagger
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import load_model

from .api import BodyLimit, Limits, build_app
from .batcher import Batcher


class Service:
    """The running parts of one service: the batcher (and its tagger), what /api/info says, the
    limits, and the ASGI app that uvicorn serves (the body limit in front of the FastAPI app)."""

    def __init__(self, batcher: Batcher, info: dict, limits: Limits, api_key: str | None = None):
        self.batcher, self.info, self.limits = batcher, info, limits
        self.app = BodyLimit(build_app(batcher, info, limits, api_key), limits)

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


def build_service(model_dir, device: str = "cpu", amp: str = "auto", max_batch: int = 32, max_wait_ms: float = 0.0,
                  batching: bool = True, limits: Limits = Limits(), decode: str = "viterbi",
                  max_queued_texts: int = 256, deadline_s: float = 10.0, api_key: str | None = None,
                  quantize: str = "off") -> Service:
    model_dir = Path(model_dir)
    device = torch.device(device)
    tokenizer = XLMRTokenizer(model_dir / "sentencepiece.bpe.model")
    model = load_model(model_dir, for_inference=True)  # refused if its weights do not match its config
    model, amp_dtype, amp_reason = ready_for_inference(model, device, amp, quantize, tokenizer)
    tagger = Tagger(model, tokenizer, device, amp_dtype, batch_size=max_batch)
    info = {"model": model_dir.name, "labels": [model.config.id2label[i] for i in range(len(model.config.id2label))],
            "device": str(device), "precision": "int8" if quantize != "off" else
            str(amp_dtype or torch.float32).replace("torch.", ""),
            "precision_reason": amp_reason,
            "max_window": tagger.max_length, "aggregations": list(AGGREGATIONS),
            "decode": decode, "decodings": list(DECODINGS),
            "batching": {"enabled": batching, "max_texts": max_batch, "max_wait_ms": max_wait_ms,
                         "max_queued_texts": max_queued_texts, "deadline_s": deadline_s}}
    batcher = Batcher(tagger, max_batch, max_wait_ms, batching, max_queued_texts, deadline_s)
    return Service(batcher, info, limits, api_key)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_exposure(host: str, api_key: str | None, no_auth: bool) -> None:
    """A service bound beyond this machine needs an API key, unless the user says --no-auth."""
    if host not in LOOPBACK and not host.startswith("127.") and api_key is None and not no_auth:
        raise RuntimeError(f"binding to {host} exposes the service beyond this machine: give --api-key "
                           f"(or ${API_KEY_ENV}), or --no-auth to serve without one")


API_KEY_ENV = "XLMR_NER_API_KEY"


def serve(service: Service, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run until Ctrl-C or SIGTERM: uvicorn then stops accepting, lets the requests in flight
    finish, and the lifespan's end stops the batcher; the process exits 0."""
    try:
        import uvicorn
    except ImportError:
        raise RuntimeError('the service needs uvicorn and fastapi: pip install -e ".[serve]"') from None

    class StopsCleanly(uvicorn.Server):
        """uvicorn's server, except that a stop asked for by SIGTERM or Ctrl-C ends the process
        with 0 once the shutdown is done (uvicorn re-raises the signal, which a supervisor would
        read as a crash)."""

        @contextlib.contextmanager
        def capture_signals(self):
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    print(f"serving {service.info['model']} on http://{host}:{port}/ ({service.info['device']}, "
          f"{service.info['precision']}); API described at /docs; Ctrl-C stops", flush=True)
    StopsCleanly(uvicorn.Config(service, host=host, port=port, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=30)).run()


class Running:
    """A service running in a background thread on an ephemeral port of this machine, for tests
    and the load script: `with Running(service) as url: ...`."""

    def __init__(self, service: Service, host: str = "127.0.0.1"):
        self.service, self.host = service, host

    def __enter__(self) -> str:
        import socket
        import threading
        import time

        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))  # port 0: the system picks a free one
        self.server = uvicorn.Server(uvicorn.Config(self.service, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the service did not start")
            time.sleep(0.01)
        return f"http://{self.host}:{sock.getsockname()[1]}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
