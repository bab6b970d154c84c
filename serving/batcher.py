"""Dynamic batching with a bound: requests that arrive while the model is busy go through it
together, up to `max_texts` texts per forward batch, and no more than `max_queued_texts` texts
wait at once.

One worker thread runs the model, so the event loop keeps accepting requests (and answering
/health) while a batch is tagged, and the next batch holds everything that arrived meanwhile:
throughput grows with the number of concurrent clients instead of staying at one forward per
request, and a lone request starts at once. `max_wait_ms` > 0 also holds a batch back that long
for more requests once the model is free. With batching off, every request is tagged alone.

Under overload the queue would grow without limit and every client would wait longer and
longer; instead a request that would push the queue past `max_queued_texts` is refused at once
(`Overloaded`, with a Retry-After estimate), and a request still waiting when its deadline
passes is dropped (`DeadlinePassed`) before the model spends time on it.
"""
from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


class Overloaded(Exception):
    def __init__(self, queued: int, limit: int, retry_after: int):
        super().__init__(f"the service is busy: {queued} texts are waiting (limit {limit}); retry in {retry_after} s")
        self.retry_after = retry_after


class DeadlinePassed(Exception):
    pass


@dataclass
class Request:
    texts: list[str]
    aggregation: str
    decode: str
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, tagger, max_texts: int = 32, max_wait_ms: float = 0.0, enabled: bool = True,
                 max_queued_texts: int = 256, deadline_s: float = 10.0):
        self.tagger, self.max_texts, self.max_wait = tagger, max_texts, max_wait_ms / 1000
        self.enabled, self.max_queued_texts, self.deadline_s = enabled, max_queued_texts, deadline_s
        self.queue: asyncio.Queue[Request] | None = None
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagger")
        self.task: asyncio.Task | None = None
        self.batches = 0  # forward batches run, for /api/info and the load script
        self.queued_texts = 0  # texts waiting, not yet in a batch
        self.texts_per_s = 50.0  # measured as batches finish; only for the Retry-After estimate

    def start(self) -> None:
        if self.task is None:
            self.queue = asyncio.Queue()
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop taking batches and release the worker; requests still queued are refused."""
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            self.task = None
            while not self.queue.empty():
                r = self.queue.get_nowait()
                if not r.future.done():
                    r.future.set_exception(Overloaded(0, self.max_queued_texts, 1))
        self.worker.shutdown(wait=True)

    async def tag(self, texts: list[str], aggregation: str, decode: str = "viterbi"):
        """The tagger's results for `texts`, in order, once their batch has run; Overloaded at
        once when the queue is full, DeadlinePassed when they waited longer than the deadline."""
        self.start()
        if self.queued_texts + len(texts) > self.max_queued_texts and self.queued_texts > 0:
            retry = max(1, math.ceil(self.queued_texts / max(self.texts_per_s, 1e-3)))
            raise Overloaded(self.queued_texts, self.max_queued_texts, retry)
        request = Request(texts, aggregation, decode, asyncio.get_running_loop().create_future())
        self.queued_texts += len(texts)
        await self.queue.put(request)
        try:
            return await asyncio.wait_for(asyncio.shield(request.future), self.deadline_s)
        except asyncio.TimeoutError:
            request.future.cancel()  # the batcher skips it if it has not started it yet
            raise DeadlinePassed(f"not tagged within the deadline of {self.deadline_s:g} s; "
                                 f"the service is busy, retry later") from None

    def _take(self, request: Request) -> bool:
        """Count a request out of the queue; whether it still wants an answer."""
        self.queued_texts -= len(request.texts)
        return not request.future.done()

    async def _collect(self) -> list[Request]:
        """The next batch: the oldest live request and whatever joins it before the deadline,
        up to max_texts texts (one request over the limit still goes, alone)."""
        batch = []
        while not batch:
            r = await self.queue.get()
            if self._take(r):
                batch.append(r)
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
            if self._take(nxt):
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
            by_options: dict[tuple[str, str], list[Request]] = {}
            for r in batch:
                by_options.setdefault((r.aggregation, r.decode), []).append(r)
            for (aggregation, decode), requests in by_options.items():
                texts = [t for r in requests for t in r.texts]
                t0 = time.perf_counter()
                try:
                    results = await loop.run_in_executor(self.worker, self.tagger, texts, aggregation, decode)
                except Exception as e:  # a failed batch fails its requests, not the service
                    for r in requests:
                        if not r.future.done():
                            r.future.set_exception(e)
                    continue
                self.batches += 1
                rate = len(texts) / max(time.perf_counter() - t0, 1e-6)
                self.texts_per_s = 0.8 * self.texts_per_s + 0.2 * rate
                start = 0
                for r in requests:
                    if not r.future.done():  # the client may have gone, or its deadline passed
                        r.future.set_result(results[start:start + len(r.texts)])
                    start += len(r.texts)
