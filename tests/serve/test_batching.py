"""MicroBatcher: requests that arrive together run together, within the size and queue bounds."""
import asyncio
import threading

import numpy as np
import pytest

from ember.serve.batching import MicroBatcher, QueueFull, ShuttingDown


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


def test_a_lone_request_runs_alone_once_the_delay_is_over():
    seen = []

    async def main():
        batcher = MicroBatcher(lambda b: seen.append(len(b)) or b, max_batch_size=64, max_delay_ms=20)
        batcher.start()
        result = await batcher.submit(np.ones((1, 2)))
        await batcher.stop()
        return result

    np.testing.assert_array_equal(run(main()), np.ones((1, 2)))
    assert seen == [1]


def test_requests_of_several_rows_never_overflow_a_batch():
    seen = []

    async def main():
        batcher = MicroBatcher(lambda b: seen.append(len(b)) or b, max_batch_size=8, max_delay_ms=50)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(np.full((3, 1), i)) for i in range(5)))
        await batcher.stop()
        return results

    results = run(main())
    assert [r[:, 0].tolist() for r in results] == [[i] * 3 for i in range(5)]
    assert seen == [6, 6, 3]


def test_a_full_queue_refuses_at_once():
    release = threading.Event()

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


def test_a_bad_request_fails_alone_and_its_batch_mates_are_served():
    calls = []

    def model(batch):
        calls.append(len(batch))
        if (batch < 0).any():
            raise ValueError("negative input")
        return batch * 10

    async def main():
        batcher = MicroBatcher(model, max_batch_size=8, max_delay_ms=50)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(np.full((1, 1), v)) for v in (1, -1, 2)),
                                       return_exceptions=True)
        await batcher.stop()
        return results

    good, bad, other = run(main())
    assert good[0, 0] == 10 and other[0, 0] == 20
    assert isinstance(bad, ValueError) and "negative input" in str(bad)
    assert calls == [3, 1, 1, 1]  # the batch, then each request alone


def test_stopping_fails_what_still_waits():
    release = threading.Event()

    async def main():
        batcher = MicroBatcher(lambda b: release.wait(5) and b, max_batch_size=1, max_delay_ms=0)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(np.zeros((1, 1))))
        waiting = asyncio.ensure_future(batcher.submit(np.zeros((1, 1))))
        await asyncio.sleep(0.05)
        release.set()
        await batcher.stop()
        return await asyncio.gather(first, waiting, return_exceptions=True)

    results = run(main())
    assert any(isinstance(r, ShuttingDown) for r in results)


def test_bounds_are_checked():
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(lambda b: b, max_batch_size=0)
