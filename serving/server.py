"""Build the service for a checkpoint and run it with uvicorn (`pip install -e ".[serve]"`)."""
from __future__ import annotations

from pathlib import Path

import torch

from xlmr.precision import cast_linears_for_inference, choose
from xlmr.tagger import Tagger
from xlmr.tokenizer import XLMRTokenizer
from xlmr.weights import load_model

from .api import Limits, TagService
from .batcher import Batcher


def build_service(model_dir, device: str = "cpu", amp: str = "auto", max_batch: int = 32, max_wait_ms: float = 0.0,
                  batching: bool = True, limits: Limits = Limits()) -> TagService:
    model_dir = Path(model_dir)
    device = torch.device(device)
    amp_dtype, amp_reason = choose(amp, device)
    model = cast_linears_for_inference(load_model(model_dir).to(device), amp_dtype)
    tagger = Tagger(model, XLMRTokenizer(model_dir / "sentencepiece.bpe.model"), device, amp_dtype,
                    batch_size=max_batch)
    info = {"model": model_dir.name, "labels": [model.config.id2label[i] for i in range(len(model.config.id2label))],
            "device": str(device), "precision": str(amp_dtype or torch.float32).replace("torch.", ""),
            "precision_reason": amp_reason,
            "max_window": tagger.max_length, "aggregations": ["first", "average", "max"],
            "batching": {"enabled": batching, "max_texts": max_batch, "max_wait_ms": max_wait_ms}}
    return TagService(Batcher(tagger, max_batch, max_wait_ms, batching), info, limits)


def serve(service: TagService, host: str = "127.0.0.1", port: int = 8000) -> None:
    try:
        import uvicorn
    except ImportError:
        raise RuntimeError('the service needs uvicorn: pip install -e ".[serve]"') from None
    print(f"serving {service.info['model']} on http://{host}:{port}/ ({service.info['device']}, "
          f"{service.info['precision']}); Ctrl-C stops")
    uvicorn.run(service, host=host, port=port, log_level="warning", lifespan="on")


class Running:
    """A service running in a background thread on an ephemeral port of this machine, for tests
    and the load script: `with Running(service) as url: ...`."""

    def __init__(self, service: TagService, host: str = "127.0.0.1"):
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
