"""The background workers' one shape: an idempotent start, a stop that cannot hang, a bounded
backoff with jitter, and health that names an error's class but never its text."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from litellm_failover.worker import STOP_RETRY_S, Backoff, Worker

logger = logging.getLogger("litellm_failover.test")


async def test_start_is_idempotent_and_the_worker_starts_again_after_stop() -> None:
    worker = Worker("test-worker", logger)
    runs = 0

    async def body() -> None:
        nonlocal runs
        runs += 1
        assert worker.wakeup is not None
        while not worker.stopping:
            worker.wakeup.clear()
            await worker.wakeup.wait()

    assert worker.start(body)
    assert not worker.start(body)
    await asyncio.sleep(0)
    assert worker.running and runs == 1
    await worker.stop(grace_s=1.0, cancel_wait_s=1.0)
    assert not worker.running and not worker.started
    assert worker.start(body)
    await asyncio.sleep(0)
    assert runs == 2
    await worker.stop(grace_s=1.0, cancel_wait_s=1.0)


async def test_stop_lets_the_body_finish_on_its_own_within_the_grace() -> None:
    worker = Worker("test-worker", logger)
    finished = asyncio.Event()

    async def body() -> None:
        await worker.pause(60.0)  # a long backoff: the kick of stop() ends it
        finished.set()

    worker.start(body)
    await asyncio.sleep(0)
    task = worker.task
    began = time.monotonic()
    await worker.stop(grace_s=5.0, cancel_wait_s=1.0)
    assert time.monotonic() - began < 1.0
    assert finished.is_set() and task is not None and not task.cancelled()


async def test_stop_cannot_hang_on_a_body_that_loses_its_cancellation() -> None:
    worker = Worker("test-worker", logger)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:  # what a swallowed cancellation looks like to stop()
                continue

    worker.start(stubborn)
    task = worker.task
    began = time.monotonic()
    await worker.stop(grace_s=0.1, cancel_wait_s=0.1)
    assert time.monotonic() - began < 1.0
    assert task is not None and not task.done()
    release.set()
    await asyncio.wait({task}, timeout=1.0)


async def test_stop_cancels_the_children_that_did_not_end_in_time() -> None:
    worker = Worker("test-worker", logger)

    async def body() -> None:
        child = worker.spawn(asyncio.sleep(60), name="test-child")
        assert worker.wakeup is not None
        await worker.wakeup.wait()
        await asyncio.wait({child})  # the body waits for its child, as the alerter does

    worker.start(body)
    await asyncio.sleep(0)
    assert len(worker.children) == 1
    [child] = worker.children
    await worker.stop(grace_s=0.05, cancel_wait_s=1.0)
    assert child.cancelled() and not worker.children


def test_backoff_doubles_to_its_bound_and_jitter_never_passes_it() -> None:
    backoff = Backoff(first_s=0.1, max_s=1.0)
    assert [backoff.step(n) for n in range(6)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert backoff.step(10_000) == 1.0
    first = [backoff.delay(1) for _ in range(200)]
    assert all(0.08 <= d <= 0.12 for d in first) and len(set(first)) > 1  # replicas spread out
    assert all(0.8 <= backoff.delay(50) <= 1.0 for _ in range(200))


async def test_a_kick_ends_a_pause_and_a_stopping_worker_never_waits_long() -> None:
    worker = Worker("test-worker", logger, Backoff(first_s=30.0, max_s=60.0))
    worker.start(asyncio.Event().wait)  # a body that only waits: its task is cancelled at stop
    assert worker.kick is not None
    worker.kick.set()  # flush(): retry now
    began = time.monotonic()
    await worker.pause(30.0)
    assert time.monotonic() - began < 0.5 and not worker.kick.is_set()  # consumed
    worker.stopping = True
    began = time.monotonic()
    await worker.pause(30.0)
    assert time.monotonic() - began < STOP_RETRY_S + 0.5
    await worker.stop(grace_s=0.0, cancel_wait_s=1.0)


def test_health_names_the_error_class_never_its_text() -> None:
    worker = Worker("test-worker", logger)
    assert worker.health() == {
        "running": False,
        "consecutive_failures": 0,
        "last_error_class": None,
        "last_success": None,
    }
    worker.failed(ConnectionError("postgresql://app:s3cret@db/prod refused"))
    worker.failed(ConnectionError("again"))
    health = worker.health()
    assert (health["consecutive_failures"], health["last_error_class"]) == (2, "ConnectionError")
    assert "s3cret" not in repr(health)
    worker.succeeded()
    health = worker.health()
    assert health["consecutive_failures"] == 0 and health["last_success"] is not None


async def test_a_crashing_body_is_logged_once_and_shows_in_health(caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker("test-worker", logger)

    async def broken() -> None:
        raise RuntimeError("a bug")

    worker.start(broken, crash_message=lambda: "test worker stopped unexpectedly; 3 rows left")
    assert worker.task is not None
    await asyncio.wait({worker.task}, timeout=1.0)
    assert not worker.running and worker.health()["last_error_class"] == "RuntimeError"
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "test worker stopped unexpectedly; 3 rows left"
    ]
    await worker.stop(grace_s=0.0, cancel_wait_s=0.1)
