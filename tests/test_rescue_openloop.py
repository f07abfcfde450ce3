"""Rescue under an open loop (issue 12 §1), through the real ``litellm.Router``.

Between a hang and its ejection an open loop keeps sending: every request picked in that time
waits on the hung primary (the plugin still routes to it), and the ejection must find them all,
including the ones picked after the node stopped answering; the requests that arrive after the
ejection must go straight to the standby. The bench (``bench/failover_comparison.py
--hung-primary``) measures the same under load; this pins what it relies on: every piled-up
request is rescued, oldest first, once, none is missed, left untracked or held back, none waits
out its own timeout, and nothing new is sent to the ejected node.

The ejection is another replica's (``apply_remote_ejection``, probes off): its moment is the
test's own, so what is checked is the rescue, not the prober.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import litellm
import pytest
from fake_nodes import serving
from test_rescue_router import OWN_TIMEOUT_S, deployments
from waiting import wait_until

from litellm_failover import attach
from litellm_failover.drill.loadgen import RequestResult, router_sender
from litellm_failover.litellm_compat.attempt_frames import RouterFrame
from litellm_failover.providers.fake.vllm import FakeVLLM
from litellm_failover.rescue.attempts import Attempt
from litellm_failover.rescue.interrupt import AttemptHandle

PILED_UP = 12  # requests the open loop sends onto p1 between the hang and the ejection
AFTER = 4  # requests it sends after the ejection
SEND_EVERY_S = 0.02  # the open loop's pace: 50 requests a second, whatever the answers do


def send(router: litellm.Router, index: int, stream: bool) -> Awaitable[RequestResult]:
    """One request under its own trace id (the plugin's request id on a Python Router)."""
    return router_sender(router, "chat", litellm_trace_id=f"ol-{index}")(index, stream)


async def open_loop(router: litellm.Router, indexes: range) -> list[asyncio.Task[RequestResult]]:
    """Send one request every ``SEND_EVERY_S``, not waiting for answers; every other one streamed."""
    tasks = []
    for index in indexes:
        tasks.append(asyncio.create_task(send(router, index, stream=index % 2 == 1)))
        await asyncio.sleep(SEND_EVERY_S)  # the pace of arrivals, not a synchronisation
    return tasks


def chats(server: FakeVLLM) -> int:
    return server.state()["requests"]["by_endpoint"].get("/v1/chat/completions", 0)


@pytest.fixture
async def servers():
    async with serving({name: FakeVLLM(name, tokens_per_s=0) for name in ("p1", "s1")}) as started:
        yield started


async def test_an_open_loop_piled_up_on_a_hung_primary_is_all_rescued_and_new_requests_skip_it(
    servers, tmp_path
):
    router = litellm.Router(
        model_list=deployments(servers, probe={"p1": False, "s1": False}), num_retries=2, retry_after=0
    )
    plugin = attach(router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db"})
    rescued: list[str] = []  # request ids, in the order the rescues were issued
    plugin.core.listeners.append(
        lambda event: rescued.append(event.request_id) if event.event_type == "request_rescued" else None
    )
    try:
        async with plugin:
            for i, stream in enumerate((False, True)):  # LiteLLM builds its clients on a first call
                assert not (await send(router, 1000 + i, stream)).error
            servers["p1"].set_fault("hang")
            piled = await open_loop(router, range(PILED_UP))
            await wait_until(
                lambda: servers["p1"].state()["waiting"] >= PILED_UP, timeout=5, what="all held on p1"
            )
            p1_chats = chats(servers["p1"])
            ejected_at = time.monotonic()
            assert plugin.core.apply_remote_ejection("p1", origin="replica-b", reason="hung", remaining_s=30)
            after = await open_loop(router, range(PILED_UP, PILED_UP + AFTER))
            answers = await asyncio.wait_for(asyncio.gather(*piled, *after), timeout=OWN_TIMEOUT_S / 2)
            # The originals were failed, not left running: p1 holds none of them any more.
            await wait_until(lambda: servers["p1"].state()["waiting"] == 0, timeout=2, what="p1 freed")
            status = plugin.status()["rescue"]
            assert chats(servers["p1"]) == p1_chats  # nothing new went to the ejected node
    finally:
        plugin.detach()

    assert [a.error for a in answers if a.error] == []
    assert {a.served_by for a in answers} == {"s1"}
    assert {a.stream for a in answers[:PILED_UP]} == {False, True}
    # Every piled-up request rescued once, oldest first; none of those sent after the ejection.
    assert rescued == [f"ol-{i}" for i in range(PILED_UP)]
    assert status["rescued"] == {"ejected": PILED_UP, "first_token_timeout": 0}
    assert status["held_back"] == {"per_ejection": 0, "no_alternative": 0, "queue_full": 0}
    assert (status["missed"], status["untracked"], status["delayed"], status["queued"]) == (0, 0, 0, 0)
    # None waited out its own timeout (20 s): the last answer came within a fraction of it.
    assert max(a.ended_at for a in answers) - ejected_at < OWN_TIMEOUT_S / 4


@pytest.mark.parametrize(
    "waits_on", ["a_made_connection", "a_connection_to_make", "the_loop_itself", "an_event"]
)
async def test_a_rescue_fails_only_a_future_no_one_else_will_settle(tmp_path, waits_on):
    """Races the bench met. ``a_made_connection`` / ``a_connection_to_make``: an attempt waiting
    on a new connection whose result asyncio's transport had already scheduled (``call_soon``),
    the rescue in the same loop turn as the connection or just before it. ``the_loop_itself``: a
    future the event loop settles from its own callback without checking it is done, as uvloop's
    ``sock_connect`` does (failing it from outside made uvloop log an ``InvalidStateError`` every
    time the socket became writable, the descriptor still watched; the proxy that did this later
    died with a segfault). None of these may be failed from outside: the attempt, answered
    meanwhile, is counted as missed, and nothing is logged. ``an_event``: a wait whose setter
    checks first (``asyncio.Event``, as aiohttp's stream reads do) is failed: rescued."""
    model = [
        {
            "model_name": "chat",
            "litellm_params": {"model": "hosted_vllm/fake-model", "api_base": f"http://127.0.0.1:9/{name}"},
            "model_info": {"id": name, "failover": {"probe": False}},
        }
        for name in ("p1", "s1")
    ]
    router = litellm.Router(model_list=model, num_retries=2, retry_after=0)
    plugin = attach(router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db"})
    loop = asyncio.get_running_loop()
    logged: list[dict] = []
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: logged.append(context))
    try:
        async with plugin:
            made = loop.create_future()  # the waiter of a connection already made
            connecting = loop.create_future()  # the socket connect that comes first
            event = asyncio.Event()

            async def attempt() -> None:  # the frame that makes the upstream call
                if waits_on == "a_made_connection":
                    await made
                elif waits_on == "a_connection_to_make":
                    await connecting
                    waiter = loop.create_future()  # as asyncio's transport makes a connection:
                    loop.call_soon(asyncio.futures._set_result_unless_cancelled, waiter, None)
                    await waiter  # woken on the next loop turn
                elif waits_on == "the_loop_itself":
                    settled_by_the_loop = loop.create_future()
                    loop.call_later(0.3, settled_by_the_loop.set_result, None)
                    await settled_by_the_loop
                else:
                    await event.wait()

            task = asyncio.create_task(attempt())
            await wait_until(lambda: getattr(task, "_fut_waiter", None) is not None, timeout=2, what="wait")
            handle = AttemptHandle(task, RouterFrame(task.get_coro().cr_frame))
            plugin.rescuer.attempts.add(Attempt("r1", "p1", "chat", False, handle, time.monotonic()))
            if waits_on == "a_made_connection":
                # The connection is made: asyncio wakes the waiter on the next loop turn...
                loop.call_soon(asyncio.futures._set_result_unless_cancelled, made, None)
            elif waits_on == "a_connection_to_make":
                connecting.set_result(None)  # the attempt's next step (the connection) runs next turn
            # ...and in this same turn p1 is ejected.
            assert plugin.rescuer.rescue_deployment("p1", "hung") == 1
            if waits_on == "an_event":
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(task, timeout=2)
                await wait_until(
                    lambda: plugin.status()["rescue"]["rescued"]["ejected"] == 1, timeout=3, what="rescued"
                )
            else:
                await asyncio.wait_for(task, timeout=2)  # its own result, no rescue error
                await wait_until(lambda: plugin.status()["rescue"]["missed"] == 1, timeout=3, what="missed")
            status = plugin.status()["rescue"]
    finally:
        loop.set_exception_handler(previous_handler)
        plugin.detach()
    assert logged == []
    assert status["rescued"]["ejected"] == (1 if waits_on == "an_event" else 0)
