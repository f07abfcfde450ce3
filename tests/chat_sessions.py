"""A chat client that keeps a conversation, for the session tests on the Router and the proxy.

Both LiteLLM's Router and the openai SDK answer in the same shapes (``system_fingerprint`` names
the fake vLLM node that answered), so one class drives either: pass ``create`` as
``functools.partial(router.acompletion, model="chat")`` or
``functools.partial(client.chat.completions.create, model="chat")``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


class Conversation:
    """Sends its whole history each turn, as chat clients do, and records who answered."""

    def __init__(self, create: Callable[..., Awaitable[Any]], **naming: Any) -> None:
        self.create = create
        self.naming = naming  # how the session is named: metadata=..., extra_headers=...
        self.messages: list[dict[str, str]] = []
        self.served: list[str | None] = []

    async def turn(self, text: str, *, stream: bool = False) -> str:
        self.messages.append({"role": "user", "content": text})
        extra = {"stream_options": {"include_usage": True}} if stream else {}
        response = await self.create(messages=list(self.messages), stream=stream, **extra, **self.naming)
        if stream:
            answer, served = "", None
            async for chunk in response:
                served = chunk.system_fingerprint or served
                if chunk.choices and chunk.choices[0].delta.content:
                    answer += chunk.choices[0].delta.content
        else:
            answer, served = response.choices[0].message.content, response.system_fingerprint
        self.messages.append({"role": "assistant", "content": answer})
        self.served.append(served)
        return answer
