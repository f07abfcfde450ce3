"""The client side of the splice bench: streamed requests through a Router, every chunk recorded.

Imports LiteLLM and the standard library only, so it runs under any interpreter with LiteLLM
installed: ``bench/_splice.py`` calls it in process for the plain and plugin profiles and starts
it as ``python -I bench/_splice_client.py CONFIG.json`` under a newer LiteLLM (1.109+) for the
``litellm_continuation`` profile, which is LiteLLM alone with
``enable_mid_stream_fallback_continuation`` on (no plugin, nothing of ours on its path).

A sample is raw: the text of each chunk and the node that sent it (the fake vLLM names itself in
``system_fingerprint``), the time of each chunk, the error if the stream raised. The parent judges.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

REQUEST_CAP_S = 30.0  # a stream still open after this is an error (bounds the run)


def model_list(nodes: Mapping[str, str], prefill: bool) -> list[dict[str, Any]]:
    """``chat``: the primary p1 (``order: 1``) and s1 (``order: 2``); ``chat-standby``: s2, the
    fallback group LiteLLM's continuation needs. ``prefill`` declares
    ``supports_assistant_prefill`` on every deployment (LiteLLM continues only on such a one)."""
    groups = {"p1": ("chat", 1), "s1": ("chat", 2), "s2": ("chat-standby", 1)}
    deployments = []
    for name, api_base in nodes.items():
        group, order = groups[name]
        info: dict[str, Any] = {"id": name}
        if prefill:
            info["supports_assistant_prefill"] = True
        deployments.append(
            {
                "model_name": group,
                "litellm_params": {"model": "hosted_vllm/fake-model", "api_base": api_base, "order": order},
                "model_info": info,
            }
        )
    return deployments


def make_router(nodes: Mapping[str, str], settings: Mapping[str, Any], continuation: bool) -> Any:
    """The fallback group plus ``settings`` (``{}``: LiteLLM's defaults); with ``continuation``
    also the 1.109+ opt-in and the prefill flag it requires."""
    import litellm

    router_settings: dict[str, Any] = {"fallbacks": [{"chat": ["chat-standby"]}], **settings}
    if continuation:
        router_settings["enable_mid_stream_fallback_continuation"] = True
    return litellm.Router(model_list=model_list(nodes, prefill=continuation), **router_settings)


async def one_stream(
    router: Any, messages: Sequence[Mapping[str, Any]], max_tokens: int | None
) -> dict[str, Any]:
    """One streamed request; every content chunk as (seconds since start, node, text)."""
    started = time.monotonic()
    chunks: list[tuple[float, str | None, str]] = []
    error: str | None = None
    finish: str | None = None
    extra = {"max_tokens": max_tokens} if max_tokens is not None else {}
    try:
        async with asyncio.timeout(REQUEST_CAP_S):
            response = await router.acompletion(model="chat", messages=list(messages), stream=True, **extra)
            async for chunk in response:
                choice = chunk.choices[0] if chunk.choices else None
                text = (choice.delta.content if choice is not None else None) or ""
                finish = (choice.finish_reason if choice is not None else None) or finish
                if text:
                    chunks.append(
                        (time.monotonic() - started, getattr(chunk, "system_fingerprint", None), text)
                    )
    except Exception as exc:  # the sample records it: a broken stream is a result
        error = f"{type(exc).__name__}: {str(exc)[:200]}"
    return {"chunks": chunks, "error": error, "finish_reason": finish, "wall_s": time.monotonic() - started}


async def run_rounds(
    nodes: Mapping[str, str],
    requests: Sequence[Mapping[str, Any]],
    make: Callable[[], Any],
    close: Callable[[Any], Any] | None = None,
) -> list[dict[str, Any]]:
    """Each request on a fresh Router (from ``make``), so every one meets the primary first: a
    Router that cooled the primary down would send the next one straight to a standby, no splice."""
    samples = []
    for request in requests:
        router = await make() if asyncio.iscoroutinefunction(make) else make()
        try:
            sample = await one_stream(router, request["messages"], request.get("max_tokens"))
        finally:
            if close is not None:
                await close(router)
        samples.append({**sample, "index": request["index"]})
    return samples


def has_continuation() -> bool:
    """Whether this interpreter's LiteLLM Router takes the continuation opt-in (1.109+)."""
    import inspect

    import litellm

    return "enable_mid_stream_fallback_continuation" in inspect.signature(litellm.Router).parameters


def main(argv: Sequence[str]) -> int:
    """``CONFIG.json`` holds ``nodes`` (name -> api_base), ``settings`` (Router keyword
    arguments), ``requests`` and ``out`` (a path)."""
    if len(argv) != 1:
        print("usage: _splice_client.py CONFIG.json", file=sys.stderr)
        return 2
    config = json.loads(Path(argv[0]).read_text())
    from importlib.metadata import version

    if not has_continuation():
        reason = f"LiteLLM {version('litellm')} has no enable_mid_stream_fallback_continuation (1.109+)"
        Path(config["out"]).write_text(json.dumps({"unavailable": reason}))
        return 0
    nodes = config["nodes"]
    samples = asyncio.run(
        run_rounds(
            nodes, config["requests"], lambda: make_router(nodes, config["settings"], continuation=True)
        )
    )
    Path(config["out"]).write_text(json.dumps({"litellm": version("litellm"), "samples": samples}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
