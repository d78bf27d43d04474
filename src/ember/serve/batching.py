"""Dynamic micro-batching: requests that arrive together run through the model as one batch.

Each request hands in an array whose first axis is its own batch. The batcher takes the first waiting
request, then keeps taking requests until the batch holds `max_batch_size` rows or `max_delay_ms` has
passed (a request that would overflow the batch opens the next one), runs the batch on one worker thread (torch and ONNX Runtime release the GIL, so the event loop
keeps accepting requests meanwhile) and hands each request its rows back. The queue is bounded: a request
that finds `max_queue` requests waiting is refused at once (`QueueFull`, HTTP 503) rather than left to
time out. When a batch fails, its requests run one by one, so a bad request fails alone.
"""
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class QueueFull(Exception):
    """The batcher's queue holds `max_queue` requests: try again shortly."""


class ShuttingDown(Exception):
    """The batcher stopped before the request ran."""


class MicroBatcher:
    """`await batcher.submit(array)` -> the model's output rows for `array`.

    `run(batch) -> outputs` and `collate(list of arrays) -> batch` come from the predictor; `on_batch(rows,
    seconds)` is told of every batch (for metrics).
    """

    def __init__(self, run, collate=np.concatenate, *, max_batch_size: int = 64, max_delay_ms: float = 5.0,
                 max_queue: int = 1024, on_batch=None):
        if max_batch_size < 1 or max_queue < 1 or max_delay_ms < 0:
            raise ValueError("max_batch_size and max_queue must be at least 1, max_delay_ms at least 0")
        self._run, self._collate, self._on_batch = run, collate, on_batch
        self.max_batch_size, self.max_delay, self.max_queue = max_batch_size, max_delay_ms / 1000, max_queue
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._held = None         # a request that did not fit the last batch: it opens the next one
        self._in_flight: list = []

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ember-infer")
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        waiting = list(self._in_flight) + ([self._held] if self._held else [])
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        _fail(waiting, ShuttingDown("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, array: np.ndarray) -> np.ndarray:
        if self._queue is None:
            raise RuntimeError("the batcher is not running: call start() inside the event loop first")
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} requests are waiting")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((array, future))
        return await future

    async def _next_batch(self) -> list:
        first, self._held = self._held, None
        items = [first if first is not None else await self._queue.get()]
        size = len(items[0][0])
        deadline = time.monotonic() + self.max_delay
        while size < self.max_batch_size:
            if self._queue.empty():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            if size + len(item[0]) > self.max_batch_size:  # it opens the next batch instead
                self._held = item
                break
            items.append(item)
            size += len(item[0])
        return items

    async def _loop(self) -> None:
        while True:
            items = await self._next_batch()
            self._in_flight = [(a, f) for a, f in items if not f.done()]  # a cancelled request is skipped
            try:
                if self._in_flight:
                    await self._serve(self._in_flight)
            except Exception as e:  # a bug of ours: the requests hear of it, and the loop goes on
                _fail(self._in_flight, e)
            self._in_flight = []

    async def _serve(self, items: list) -> None:
        """Run `items` as one batch; if the batch fails, run each request alone, so that one bad request
        (say, an input the model cannot take) fails by itself rather than taking its batch with it."""
        start = time.perf_counter()
        try:
            outputs = await self._infer([a for a, _ in items])
        except Exception as e:
            if len(items) == 1:
                _fail(items, e)
                return
            for item in items:
                await self._serve([item])
            return
        if self._on_batch is not None:
            self._on_batch(sum(len(a) for a, _ in items), time.perf_counter() - start)
        offset = 0
        for array, future in items:
            if not future.done():
                future.set_result(outputs[offset:offset + len(array)])
            offset += len(array)

    async def _infer(self, arrays: list):
        batch = self._collate(arrays)
        outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._run, batch)
        if len(outputs) != len(batch):
            raise RuntimeError(f"the model returned {len(outputs)} rows for a batch of {len(batch)}")
        return outputs


def _fail(items: list, error: Exception) -> None:
    for _, future in items:
        if not future.done():
            future.set_exception(error)
