"""Context continuity for the Responses API: rebuilding a conversation its node can't serve.

A request with ``previous_response_id`` only makes sense on the deployment that created that
response: vLLM (like OpenAI) keeps the conversation in its own memory, and any other node
answers 404. So the plugin sends such a request to its creator, as LiteLLM's optional
``responses_api_deployment_check`` would. When the creator is down, the plugin loads the
conversation from ``failover_messages`` and sends it whole, as ``input`` items, with
``previous_response_id`` removed, to a healthy deployment: the client keeps its conversation.

Response ids: LiteLLM gives clients ``resp_<base64 of provider, deployment id, raw id>``, and the
proxy encrypts that again per user (``ResponsesIDSecurity``). The store keys messages by the raw
id the deployment made, which is the same whichever wrapping a caller sees; ``parse_response_id``
peels both layers, with LiteLLM's own helpers.

The database read happens only here, on the request path of a request that would fail without
it, bounded by ``REBUILD_TIMEOUT_S``; any failure leaves the request as it was.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from litellm_failover.sessions.content import to_input_item

logger = logging.getLogger("litellm_failover")

REBUILD_TIMEOUT_S = 2.0
"""Longest a request waits for its conversation to be read back (flush, lookup, load)."""

_PROXY_ID_PREFIX = "litellm_proxy:responses_api:response_id:"


@dataclass(frozen=True, slots=True)
class ResponseRef:
    """A response id as the deployment made it, and the deployment LiteLLM says made it."""

    raw_id: str
    deployment_id: str | None


def _unwrap_proxy_id(value: str) -> str:
    """The proxy's per-user encryption of a response id, undone with its own key and helper.

    Only inside a running proxy (its module is loaded, and holds the key); elsewhere the id
    cannot be one of these.
    """
    if "litellm.proxy.proxy_server" not in sys.modules or not value.startswith("resp_"):
        return value
    try:
        from litellm.proxy.common_utils.encrypt_decrypt_utils import decrypt_value_helper

        decrypted = decrypt_value_helper(
            value[len("resp_") :], key="response_id", exception_type="debug", return_original_value=False
        )
    except Exception:
        return value
    if isinstance(decrypted, str) and decrypted.startswith(_PROXY_ID_PREFIX):
        return decrypted[len(_PROXY_ID_PREFIX) :].split(";", 1)[0]
    return value


def parse_response_id(value: str) -> ResponseRef:
    from litellm.responses.utils import ResponsesAPIRequestUtils

    decoded = ResponsesAPIRequestUtils.decode_responses_api_response_id(_unwrap_proxy_id(value))
    raw = decoded.get("response_id") or value
    return ResponseRef(raw_id=str(raw), deployment_id=decoded.get("model_id") or None)


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """A conversation read back: where its last stored message sits, and it as input items."""

    session_id: str
    seq: int
    history: list[dict[str, Any]]


class RebuildFailed(Exception):
    """Why a conversation could not be rebuilt; the request then goes on unchanged."""


def current_input(raw_input: Any) -> list[Any]:
    """The request's own ``input`` as a list of items (a string is one user message)."""
    if raw_input is None:
        return []
    if isinstance(raw_input, str):
        return [{"role": "user", "content": raw_input}]
    return list(raw_input)


Locate = Callable[[str], Awaitable["tuple[str, int] | None"]]


async def rebuild(
    engine: AsyncEngine | None,
    raw_id: str,
    *,
    locate: Locate,
    flush: Callable[[float], Awaitable[bool]] | None = None,
    timeout_s: float = REBUILD_TIMEOUT_S,
) -> Rebuilt:
    """Read back the conversation up to and including response ``raw_id``; raises ``RebuildFailed``.

    ``locate`` finds (session, seq) of the response (memory first, then the store). The writer is
    flushed first, so the turn answered a moment before its node died is there to read.
    """
    from litellm_failover.store.conversations import load_messages

    if engine is None:
        raise RebuildFailed("the store is not connected")
    try:
        async with asyncio.timeout(timeout_s):
            if flush is not None:
                await flush(timeout_s)
            where = await locate(raw_id)
            if where is None:
                raise RebuildFailed(f"response {raw_id} is not in failover_messages")
            session_id, seq = where
            stored = await load_messages(engine, session_id, up_to_seq=seq)
    except TimeoutError:
        raise RebuildFailed(f"reading the conversation took over {timeout_s}s") from None
    except RebuildFailed:
        raise
    except Exception as exc:  # the database is away: the request goes on as it came
        raise RebuildFailed(f"the store could not be read ({type(exc).__name__})") from exc
    if [m.seq for m in stored] != list(range(seq + 1)):
        raise RebuildFailed(f"session {session_id!r} has gaps before message {seq}")
    missing = [m.seq for m in stored if m.content is None]
    if missing:
        raise RebuildFailed(
            f"session {session_id!r} keeps only hashes for {len(missing)} message(s) "
            "(store_content off or over max_message_chars)"
        )
    history = [to_input_item(m.role, m.content or "") for m in stored]
    return Rebuilt(session_id=session_id, seq=seq, history=history)
