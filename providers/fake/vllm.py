"""A fake vLLM OpenAI-compatible server for the demo, drills and tests.

Failover is about what happens when a GPU node misbehaves, and a real vLLM can't be told to
hang, lie on ``/health`` or drop a stream on cue. This server speaks the part of vLLM's API the
plugin touches (chat completions with vLLM's continuation parameters in ``chat``, the stateful
Responses API in ``responses``, ``/v1/models``, ``/health``, Prometheus ``/metrics`` under vLLM's
metric names, in ``telemetry``) plus the GPU node's NVML sidecar (``/gpu-status``,
``/gpu-memory``), and lets a drill switch faults (``faults``) at run time through ``/control/*``.

Answers are deterministic (``text``) so that a continued generation can be checked character
for character: the answer to a message list is a fixed word sequence seeded from a hash of the
messages, one word a token, streamed in chunks of ``chunk_tokens`` tokens (one by default).
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

from aiohttp import web

from litellm_failover.providers.fake import telemetry
from litellm_failover.providers.fake.chat import (
    CHAT_PATH,
    ChatRequest,
    completion_body,
    parse_chat_request,
    parse_chunk_tokens,
    plan_choices,
    write_chat_stream,
)
from litellm_failover.providers.fake.faults import Fault, FaultError, FaultSwitch
from litellm_failover.providers.fake.responses import (
    RESPONSES_PATH,
    ResponseNotFound,
    ResponsesRequest,
    ResponseStore,
    parse_responses_request,
    plan_response,
    write_response_stream,
)
from litellm_failover.providers.fake.text import DEFAULT_WORDS, RequestError, expected_answer
from litellm_failover.providers.fake.wire import Pacer, error_body, event_stream, flushed, json_error

DEFAULT_MODEL = "fake-model"
DEFAULT_TOKENS_PER_S = 200.0
RECEIVED_KEPT = 64

_GENERATION_PATHS = frozenset({CHAT_PATH, RESPONSES_PATH})
_ENDPOINTS = _GENERATION_PATHS | {"/v1/models", "/health", "/metrics", "/gpu-status", "/gpu-memory"}
_NAME_HEADER = "x-fake-vllm-name"
_SHUTDOWN_TIMEOUT_S = 2.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeVLLM:
    """One fake vLLM node (server plus GPU sidecar) on one port, with switchable faults."""

    def __init__(
        self,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        model: str = DEFAULT_MODEL,
        words: int = DEFAULT_WORDS,
        tokens_per_s: float = DEFAULT_TOKENS_PER_S,
        chunk_tokens: str | Sequence[int] = (1,),
    ) -> None:
        if not name:
            raise ValueError("a fake vLLM server needs a non-empty name")
        if words < 1:
            raise ValueError(f"words must be at least 1, got {words}")
        if tokens_per_s < 0 or not math.isfinite(tokens_per_s):
            raise ValueError(f"tokens_per_s must be a non-negative number, got {tokens_per_s}")
        self.name = name
        self.host = host
        self.model = model
        self.words = words
        self.tokens_per_s = tokens_per_s
        self.chunk_tokens = parse_chunk_tokens(chunk_tokens)
        self._requested_port = port
        self._bound_port: int | None = None
        self._runner: web.AppRunner | None = None
        self._faults = FaultSwitch()
        self._running = 0
        self._waiting = 0
        self._counters = telemetry.RequestCounts()
        # What /v1/responses stored, by response id: vLLM keeps it in process memory, so a
        # restarted (or different) node does not know a conversation it did not serve.
        self.responses = ResponseStore()
        # The last generation requests as parsed (in-process servers only): tests check what a
        # node was sent, e.g. a warm-up's prefix and max_tokens, not only that it was called.
        self.received: deque[ChatRequest | ResponsesRequest] = deque(maxlen=RECEIVED_KEPT)
        # Outcomes a handler decides itself ("aborted", "client_disconnected"), by id(request).
        self._outcomes: dict[int, str] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; with port 0 the OS picks a free port (read it from ``port``)."""
        if self._runner is not None:
            raise RuntimeError(f"fake vLLM {self.name!r} is already running")
        self._faults.open()
        runner = web.AppRunner(
            self._build_app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._bound_port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Release hanging requests, then close; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._faults.release_all()
        await runner.cleanup()

    async def __aenter__(self) -> FakeVLLM:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._bound_port is not None:
            return self._bound_port
        if self._requested_port:
            return self._requested_port
        raise RuntimeError("port is chosen at start(); start the server first")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/v1"

    # --- faults and state --------------------------------------------------------------------

    @property
    def fault(self) -> Fault | None:
        return self._faults.fault

    def set_fault(self, mode: str, **params: object) -> Fault:
        """Switch to a fault mode; raises ``FaultError`` for an unknown mode or a bad param."""
        return self._faults.set(mode, params)

    def clear_fault(self) -> None:
        """Back to normal; requests held by ``hang`` or ``slow`` go on at once."""
        self._faults.clear()

    def answer_for(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The full uninterrupted answer this server gives to ``messages``."""
        return expected_answer(messages, self.words)

    def state(self) -> dict[str, Any]:
        """What ``GET /control/state`` returns."""
        fault = self._faults.fault
        return {
            "name": self.name,
            "model": self.model,
            "fault": fault.as_dict() if fault else None,
            "running": self._running,
            "waiting": self._waiting,
            "requests": self._counters.as_dict(),
        }

    def metrics_text(self) -> str:
        """Prometheus text under vLLM's names (see ``telemetry.metrics_text``), then the GPU
        reading under dcgm-exporter's (``telemetry.dcgm_text``)."""
        engine = telemetry.metrics_text(self.model, self._faults.mode, self._running, self._waiting)
        return engine + telemetry.dcgm_text(self.gpu_status())

    def gpu_status(self) -> dict[str, Any]:
        """The NVML sidecar's reading (see ``telemetry.gpu_status``)."""
        return telemetry.gpu_status(self._faults.mode, self._running)

    # --- app ---------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.on_response_prepare.append(self._stamp_name)
        app.router.add_post(CHAT_PATH, self._chat)
        app.router.add_post(RESPONSES_PATH, self._responses)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/gpu-status", self._gpu_status)
        app.router.add_get("/gpu-memory", self._gpu_memory)
        app.router.add_post("/control/fault", self._control_set)
        app.router.add_delete("/control/fault", self._control_clear)
        app.router.add_get("/control/state", self._control_state)
        return app

    async def _stamp_name(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers[_NAME_HEADER] = self.name

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Counts requests and applies the delaying faults before any non-control handler."""
        if request.path.startswith("/control/"):
            return await handler(request)
        endpoint = request.path if request.path in _ENDPOINTS else "other"
        self._counters.total += 1
        self._counters.by_endpoint[endpoint] += 1
        outcome = "cancelled"
        try:
            await self._hold(endpoint)
            response = await handler(request)
            outcome = self._outcomes.pop(id(request), str(response.status))
            return response
        except web.HTTPException as exc:
            outcome = str(exc.status)
            raise
        except Exception:
            outcome = "500"
            raise
        finally:
            self._outcomes.pop(id(request), None)
            self._counters.by_status[outcome] += 1

    async def _hold(self, endpoint: str) -> None:
        """Wait out ``hang``, ``slow`` or (a completion) ``engine_hang``; completions held here
        count as waiting in ``/metrics``, like requests queued in vLLM."""
        queued = int(endpoint in _GENERATION_PATHS)
        self._waiting += queued
        try:
            if not await self._faults.hold(generation=bool(queued)):
                raise web.HTTPServiceUnavailable(
                    text=json.dumps(error_body(f"{self.name} is shutting down", 503)),
                    content_type="application/json",
                )
        finally:
            self._waiting -= queued

    def _fail(self, what: str) -> web.Response:
        return json_error(f"fake vLLM {self.name}: injected fault {self._faults.mode} on {what}", 500)

    async def _health(self, request: web.Request) -> web.Response:
        if self._faults.mode in ("http_500", "health_fail"):
            return self._fail("/health")
        return web.Response(status=200)

    async def _models(self, request: web.Request) -> web.Response:
        if self._faults.mode == "http_500":
            return self._fail("/v1/models")
        entry = {
            "id": self.model,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "vllm",
            "root": self.model,
            "parent": None,
            "max_model_len": 8192,
        }
        return web.json_response({"object": "list", "data": [entry]})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics_text().encode(), headers={"Content-Type": telemetry.METRICS_CONTENT_TYPE}
        )

    async def _gpu_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.gpu_status())

    async def _gpu_memory(self, request: web.Request) -> web.Response:
        status = self.gpu_status()
        ratio = max(gpu["used_ratio"] for gpu in status["gpus"])
        return web.json_response({"used_ratio": ratio, "read_at": status["read_at"]})

    # --- generation --------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self._faults.mode in ("http_500", "health_lie"):
            return self._fail(CHAT_PATH)
        try:
            chat = parse_chat_request(json.loads(await request.read()), self.model)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and RequestError alike
            return _bad_request(exc)
        self.received.append(chat)
        generations = plan_choices(chat, self.words)
        self._running += 1
        try:
            if not chat.stream:
                await Pacer(self.tokens_per_s).until(max(g.tokens for g in generations))
                return web.json_response(completion_body(chat, generations, self.name))
            response = await event_stream(request)
            try:
                dropped = partial(self._dropped, request)
                await write_chat_stream(
                    response, chat, generations, self.name, self.tokens_per_s, dropped, self.chunk_tokens
                )
            except ConnectionError:
                self._outcomes[id(request)] = "client_disconnected"
            return response
        finally:
            self._running -= 1

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        """Stateful, like vLLM's: a completed, stored response can be continued by id."""
        if self._faults.mode in ("http_500", "health_lie"):
            return self._fail(RESPONSES_PATH)
        try:
            parsed = parse_responses_request(json.loads(await request.read()), self.model)
            self.received.append(parsed)
            planned = plan_response(parsed, self.responses, self.words)
        except ResponseNotFound as exc:
            return json_error(str(exc), 404, param="response_id")
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and RequestError alike
            return _bad_request(exc)
        self._running += 1
        try:
            if parsed.stream:
                response = await event_stream(request)
                try:
                    dropped = partial(self._dropped, request)
                    await write_response_stream(response, planned, self.tokens_per_s, dropped)
                except ConnectionError:
                    self._outcomes[id(request)] = "client_disconnected"
            else:
                await Pacer(self.tokens_per_s).until(len(planned.pieces))
                response = web.json_response(planned.body(planned.final_status))
        finally:
            self._running -= 1
        if parsed.store and self._outcomes.get(id(request)) is None:
            # Stored only once complete: a response cut mid-stream is not one vLLM keeps.
            self.responses.put(planned.body(planned.final_status), planned.messages)
        return response

    async def _dropped(self, request: web.Request, sent: int) -> bool:
        """Under ``drop_midstream``, abort the TCP connection once ``after_chunks`` were sent.

        An abort (not a clean close) is what a crashed node looks like: the client gets a
        truncated chunked body and must raise, never mistake it for a finished answer.
        """
        fault = self._faults.fault
        if fault is None or fault.mode != "drop_midstream" or sent < fault.params["after_chunks"]:
            return False
        transport = request.transport
        if transport is not None:
            await flushed(transport)
            transport.abort()
        self._outcomes[id(request)] = "aborted"
        return True

    # --- control -----------------------------------------------------------------------------

    async def _control_set(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict) or "mode" not in body:
            message = 'control body must be a JSON object with a "mode", e.g. {"mode": "slow", "delay_s": 2}'
            return json_error(message, 400, param="mode")
        params = {key: value for key, value in body.items() if key != "mode"}
        try:
            self.set_fault(body["mode"], **params)
        except FaultError as exc:
            return json_error(str(exc), 400, param=exc.param)
        return web.json_response(self.state())

    async def _control_clear(self, request: web.Request) -> web.Response:
        self.clear_fault()
        return web.json_response(self.state())

    async def _control_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())


def _bad_request(exc: ValueError) -> web.Response:
    """A 400 for a body that is not JSON or not a valid request, naming the field when known."""
    if isinstance(exc, RequestError):
        return json_error(str(exc), 400, param=exc.param)
    return json_error(f"request body is not valid JSON: {exc}", 400)
