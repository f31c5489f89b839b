"""Dynamic batching: requests that arrive together are decoded together.

One worker takes the first waiting query, then keeps taking queries until ``max_batch`` are in hand or
``max_wait_s`` has passed since it took the first, and runs the batch in a single decode thread. While a batch
decodes, new queries queue up; the next batch takes all of them at once, so the batch grows with the load and
throughput with it (the same idea as Triton's dynamic batcher and TorchServe's ``max_batch_delay``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

Q = TypeVar("Q")
R = TypeVar("R")


class DynamicBatcher(Generic[Q, R]):
    """Batches calls to ``decode`` (a list of queries -> one result per query, in order), which runs in one
    worker thread so the event loop keeps accepting requests meanwhile.

    Use inside a running event loop: :meth:`start`, then ``await submit(queries)`` from any number of tasks,
    then :meth:`stop`. A ``decode`` exception fails every query of its batch and the worker goes on.
    """

    def __init__(self, decode: Callable[[list[Q]], Sequence[R]], max_batch: int = 32, max_wait_s: float = 0.002):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_s >= 0 (got {max_batch}, {max_wait_s})")
        self.decode = decode
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.batches = 0  # batches decoded so far
        self.queries = 0  # queries decoded so far
        self.largest = 0  # the largest batch so far
        self.decode_seconds = 0.0  # time spent in decode
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sidrec-decode")
        self._task = asyncio.create_task(self._work(), name="sidrec-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, queries: Sequence[Q]) -> list[R]:
        """Queue ``queries`` (they may land in different batches) and wait for their results, in order."""
        if self._queue is None:
            raise RuntimeError("DynamicBatcher.start() was not called")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in queries]
        for query, future in zip(queries, futures):
            self._queue.put_nowait((query, future))
        return list(await asyncio.gather(*futures))

    async def _next_batch(self) -> list[tuple[Q, asyncio.Future]]:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return [(query, future) for query, future in batch if not future.done()]  # done: the caller gave up

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            start = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self.decode, [q for q, _ in batch])
            except Exception as e:  # noqa: BLE001 -- reported to every caller of the batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            finally:
                self.decode_seconds += time.perf_counter() - start
            self.batches += 1
            self.queries += len(batch)
            self.largest = max(self.largest, len(batch))
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
