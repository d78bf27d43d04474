"""MicroBatcher: requests that arrive together run together, within the size and queue bounds."""
import asyncio
import time

import numpy as np
import pytest

from ember.serve.batching import MicroBatcher, QueueFull


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_batches_and_get_their_own_rows():
    seen = []

    def model(batch):
        seen.append(len(batch))
        return batch * 2

    async def main():
        batcher = MicroBatcher(model, max_batch_size=8, max_delay_ms=50)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(np.full((1, 3), i)) for i in range(20)))
        await batcher.stop()
        return results

    results = run(main())
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result, np.full((1, 3), 2 * i))
    assert seen == [8, 8, 4]  # full batches, then what was left once the delay ran out


def test_a_lone_request_waits_no_longer_than_the_delay():
    async def main():
        batcher = MicroBatcher(lambda b: b, max_batch_size=64, max_delay_ms=20)
        batcher.start()
        start = time.perf_counter()
        await batcher.submit(np.zeros((1, 2)))
        waited = time.perf_counter() - start
        await batcher.stop()
        return waited

    assert 0.015 < run(main()) < 2.0


def test_a_full_queue_refuses_at_once():
    release = __import__("threading").Event()

    def slow(batch):
        release.wait(5)
        return batch

    async def main():
        batcher = MicroBatcher(slow, max_batch_size=1, max_delay_ms=0, max_queue=2)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(np.zeros((1, 1))))
        await asyncio.sleep(0.05)  # the first request is in the model; two more fill the queue
        queued = [asyncio.ensure_future(batcher.submit(np.zeros((1, 1)))) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):
            await batcher.submit(np.zeros((1, 1)))
        release.set()
        await asyncio.gather(running, *queued)
        await batcher.stop()

    run(main())


def test_a_model_error_reaches_every_request_of_the_batch_and_the_loop_goes_on():
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return batch

    async def main():
        batcher = MicroBatcher(flaky, max_batch_size=4, max_delay_ms=30)
        batcher.start()
        first = await asyncio.gather(*(batcher.submit(np.zeros((1, 1))) for _ in range(2)), return_exceptions=True)
        second = await batcher.submit(np.ones((1, 1)))
        await batcher.stop()
        return first, second

    first, second = run(main())
    assert all(isinstance(e, RuntimeError) and "out of memory" in str(e) for e in first)
    np.testing.assert_array_equal(second, np.ones((1, 1)))


def test_bounds_are_checked():
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(lambda b: b, max_batch_size=0)
