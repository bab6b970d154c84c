"""Dynamic batching: requests that arrive while the model is busy go through it together, up to
`max_texts` texts per forward batch.

One worker thread runs the model, so the event loop keeps accepting requests while a batch is
tagged, and the next batch holds everything that arrived meanwhile: throughput grows with the
number of concurrent clients instead of staying at one forward per request, and a lone request
starts at once (no added latency). `max_wait_ms` > 0 also holds a batch back that long for more
requests once the model is free: more throughput at middling load, more latency at low load.
With batching off, every request is tagged alone, in arrival order.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


@dataclass
class Request:
    texts: list[str]
    aggregation: str
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, tagger, max_texts: int = 32, max_wait_ms: float = 0.0, enabled: bool = True):
        self.tagger, self.max_texts, self.max_wait = tagger, max_texts, max_wait_ms / 1000
        self.enabled = enabled
        self.queue: asyncio.Queue[Request] | None = None
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagger")
        self.task: asyncio.Task | None = None
        self.batches = 0  # forward batches run, for /api/info and the load script

    def start(self) -> None:
        if self.task is None:
            self.queue = asyncio.Queue()
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def tag(self, texts: list[str], aggregation: str):
        """The tagger's results for `texts`, in order, once their batch has run."""
        self.start()
        request = Request(texts, aggregation, asyncio.get_running_loop().create_future())
        await self.queue.put(request)
        return await request.future

    async def _collect(self) -> list[Request]:
        """The next batch: the oldest waiting request and whatever joins it before the deadline,
        up to max_texts texts (one request over the limit still goes, alone)."""
        batch = [await self.queue.get()]
        if not self.enabled:
            return batch
        size, deadline = len(batch[0].texts), time.perf_counter() + self.max_wait
        while size < self.max_texts:
            if self.queue.empty():
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            else:
                nxt = self.queue.get_nowait()
            if size + len(nxt.texts) > self.max_texts:
                await self._requeue_first(nxt)
                break
            batch.append(nxt)
            size += len(nxt.texts)
        return batch

    async def _requeue_first(self, request: Request) -> None:
        """Put a request that did not fit back at the head of the queue."""
        rest = [request] + [self.queue.get_nowait() for _ in range(self.queue.qsize())]
        for r in rest:
            self.queue.put_nowait(r)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            by_aggregation: dict[str, list[Request]] = {}
            for r in batch:
                by_aggregation.setdefault(r.aggregation, []).append(r)
            for aggregation, requests in by_aggregation.items():
                texts = [t for r in requests for t in r.texts]
                try:
                    results = await loop.run_in_executor(self.worker, self.tagger, texts, aggregation)
                except Exception as e:  # a failed batch fails its requests, not the service
                    for r in requests:
                        if not r.future.done():
                            r.future.set_exception(e)
                    continue
                self.batches += 1
                start = 0
                for r in requests:
                    if not r.future.done():  # the client may have gone
                        r.future.set_result(results[start:start + len(r.texts)])
                    start += len(r.texts)
