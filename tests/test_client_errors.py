"""A client's bad request is the client's error (issue 11 §7), through the real ``litellm.Router``.

A request the backend refuses as malformed (a non-integer ``max_tokens``, a non-boolean
``stream``, ``messages`` that is not a list, a message with an unknown role) must fail with the
plugin exactly as without it, count against no deployment, exclude none from the request's
retries, and leave no attempt in flight for a drain to wait on. ``messages`` that is not a list
never reaches the backend: LiteLLM fails building it and reports an ``APIConnectionError``, which
the plugin once took for a refused connection (ejecting every deployment in turn, and answering
"No deployments available").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import litellm
import pytest
from fake_nodes import serving

from litellm_failover import attach
from litellm_failover.classify import classify
from litellm_failover.outlier import Outcome
from litellm_failover.providers.fake.vllm import FakeVLLM

GOOD = [{"role": "user", "content": "hello"}]
BAD_REQUESTS: dict[str, dict[str, Any]] = {
    "max_tokens not an integer": {"max_tokens": "ten"},
    "max_tokens negative": {"max_tokens": -1},
    "stream not a boolean": {"stream": "yes"},
    "messages a string": {"messages": "hi"},
    "messages of numbers": {"messages": [1]},
    "unknown role": {"messages": [{"role": "wizard", "content": "x"}]},
    "streamed, max_tokens not an integer": {"stream": True, "max_tokens": "ten"},
    "streamed, messages a string": {"stream": True, "messages": "hi"},
    "streamed, unknown role": {"stream": True, "messages": [{"role": "wizard", "content": "x"}]},
}


def wrapped(cause: BaseException, message: str = "odd") -> litellm.APIConnectionError:
    """An ``APIConnectionError`` raised while handling ``cause``, the way LiteLLM wraps one."""
    try:
        raise cause
    except BaseException:
        try:
            raise litellm.APIConnectionError(message=message, model="m", llm_provider="x")
        except litellm.APIConnectionError as error:
            return error


def test_a_request_litellm_could_not_build_is_a_client_error_even_for_a_stream():
    built_badly = wrapped(AttributeError("'str' object has no attribute 'get'"))
    assert classify(built_badly) is Outcome.CLIENT_ERROR
    assert classify(built_badly, streaming_started=True) is Outcome.CLIENT_ERROR


def test_an_api_connection_error_from_the_transport_stays_a_connect_error():
    for cause in (ConnectionResetError("gone"), httpx.RemoteProtocolError("x"), aiohttp.ClientOSError()):
        assert classify(wrapped(cause)) is Outcome.CONNECT_ERROR
    # No cause at all says nothing either way: as before, a connect error.
    assert classify(litellm.APIConnectionError(message="odd", model="m", llm_provider="x")) is (
        Outcome.CONNECT_ERROR
    )


def test_a_backend_4xx_is_the_clients_even_when_the_request_was_a_stream():
    refused = litellm.BadRequestError(message="'max_tokens' must be an integer", model="m", llm_provider="x")
    assert classify(refused, streaming_started=True) is Outcome.CLIENT_ERROR
    # Not the client's: a refused credential, an overloaded node.
    denied = litellm.AuthenticationError(message="bad key", model="m", llm_provider="x")
    assert classify(denied, streaming_started=True) is Outcome.STREAM_CUT
    slow = litellm.RateLimitError(message="slow down", model="m", llm_provider="x")
    assert classify(slow) is Outcome.OVERLOADED


def test_the_requests_fault_is_400_404_413_422_and_other_4xx_are_the_deployments():
    def status(code: int) -> litellm.APIError:
        return litellm.APIError(status_code=code, message="x", llm_provider="x", model="m")

    for code in (400, 404, 413, 422):
        assert classify(status(code)) is Outcome.CLIENT_ERROR, code
    window = litellm.ContextWindowExceededError(message="maximum context length", model="m", llm_provider="x")
    assert classify(window) is Outcome.CLIENT_ERROR  # LiteLLM's context-window fallbacks still see it
    assert classify(status(409)) is Outcome.OVERLOADED  # LiteLLM retries a conflict
    for code in (402, 405, 410, 415):  # an endpoint that would answer anyone so
        assert classify(status(code)) is Outcome.SERVER_ERROR, code


def test_a_response_litellm_could_not_read_is_not_the_requests_fault():
    # A body of ``[]``: LiteLLM wraps its AttributeError in "Invalid response object" first.
    try:
        raise AttributeError("'list' object has no attribute 'get'")
    except AttributeError:
        try:
            raise Exception("Invalid response object")  # the shape LiteLLM raises
        except Exception as unread:
            assert classify(wrapped(unread)) is Outcome.CONNECT_ERROR


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, FakeVLLM]]:
    async with serving({name: FakeVLLM(name, tokens_per_s=0) for name in ("p1", "p2")}) as started:
        yield started


def model_list(servers: dict[str, FakeVLLM], tiers: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """One ``chat`` group of both servers; with ``tiers``, each its ``order`` (LiteLLM then falls
    back tier by tier after any failure, a 400 included, offering the whole group to the pick)."""
    deployments = []
    for name, s in servers.items():
        params: dict[str, Any] = {"model": "hosted_vllm/fake-model", "api_base": s.api_base, "timeout": 5}
        if tiers is not None:
            params["order"] = tiers[name]
        # No probes: only traffic could move a deployment's state here.
        info = {"id": name, "failover": {"gpu_url": s.url, "probe": False}}
        deployments.append({"model_name": "chat", "litellm_params": params, "model_info": info})
    return deployments


async def answer(router: litellm.Router, extra: dict[str, Any]) -> tuple[str, int | None]:
    """What the caller sees: the exception's class and status, or ``ok``."""
    try:
        response = await router.acompletion(**{"model": "chat", "messages": GOOD, **extra})
        if extra.get("stream") is True:
            async for _ in response:
                pass
    except Exception as exc:
        return type(exc).__name__, getattr(exc, "status_code", None)
    return "ok", 200


@pytest.mark.parametrize("tiers", [None, {"p1": 1, "p2": 2}], ids=["one tier", "two tiers"])
async def test_each_bad_request_fails_as_without_the_plugin_and_costs_no_deployment_anything(
    servers, tmp_path, tiers
):
    plain = litellm.Router(model_list=model_list(servers, tiers), num_retries=2, retry_after=0)
    router = litellm.Router(model_list=model_list(servers, tiers), num_retries=2, retry_after=0)
    plugin = attach(router, {"database_url": f"sqlite+aiosqlite:///{tmp_path}/events.db"})
    try:
        async with plugin:
            for kind, extra in BAD_REQUESTS.items():
                expected = await answer(plain, extra)
                assert expected[0] != "ok", kind
                assert await answer(router, extra) == expected, kind
            # Nothing in flight, nothing counted, nobody ejected or excluded.
            assert plugin.in_flight_counts() == {}
            stats = plugin.book.stats()
            assert stats["in_flight"] == 0 and stats["expired"] == 0 and stats["started"] == stats["ended"]
            for deployment_id in ("p1", "p2"):
                health = plugin.core.health[deployment_id]
                assert health.state.value == "healthy", health.reason
                assert (health.outlier.consecutive_errors, health.outlier.ejection_count) == (0, 0)
            drained = plugin.drain("p1")
            assert (drained["state"], drained["in_flight"]) == ("drained", 0)  # nothing to wait for
            # Good requests still go through (to p2, p1 being drained).
            assert await answer(router, {}) == ("ok", 200)
    finally:
        plugin.detach()
