"""Builders for unit tests of the core: model lists, probe reports, a controllable clock, and
conversation rows for the store's tests; and ``attached``, the Router tests' plugin maker."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from litellm_failover.deployments import DeploymentSpec, read_model_list
from litellm_failover.providers.base import CheckResult, ProbeReport, Severity
from litellm_failover.records import MessageRow, SessionRow
from litellm_failover.settings import FailoverSettings, parse_settings
from litellm_failover.store.history import chain_hash


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def model_list(*entries: tuple[str, str, int, float]) -> list[dict]:
    """(group, id, order, weight) tuples to a LiteLLM model_list."""
    return [
        {
            "model_name": group,
            "litellm_params": {
                "model": "hosted_vllm/fake-model",
                "api_base": f"http://127.0.0.1:1/{dep_id}/v1",
                "order": order,
                "weight": weight,
            },
            "model_info": {"id": dep_id},
        }
        for group, dep_id, order, weight in entries
    ]


def fake_vllm_deployment(
    name: str,
    server: Any,
    order: int = 1,
    *,
    timeout: float = 5,
    stream_timeout: float | None = None,
    **failover: Any,
) -> dict[str, Any]:
    """One ``chat`` deployment on a fake vLLM ``server`` (a ``FakeVLLM`` or a ``FakeVLLMProcess``:
    both have ``api_base`` and ``url``): id ``name``, tier ``order``, the GPU sidecar on the
    server's own port, and ``failover`` added to ``model_info.failover``. LiteLLM's
    ``stream_timeout`` is set only when given."""
    params: dict[str, Any] = {
        "model": "hosted_vllm/fake-model",
        "api_base": server.api_base,
        "order": order,
        "timeout": timeout,
    }
    if stream_timeout is not None:
        params["stream_timeout"] = stream_timeout
    info = {"id": name, "failover": {"gpu_url": server.url, **failover}}
    return {"model_name": "chat", "litellm_params": params, "model_info": info}


def specs_for(entries: list[dict], settings: FailoverSettings | None = None) -> list[DeploymentSpec]:
    return read_model_list(entries, (settings or parse_settings({})).health)


def good_report(latency: float = 0.01) -> ProbeReport:
    return ProbeReport(
        checks=(
            CheckResult.passed("http_health", "200"),
            CheckResult.passed("probe_latency", f"{latency}s", latency),
        ),
        latency_s=latency,
    )


def bad_report(reason: str = "HTTP 500") -> ProbeReport:
    return ProbeReport(checks=(CheckResult.failed("http_health", reason),), latency_s=0.01)


def saturated_report(kv: float = 0.99) -> ProbeReport:
    return ProbeReport(
        checks=(
            CheckResult.passed("http_health", "200"),
            CheckResult.failed("kv_cache", f"KV cache {kv:.2f} over 0.90", kv, severity=Severity.DEGRADE),
        ),
        latency_s=0.01,
    )


# ---------------------------------------------------------------- conversation state (the store)

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _default_text_hash(session_id: str, seq: int) -> str:
    return hashlib.sha256(f"{session_id} {seq}".encode()).hexdigest()


def default_chain(session_id: str, seq: int) -> str:
    """The chain hash of default message ``seq`` of a session (all default messages before it)."""
    parent = ""
    for position in range(seq + 1):
        role = "user" if position % 2 == 0 else "assistant"
        parent = chain_hash(parent, position, role, _default_text_hash(session_id, position))
    return parent


def message(session_id: str, seq: int, **overrides: Any) -> MessageRow:
    """Message ``seq`` of a session: user on even positions, assistant on odd, text "<session> <seq>",
    its parent the default message before it (so a session's default messages form one history)."""
    content = overrides.pop("content", f"{session_id} {seq}")
    fields: dict[str, Any] = {
        "parent_hash": default_chain(session_id, seq - 1) if seq > 0 else "",
        "session_id": session_id,
        "seq": seq,
        "role": "user" if seq % 2 == 0 else "assistant",
        "content": content,
        "content_hash": hashlib.sha256((content or "").encode("utf-8", "surrogatepass")).hexdigest(),
        "content_chars": len(content or ""),
        "deployment_id": None if seq % 2 == 0 else "p1",
        "prompt_tokens": None if seq % 2 == 0 else 10 + seq,
        "completion_tokens": None if seq % 2 == 0 else 5,
        "created_at": T0 + timedelta(seconds=seq),
    }
    fields.update(overrides)
    return MessageRow(**fields)


def session(
    session_id: str, *, group: str = "chat", pinned: str | None = "p1", turns: int = 1, at: datetime = T0
) -> SessionRow:
    return SessionRow(session_id, group, pinned, turns, at)


# ---------------------------------------------------------------- Routers with the plugin attached


class Attached:
    """``make(model_list, settings=None, **router_kwargs)`` -> (router, plugin): a real
    ``litellm.Router`` (``num_retries=2`` unless given, ``retry_after=0``) with the plugin attached
    on ``defaults`` updated by ``settings``. Every plugin made is detached by ``detach_all``."""

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.plugins: list[Any] = []

    def __call__(
        self, model_list: list[dict], settings: Mapping[str, Any] | None = None, **router_kwargs: Any
    ) -> tuple[Any, Any]:
        # Imported here: the core's unit tests import this module and must not pay for LiteLLM.
        import litellm

        from litellm_failover import attach

        router_kwargs.setdefault("num_retries", 2)
        router = litellm.Router(model_list=model_list, retry_after=0, **router_kwargs)
        plugin = attach(router, {**self.defaults, **(settings or {})})
        self.plugins.append(plugin)
        return router, plugin

    def detach_all(self) -> None:
        for plugin in self.plugins:
            plugin.detach()


@contextmanager
def attached(defaults: Mapping[str, Any]) -> Iterator[Attached]:
    """For a fixture: ``with attached({...}) as make: yield make``; the plugins it made are
    detached when the test ends, however it ended."""
    made = Attached(defaults)
    try:
        yield made
    finally:
        made.detach_all()
