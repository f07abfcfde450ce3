"""Which session a request belongs to, read from wherever LiteLLM put the caller's hint.

The order is the public contract: the ``x-session-id`` header, ``metadata.session_id``,
LiteLLM's own ``litellm_session_id``, then (opt-in) the OpenAI ``user`` field. A request with
none of them is not part of a session.

Where each arrives (checked on LiteLLM 1.108.7, in the kwargs the Router hands
``async_filter_deployments`` and the proxy hands ``async_pre_call_hook``):

- header: the proxy keeps the client's headers, lower-cased, in ``proxy_server_request.headers``;
  from Python, ``extra_headers={"x-session-id": ...}`` stays in the Router's request kwargs.
- ``metadata.session_id``: ``metadata`` for chat completions (Router and proxy); the proxy moves
  a Responses API request's LiteLLM metadata to ``litellm_metadata``.
- ``litellm_session_id`` and ``user``: top-level keys on both paths.

Only the winning candidate is validated: a bad ``user`` does not fail a request whose header
already names its session. The id is used as given (no normalisation), so a client sees its own
id in ``sessions show`` and in events.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_SESSION_ID_CHARS = 256
SESSION_HEADER = "x-session-id"

HEADER_SOURCE = f"the {SESSION_HEADER} header"
METADATA_SOURCE = "metadata.session_id"
LITELLM_SOURCE = "litellm_session_id"
USER_SOURCE = "the user field"


class SessionIdError(ValueError):
    """A session id the plugin refuses: too long, not a string, or with control characters.

    ``status_code`` 400 makes LiteLLM's Router raise it at once instead of retrying (it retries
    nothing whose status says "the request is wrong"), and the proxy answer it as a 400.
    """

    status_code = 400

    def __init__(self, source: str, problem: str, value: object) -> None:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        super().__init__(f"invalid session id in {source}: {problem} (got {shown})")
        self.source = source
        self.problem = problem


@dataclass(frozen=True, slots=True)
class SessionId:
    value: str
    source: str


def check_session_id(raw: object, source: str) -> str | None:
    """The id, or None for an empty one; raises ``SessionIdError`` naming ``source``."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise SessionIdError(source, f"must be a string, not {type(raw).__name__}", raw)
    if not raw:
        return None
    if len(raw) > MAX_SESSION_ID_CHARS:
        raise SessionIdError(source, f"{len(raw)} characters, the limit is {MAX_SESSION_ID_CHARS}", raw)
    if not raw.isprintable():  # fast path: printable text has no control characters
        for position, char in enumerate(raw):
            if unicodedata.category(char) == "Cc":
                raise SessionIdError(
                    source, f"control character U+{ord(char):04X} at position {position}", raw
                )
    return raw


def _header(kwargs: Mapping[str, Any]) -> object:
    # ``is not None`` and ``type() is dict`` first (here and below): an ABC check costs a tenth of
    # a microsecond even for None, and these run on every pick, where most requests carry none of
    # these fields and LiteLLM's kwargs are plain dicts.
    request = kwargs.get("proxy_server_request")
    if request is not None and (type(request) is dict or isinstance(request, Mapping)):
        headers = request.get("headers")
        if isinstance(headers, Mapping) and SESSION_HEADER in headers:
            return headers[SESSION_HEADER]
    extra = kwargs.get("extra_headers")
    if extra is not None and (type(extra) is dict or isinstance(extra, Mapping)) and extra:
        for name, value in extra.items():
            if isinstance(name, str) and name.lower() == SESSION_HEADER:
                return value
    return None


def _metadata(kwargs: Mapping[str, Any]) -> object:
    for key in ("metadata", "litellm_metadata"):
        metadata = kwargs.get(key)
        if (
            metadata is not None
            and (type(metadata) is dict or isinstance(metadata, Mapping))
            and metadata.get("session_id") is not None
        ):
            return metadata["session_id"]
    return None


def identify(kwargs: Mapping[str, Any], *, use_user_field: bool) -> SessionId | None:
    """The request's session, or None; raises ``SessionIdError`` for a bad winning candidate.

    Candidates are read one by one, so the common case (a header, or no session at all) costs a
    handful of dict lookups on the hot path.
    """
    # ``check_session_id`` is called only for a candidate that is there: None would be None.
    raw = _header(kwargs)
    if raw is not None and (value := check_session_id(raw, HEADER_SOURCE)) is not None:
        return SessionId(value, HEADER_SOURCE)
    raw = _metadata(kwargs)
    if raw is not None and (value := check_session_id(raw, METADATA_SOURCE)) is not None:
        return SessionId(value, METADATA_SOURCE)
    raw = kwargs.get("litellm_session_id")
    if raw is not None and (value := check_session_id(raw, LITELLM_SOURCE)) is not None:
        return SessionId(value, LITELLM_SOURCE)
    if use_user_field:
        raw = kwargs.get("user")
        if raw is not None and (value := check_session_id(raw, USER_SOURCE)) is not None:
            return SessionId(value, USER_SOURCE)
    return None


# -- whose session it is ----------------------------------------------------------------------

ANONYMOUS_CALLER = "anonymous"
"""The scope of a request no authenticated key, team or application named."""
LEGACY_CALLER = "legacy"
"""The scope migration 0005 gives rows written before sessions had callers: no request is ever
in it, so those rows are never read into a conversation and age out through retention."""
CALLER_METADATA_KEY = "failover_caller"
"""On the Router path, ``metadata={"failover_caller": ...}`` names the caller (the application's
own user or tenant id). Ignored on the proxy path, where a client could set it."""
CALLER_SOURCE = f"metadata.{CALLER_METADATA_KEY}"
_CALLER_HASH_CHARS = 32  # 128 bits of sha256: no two callers share a scope by accident


def _scope(kind: str, value: str) -> str:
    digest = hashlib.sha256(f"{kind}:{value}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"{kind}-{digest[:_CALLER_HASH_CHARS]}"


def _metadata_maps(kwargs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in (kwargs.get("metadata"), kwargs.get("litellm_metadata")) if isinstance(m, Mapping)]


def caller_of(kwargs: Mapping[str, Any]) -> str:
    """The scope a request's session belongs to: a hash, never the key itself.

    Proxy path (LiteLLM authenticated the request: its metadata holds ``user_api_key_hash``,
    which LiteLLM overwrites whatever the client sent): ``key-<hash>`` of the key's hash, else
    ``team-<hash>`` of its team id, else ``anonymous``. Router path: ``app-<hash>`` of
    ``metadata.failover_caller``, else ``anonymous``. Raises ``SessionIdError`` for a
    ``failover_caller`` that is not a short printable string.
    """
    maps = _metadata_maps(kwargs)
    if "proxy_server_request" in kwargs or any("user_api_key_hash" in m for m in maps):
        for key, kind in (("user_api_key_hash", "key"), ("user_api_key_team_id", "team")):
            for metadata in maps:
                value = metadata.get(key)
                if isinstance(value, str) and value:
                    return _scope(kind, value)
        return ANONYMOUS_CALLER
    for metadata in maps:
        value = check_session_id(metadata.get(CALLER_METADATA_KEY), CALLER_SOURCE)
        if value is not None:
            return _scope("app", value)
    return ANONYMOUS_CALLER


def pin_key(caller: str, session_id: str) -> str:
    """The in-memory (and fleet) key of a caller's session: callers never share a pin.

    ``/`` never occurs in a caller, so ``split_pin_key`` recovers both parts."""
    return f"{caller}/{session_id}"


def split_pin_key(key: str) -> tuple[str, str]:
    caller, _, session_id = key.partition("/")
    return caller, session_id
