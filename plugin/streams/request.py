"""What a continuation needs of the client's request, read once when its stream starts.

A continuation is a new request to another deployment, so it carries the client's generation
parameters (temperature, stop, tools, ...) as the client sent them, and nothing of the first
deployment's (api_base, keys, timeouts: the Router fills in the target's own). In the proxy the
request also holds the proxy's bookkeeping (auth, logging objects), which must never travel:
hence a list of what is carried rather than a list of what is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import litellm

from litellm_failover.requests.identity import hook_keys

# Connection and credential fields belong to the deployment, ``n``/``stream``/``stream_options``
# are decided by the continuation itself.
_NOT_CARRIED = frozenset(
    {
        "api_base",
        "api_key",
        "api_version",
        "base_url",
        "default_headers",
        "deployment_id",
        "max_retries",
        "n",
        "organization",
        "request_timeout",
        "stream",
        "stream_options",
        "timeout",
    }
)
# Sampling fields of the self-hosted engines (vLLM, SGLang) a client may send at the top level:
# the proxy flattens the openai SDK's ``extra_body`` into the request it routes.
_ENGINE_FIELDS = frozenset(
    {
        "top_k",
        "min_p",
        "repetition_penalty",
        "length_penalty",
        "min_tokens",
        "ignore_eos",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "chat_template_kwargs",
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
        "structured_outputs",
        "continue_final_message",
        "add_generation_prompt",
    }
)
CARRIED = frozenset(litellm.OPENAI_CHAT_COMPLETION_PARAMS).difference(_NOT_CARRIED) | _ENGINE_FIELDS
# The continuation rule of the target decides these; the client's own values are its input.
CONTINUATION_FIELDS = ("continue_final_message", "add_generation_prompt")
MAX_TOKEN_FIELDS = ("max_completion_tokens", "max_tokens")
_STRUCTURED_FIELDS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs")


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """One client stream's request: its group, messages, and the parameters a continuation keeps."""

    group: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)
    call_id: str | None = None  # LiteLLM's ``litellm_call_id`` (what the proxy's routing keys by)
    trace_id: str | None = None  # ``litellm_trace_id`` (the Router's)
    include_usage: bool = False
    choices: int = 1

    @classmethod
    def from_kwargs(
        cls, group: str, messages: Sequence[Mapping[str, Any]], kwargs: Mapping[str, Any]
    ) -> StreamRequest:
        options = kwargs.get("stream_options")
        extra_body = kwargs.get("extra_body")
        call_id, trace_id = kwargs.get("litellm_call_id"), kwargs.get("litellm_trace_id")
        n = kwargs.get("n")
        return cls(
            group=group,
            messages=[dict(m) for m in messages],
            params={k: v for k, v in kwargs.items() if k in CARRIED and v is not None},
            extra_body=dict(extra_body) if isinstance(extra_body, Mapping) else {},
            call_id=str(call_id) if call_id else None,
            trace_id=str(trace_id) if trace_id else None,
            include_usage=isinstance(options, Mapping) and bool(options.get("include_usage")),
            choices=n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1,
        )

    @property
    def request_keys(self) -> tuple[str, ...]:
        """The ids the request book may know this request by, most specific first."""
        return hook_keys({"litellm_call_id": self.call_id, "litellm_trace_id": self.trace_id})

    @property
    def request_id(self) -> str | None:
        return self.call_id or self.trace_id

    @property
    def request_extra(self) -> dict[str, Any]:
        """The client's own engine fields, wherever it put them (top level or ``extra_body``)."""
        top = {k: v for k, v in self.params.items() if k in _ENGINE_FIELDS}
        return {**top, **self.extra_body}

    @property
    def structured(self) -> bool:
        """Constrained decoding (a JSON schema, a grammar) restarts its constraint at the start
        of the answer, so continuing from the middle of one is not exact on any engine."""
        response_format = self.params.get("response_format")
        if isinstance(response_format, Mapping) and response_format.get("type") not in (None, "text"):
            return True
        extra = self.request_extra
        return any(extra.get(name) is not None for name in _STRUCTURED_FIELDS)

    def not_resumable(self) -> str | None:
        """Why no stream of this request can be continued, or None."""
        if self.choices > 1:
            return f"n={self.choices} streams several answers at once"
        return None

    def max_tokens(self) -> tuple[str, int] | None:
        for name in MAX_TOKEN_FIELDS:
            value = self.params.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                return name, value
        return None

    def continuation_kwargs(
        self, messages: list[dict[str, Any]], extra_body: Mapping[str, Any], tokens_kept: int
    ) -> dict[str, Any]:
        """The client's parameters for a continuation of ``messages``; ``max_tokens`` shrinks by
        the tokens of the answer the continuation goes on from (``tokens_kept``: what the broken
        parts generated up to the cut, as the engines counted them, ``streams.tokens``), so the
        stitched answer keeps the limit the client asked for. The engine's running count is asked
        for by the deployment hook, not here: it depends on the target's kind."""
        params = {k: v for k, v in self.params.items() if k not in CONTINUATION_FIELDS}
        limit = self.max_tokens()
        if limit is not None:
            name, value = limit
            params[name] = max(1, value - tokens_kept)
        body = {k: v for k, v in self.extra_body.items() if k not in CONTINUATION_FIELDS}
        body.update(extra_body)
        params["messages"] = messages
        if body:
            params["extra_body"] = body
        if self.include_usage:
            params["stream_options"] = {"include_usage": True}
        return params
