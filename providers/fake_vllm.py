"""A fake vLLM OpenAI-compatible server for the demo, drills and tests.

Failover is about what happens when a GPU node misbehaves, and a real vLLM can't be told to
hang, lie on ``/health`` or drop a stream on cue. This server speaks the part of vLLM's API the
plugin touches (chat completions with vLLM's continuation parameters, the stateful Responses API
in ``fake_responses``, ``/v1/models``, ``/health``, Prometheus ``/metrics`` under vLLM's metric
names) plus the GPU node's NVML sidecar (``/gpu-status``, ``/gpu-memory``), and lets a drill
switch faults at run time through ``/control/*``.

Answers are deterministic (``fake_text``) so that a continued generation can be checked
character for character: the answer to a message list is a fixed word sequence seeded from a
hash of the messages, one word per streamed chunk.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from litellm_failover.providers.fake_responses import (
    RESPONSES_PATH,
    PlannedResponse,
    ResponseNotFound,
    ResponsesRequest,
    ResponseStore,
    StreamEvents,
    parse_responses_request,
    plan_response,
)
from litellm_failover.providers.fake_text import (
    DEFAULT_WORDS,
    VOCAB,
    RequestError,
    answer_pieces,
    content_text,
    continuation_pieces,
    expected_answer,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TOKENS_PER_S",
    "DEFAULT_WORDS",
    "FAULT_MODES",
    "VOCAB",
    "FakeVLLM",
    "Fault",
    "FaultError",
    "RequestError",
    "answer_pieces",
    "content_text",
    "continuation_pieces",
    "expected_answer",
    "parse_fault",
]

DEFAULT_MODEL = "fake-model"
DEFAULT_TOKENS_PER_S = 200.0
RECEIVED_KEPT = 64

# Fault mode -> {param: (type, default)}. Modes without params take none; anything else is a 400.
FAULT_MODES: dict[str, dict[str, tuple[type, float | int]]] = {
    "http_500": {},
    "hang": {},
    "slow": {"delay_s": (float, 3.0)},
    "drop_midstream": {"after_chunks": (int, 3)},
    "health_lie": {},
    "gpu_pressure": {},
    # /health and the GPU sidecar report failure while generation still works: every probe
    # ejects the node, yet it could serve (the drill's "every node down" panic-mode scenario).
    "health_fail": {},
}

_CHAT_PATH = "/v1/chat/completions"
_GENERATION_PATHS = frozenset({_CHAT_PATH, RESPONSES_PATH})
_ENDPOINTS = _GENERATION_PATHS | {"/v1/models", "/health", "/metrics", "/gpu-status", "/gpu-memory"}
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NAME_HEADER = "x-fake-vllm-name"
_METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SHUTDOWN_TIMEOUT_S = 2.0
_FLUSH_WAIT_S = 1.0
_FLUSH_POLL_S = 0.005
_GPU_MEMORY_TOTAL = 80 * 1024**3
_NORMAL_GPU_RATIO = 0.6
_PRESSURE_GPU_RATIO = 0.97
_PRESSURE_KV = 0.99
_PRESSURE_WAITING = 64


class FaultError(ValueError):
    """A fault request names an unknown mode or a bad parameter (answered as HTTP 400)."""

    def __init__(self, message: str, param: str = "mode") -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class Fault:
    """The fault in force; ``params`` always holds every parameter of the mode, defaults filled."""

    mode: str
    params: dict[str, float | int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Flat, like the control request body, so a state read can be posted back as is."""
        return {"mode": self.mode, **self.params}


def parse_fault(mode: object, params: Mapping[str, object] | None = None) -> Fault:
    """Validate a fault request; strings are accepted for numbers so CLI ``KEY=VALUE`` works."""
    params = dict(params or {})
    if not isinstance(mode, str) or mode not in FAULT_MODES:
        raise FaultError(f"unknown fault mode {mode!r}; known modes: {', '.join(sorted(FAULT_MODES))}")
    spec = FAULT_MODES[mode]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        takes = f"it takes {', '.join(sorted(spec))}" if spec else "it takes no parameters"
        raise FaultError(f"fault mode {mode!r} has no parameter {unknown[0]!r}; {takes}", unknown[0])
    values = {
        name: _coerce_param(mode, name, kind, params.get(name, default))
        for name, (kind, default) in spec.items()
    }
    return Fault(mode, values)


def _coerce_param(mode: str, name: str, kind: type, raw: object) -> float | int:
    value: float | int | None = None
    if isinstance(raw, str):
        try:
            value = kind(raw.strip())
        except ValueError:
            value = None
    elif isinstance(raw, bool):
        value = None
    elif kind is int and isinstance(raw, int):
        value = raw
    elif kind is int and isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif kind is float and isinstance(raw, int | float):
        value = float(raw)
    if value is None or not math.isfinite(value) or value < 0:
        what = "integer" if kind is int else "number"
        raise FaultError(
            f"fault mode {mode!r}: parameter {name!r} must be a non-negative {what}, got {raw!r}", name
        )
    return value


# --- chat requests ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The fields of a chat completion request this server acts on; the rest are ignored."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    continue_final_message: bool


@dataclass(frozen=True, slots=True)
class Generation:
    """What one request will produce: pieces already truncated by ``max_tokens``."""

    pieces: list[str]
    finish_reason: str
    prompt_tokens: int

    @property
    def usage(self) -> dict[str, int]:
        completion = len(self.pieces)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


def _optional_bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"'{key}' must be a boolean", key)
    return value


def _parse_messages(raw: object) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list", "messages")
    for index, message in enumerate(raw):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise RequestError(f"messages[{index}] must be an object with a valid 'role'", "messages")
        if not isinstance(message.get("content"), str | list | None):
            raise RequestError(f"messages[{index}].content must be a string, a list or null", "messages")
    return raw


def _parse_max_tokens(body: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(f"'{key}' must be a positive integer", key)
        return value
    return None


def parse_chat_request(body: object, default_model: str) -> ChatRequest:
    """Check a request the way vLLM's pydantic model would, for the fields that matter here."""
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    model = body.get("model", default_model)
    if not isinstance(model, str) or not model:
        raise RequestError("'model' must be a non-empty string", "model")
    messages = _parse_messages(body.get("messages"))
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object", "stream_options")
    continue_final = _optional_bool(body, "continue_final_message", False)
    if continue_final and body.get("add_generation_prompt") is True:
        raise RequestError(
            "continue_final_message and add_generation_prompt cannot both be true", "continue_final_message"
        )
    if continue_final and messages[-1].get("role") != "assistant":
        raise RequestError(
            "continue_final_message needs the last message to be an assistant message", "messages"
        )
    return ChatRequest(
        model=model,
        messages=messages,
        stream=_optional_bool(body, "stream", False),
        include_usage=_optional_bool(options, "include_usage", False),
        max_tokens=_parse_max_tokens(body),
        continue_final_message=continue_final,
    )


def plan_generation(request: ChatRequest, words: int) -> Generation:
    """Decide the pieces a request gets: a fresh answer, or the rest of one after a prefix."""
    if request.continue_final_message:
        base = answer_pieces(request.messages[:-1], words)
        pieces = continuation_pieces(base, content_text(request.messages[-1].get("content")))
    else:
        pieces = answer_pieces(request.messages, words)
    finish_reason = "stop"
    if request.max_tokens is not None and request.max_tokens < len(pieces):
        pieces = pieces[: request.max_tokens]
        finish_reason = "length"
    prompt_tokens = sum(len(content_text(m.get("content")).split()) for m in request.messages)
    return Generation(pieces, finish_reason, prompt_tokens)


def error_body(message: str, status: int, *, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape, which both the SDK and LiteLLM parse into a typed exception."""
    kind = {400: "BadRequestError", 404: "NotFoundError", 503: "ServiceUnavailableError"}
    return {
        "error": {
            "message": message,
            "type": kind.get(status, "InternalServerError"),
            "param": param,
            "code": status,
        }
    }


class _Pacer:
    """Spaces chunks at a token rate against a fixed start, so slow writes don't add up to drift."""

    def __init__(self, tokens_per_s: float) -> None:
        self._interval = 1.0 / tokens_per_s if tokens_per_s > 0 else 0.0
        self._start = asyncio.get_running_loop().time()

    async def until(self, count: int) -> None:
        """Wait until ``count`` tokens' worth of time has passed since the start."""
        if self._interval <= 0:
            return
        delay = self._start + count * self._interval - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass
class _Counters:
    """Request counts for ``/control/state``: drills assert on what actually reached a node."""

    total: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "by_endpoint": dict(self.by_endpoint), "by_status": dict(self.by_status)}


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
        self._requested_port = port
        self._bound_port: int | None = None
        self._runner: web.AppRunner | None = None
        self._fault: Fault | None = None
        self._release = asyncio.Event()
        self._stopping = False
        self._running = 0
        self._waiting = 0
        self._counters = _Counters()
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
        self._stopping = False
        self._release = asyncio.Event()
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
        self._stopping = True
        self._release.set()
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
        return self._fault

    def set_fault(self, mode: str, **params: object) -> Fault:
        """Switch to a fault mode; raises ``FaultError`` for an unknown mode or a bad param."""
        self._fault = parse_fault(mode, params)
        self._wake()
        return self._fault

    def clear_fault(self) -> None:
        """Back to normal; requests held by ``hang`` or ``slow`` go on at once."""
        self._fault = None
        self._wake()

    def _wake(self) -> None:
        # A fresh event per fault change: held requests re-read the fault, new ones wait anew.
        released, self._release = self._release, asyncio.Event()
        released.set()

    def _mode(self) -> str | None:
        return self._fault.mode if self._fault else None

    def answer_for(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The full uninterrupted answer this server gives to ``messages``."""
        return expected_answer(messages, self.words)

    def state(self) -> dict[str, Any]:
        """What ``GET /control/state`` returns."""
        return {
            "name": self.name,
            "model": self.model,
            "fault": self._fault.as_dict() if self._fault else None,
            "running": self._running,
            "waiting": self._waiting,
            "requests": self._counters.as_dict(),
        }

    def metrics_text(self) -> str:
        """Prometheus text under vLLM's names; ``gpu_cache_usage_perc`` is the deprecated alias."""
        pressure = self._mode() == "gpu_pressure"
        waiting = _PRESSURE_WAITING if pressure else self._waiting
        kv = _PRESSURE_KV if pressure else min(0.05 + 0.02 * self._running, 0.89)
        gauges = (
            ("vllm:num_requests_running", "Number of requests in model execution batches.", self._running),
            ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting),
            ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", kv),
            ("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", kv),
        )
        label = _label_value(self.model)
        lines = []
        for metric, help_text, value in gauges:
            lines += [
                f"# HELP {metric} {help_text}",
                f"# TYPE {metric} gauge",
                f'{metric}{{model_name="{label}"}} {float(value)}',
            ]
        return "\n".join(lines) + "\n"

    def gpu_status(self) -> dict[str, Any]:
        """The NVML sidecar's reading; vLLM preallocates memory, so usage is flat unless pressured."""
        pressure = self._mode() == "gpu_pressure"
        ratio = _PRESSURE_GPU_RATIO if pressure else _NORMAL_GPU_RATIO
        used = int(ratio * _GPU_MEMORY_TOTAL)
        utilization = 99.0 if pressure else (min(95.0, 20.0 + 10.0 * self._running) if self._running else 0.0)
        gpu = {
            "index": 0,
            "name": "Fake GPU",
            "memory_used_bytes": used,
            "memory_total_bytes": _GPU_MEMORY_TOTAL,
            "used_ratio": used / _GPU_MEMORY_TOTAL,
            "utilization_pct": utilization,
            "temperature_c": 40.0 + 0.35 * utilization,
            "xid_errors": 0,
            "ecc_errors": 0,
        }
        if self._mode() == "health_fail":
            return {
                "healthy": False,
                "reason": "injected fault health_fail",
                "read_at": time.time(),
                "gpus": [gpu],
            }
        return {"healthy": True, "reason": "", "read_at": time.time(), "gpus": [gpu]}

    # --- app ---------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.on_response_prepare.append(self._stamp_name)
        app.router.add_post(_CHAT_PATH, self._chat)
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
        """``hang`` waits for the fault to change; ``slow`` waits ``delay_s`` (or until a change).

        Completions held here count as waiting in ``/metrics``, like requests queued in vLLM.
        """
        queued = int(endpoint in _GENERATION_PATHS)
        self._waiting += queued
        try:
            while not self._stopping:
                fault, release = self._fault, self._release
                if fault is None or fault.mode not in ("hang", "slow"):
                    return
                if fault.mode == "hang":
                    await release.wait()
                    continue
                try:
                    await asyncio.wait_for(release.wait(), fault.params["delay_s"])
                except TimeoutError:
                    pass
                return
            raise web.HTTPServiceUnavailable(
                text=json.dumps(error_body(f"{self.name} is shutting down", 503)),
                content_type="application/json",
            )
        finally:
            self._waiting -= queued

    def _fail(self, what: str) -> web.Response:
        message = f"fake vLLM {self.name}: injected fault {self._mode()} on {what}"
        return web.json_response(error_body(message, 500), status=500)

    async def _health(self, request: web.Request) -> web.Response:
        if self._mode() in ("http_500", "health_fail"):
            return self._fail("/health")
        return web.Response(status=200)

    async def _models(self, request: web.Request) -> web.Response:
        if self._mode() == "http_500":
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
            body=self.metrics_text().encode(), headers={"Content-Type": _METRICS_CONTENT_TYPE}
        )

    async def _gpu_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.gpu_status())

    async def _gpu_memory(self, request: web.Request) -> web.Response:
        status = self.gpu_status()
        ratio = max(gpu["used_ratio"] for gpu in status["gpus"])
        return web.json_response({"used_ratio": ratio, "read_at": status["read_at"]})

    # --- chat completions --------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self._mode() in ("http_500", "health_lie"):
            return self._fail(_CHAT_PATH)
        try:
            chat = parse_chat_request(json.loads(await request.read()), self.model)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and RequestError alike
            message = str(exc) if isinstance(exc, RequestError) else f"request body is not valid JSON: {exc}"
            param = exc.param if isinstance(exc, RequestError) else None
            return web.json_response(error_body(message, 400, param=param), status=400)
        self.received.append(chat)
        generation = plan_generation(chat, self.words)
        self._running += 1
        try:
            if chat.stream:
                return await self._stream(request, chat, generation)
            return await self._complete(chat, generation)
        finally:
            self._running -= 1

    def _envelope(self, chat: ChatRequest, completion_id: str, created: int, obj: str) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": obj,
            "created": created,
            "model": chat.model,
            "system_fingerprint": self.name,
        }

    async def _complete(self, chat: ChatRequest, generation: Generation) -> web.Response:
        await _Pacer(self.tokens_per_s).until(len(generation.pieces))
        body = self._envelope(chat, f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), "chat.completion")
        body["choices"] = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(generation.pieces)},
                "logprobs": None,
                "finish_reason": generation.finish_reason,
            }
        ]
        body["usage"] = generation.usage
        return web.json_response(body)

    async def _stream(
        self, request: web.Request, chat: ChatRequest, generation: Generation
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        envelope = self._envelope(
            chat, f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), "chat.completion.chunk"
        )

        async def send(delta: dict[str, Any] | None, finish_reason: str | None = None, **extra: Any) -> None:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            payload = {**envelope, "choices": [] if delta is None else [choice], **extra}
            await response.write(f"data: {json.dumps(payload)}\n\n".encode())

        try:
            await send({"role": "assistant", "content": ""})
            pacer = _Pacer(self.tokens_per_s)
            for sent, piece in enumerate(generation.pieces):
                if await self._dropped(request, sent):
                    return response
                await pacer.until(sent + 1)
                await send({"content": piece})
            if await self._dropped(request, len(generation.pieces)):
                return response
            await send({}, generation.finish_reason)
            if chat.include_usage:
                await send(None, usage=generation.usage)
            await response.write(b"data: [DONE]\n\n")
        except ConnectionError:
            self._outcomes[id(request)] = "client_disconnected"
        return response

    # --- responses (stateful, like vLLM's) ------------------------------------------------------

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        if self._mode() in ("http_500", "health_lie"):
            return self._fail(RESPONSES_PATH)
        try:
            parsed = parse_responses_request(json.loads(await request.read()), self.model)
            self.received.append(parsed)
            planned = plan_response(parsed, self.responses, self.words)
        except ResponseNotFound as exc:
            return web.json_response(error_body(str(exc), 404, param="response_id"), status=404)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and RequestError alike
            message = str(exc) if isinstance(exc, RequestError) else f"request body is not valid JSON: {exc}"
            param = exc.param if isinstance(exc, RequestError) else None
            return web.json_response(error_body(message, 400, param=param), status=400)
        self._running += 1
        try:
            if parsed.stream:
                response = await self._stream_response(request, planned)
            else:
                await _Pacer(self.tokens_per_s).until(len(planned.pieces))
                response = web.json_response(planned.body(planned.final_status))
        finally:
            self._running -= 1
        if parsed.store and self._outcomes.get(id(request)) is None:
            # Stored only once complete: a response cut mid-stream is not one vLLM keeps.
            self.responses.put(planned.body(planned.final_status), planned.messages)
        return response

    async def _stream_response(self, request: web.Request, planned: PlannedResponse) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        events = StreamEvents(planned)

        async def send(event: tuple[str, dict[str, Any]]) -> None:
            kind, payload = event
            await response.write(f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode())

        try:
            for event in events.opening():
                await send(event)
            pacer = _Pacer(self.tokens_per_s)
            for sent, piece in enumerate(planned.pieces):
                if await self._dropped(request, sent):
                    return response
                await pacer.until(sent + 1)
                await send(events.delta(piece))
            if await self._dropped(request, len(planned.pieces)):
                return response
            for event in events.closing():
                await send(event)
        except ConnectionError:
            self._outcomes[id(request)] = "client_disconnected"
        return response

    async def _dropped(self, request: web.Request, sent: int) -> bool:
        """Under ``drop_midstream``, abort the TCP connection once ``after_chunks`` were sent.

        An abort (not a clean close) is what a crashed node looks like: the client gets a
        truncated chunked body and must raise, never mistake it for a finished answer.
        """
        fault = self._fault
        if fault is None or fault.mode != "drop_midstream" or sent < fault.params["after_chunks"]:
            return False
        transport = request.transport
        if transport is not None:
            await _flushed(transport)
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
            return web.json_response(error_body(message, 400, param="mode"), status=400)
        params = {key: value for key, value in body.items() if key != "mode"}
        try:
            self.set_fault(body["mode"], **params)
        except FaultError as exc:
            return web.json_response(error_body(str(exc), 400, param=exc.param), status=400)
        return web.json_response(self.state())

    async def _control_clear(self, request: web.Request) -> web.Response:
        self.clear_fault()
        return web.json_response(self.state())

    async def _control_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())


async def _flushed(transport: asyncio.BaseTransport) -> None:
    """Let already written chunks leave before an abort discards the transport's buffer.

    Polled, because asyncio exposes no awaitable for "write buffer empty"; bounded by
    ``_FLUSH_WAIT_S`` so a client that stopped reading can't hold the abort back.
    """
    buffered = getattr(transport, "get_write_buffer_size", lambda: 0)
    for _ in range(int(_FLUSH_WAIT_S / _FLUSH_POLL_S)):
        if buffered() == 0:
            return
        await asyncio.sleep(_FLUSH_POLL_S)


def _label_value(value: str) -> str:
    """Escape a Prometheus label value (backslash, double quote, newline: the text format's set)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
