"""``ResumingStream``: one client stream that survives the deployments under it breaking.

It passes the upstream's chunks through and watches for a break: the upstream raising, ending
without a finish reason (including LiteLLM's made-up ``stop`` after a clean close, see
``chunks.provider_finished``), or sending nothing for ``streams.inter_token_timeout_s``. On a
break it reports the deployment as a cut stream (it counts toward ejection), asks the resumer
for another healthy deployment (never one that failed this stream), and goes on with that
deployment's continuation of exactly the text the client already has. The client sees one
stream: the first chunk's id on every chunk, no repeated and no missing text, and one final
usage chunk summed over the parts.

What it never does is end quietly after a break: if nothing can continue (no deployment left,
``max_resumes`` used, resuming off, an answer that cannot be continued), the stream ends with
``StreamBrokenError``, which the proxy turns into an error event the client's SDK raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import litellm

from litellm_failover.classify import classify
from litellm_failover.outlier import Outcome
from litellm_failover.streams import chunks as ck
from litellm_failover.streams.request import StreamRequest
from litellm_failover.streams.stall import Stalled, StallWatch

if TYPE_CHECKING:
    from litellm.types.utils import Usage

    from litellm_failover.providers.continuation import Continuation
    from litellm_failover.settings import StreamSettings

_CLOSE_TIMEOUT_S = 2.0


class StreamBrokenError(litellm.ServiceUnavailableError):
    """A stream broke and could not be continued. Raised to the client in place of a silent end."""

    def __init__(
        self, message: str, llm_provider: str = "litellm_failover", model: str | None = None, **kwargs: Any
    ) -> None:
        # LiteLLM's own signature: code that rebuilds an exception from its class still can.
        super().__init__(message=message, llm_provider=llm_provider, model=model or "", **kwargs)


@dataclass(slots=True)
class Part:
    """One upstream stream of the client's stream: who served it and what it cost."""

    deployment: str | None
    request_keys: tuple[str, ...]
    messages: list[dict[str, Any]]
    content_chunks: int = 0
    usage: Usage | None = None  # the engine's last count: running (vLLM, SGLang) or final
    texts: list[str] = field(default_factory=list)  # what the client got of this part


@dataclass(slots=True)
class StreamBreak:
    """Why an upstream stopped before its answer was complete; ``at`` is when that was seen,
    ``silent_since`` when the client's last chunk came (for a stall, a timeout earlier)."""

    cause: str
    outcome: Outcome = Outcome.STREAM_CUT
    error: BaseException | None = None
    at: float = field(default_factory=time.monotonic)
    silent_since: float | None = None


class ResumeTarget(Protocol):
    """A deployment the stream may continue on, as the resumer chose it."""

    @property
    def deployment_id(self) -> str: ...

    @property
    def kind(self) -> str | None: ...


class Resumer(Protocol):
    """What a resuming stream asks of the plugin's side: where and how to go on, and where its
    outcomes go (``litellm_failover.streams.resumer.StreamResumer`` is one)."""

    @property
    def settings(self) -> StreamSettings: ...

    def chaos_cut(self, iterator: Any, deployment: str | None) -> Any: ...

    def choose(self, request: StreamRequest, failed: set[str], partial: str) -> ResumeTarget | str: ...

    async def open(
        self, request: StreamRequest, target: Any, partial: str, tokens_sent: int, resume: int
    ) -> tuple[Any, tuple[str, ...], Continuation]: ...

    def report_break(self, part: Part, broke: StreamBreak) -> None: ...

    def resumed(
        self, stream: ResumingStream, broke: StreamBreak, source: str | None, details: dict[str, Any]
    ) -> None: ...

    def broken(
        self, stream: ResumingStream, broke: StreamBreak, part: Part, partial: str, why: str
    ) -> str: ...

    def finished(self, stream: ResumingStream, text: str) -> None: ...

    def completed(self, stream: ResumingStream, text: str, stamp: ck.Stamp | None) -> None: ...

    async def total_usage(self, parts: Sequence[Part]) -> Usage: ...

    async def generated(self, parts: Sequence[Part]) -> int: ...


class ResumingStream:
    """An async iterator of chunks over a sequence of upstream LiteLLM streams.

    Attribute reads it does not answer itself (``_hidden_params``, ``model``, ...) go to the
    upstream serving right now, so code that inspects a LiteLLM stream keeps working; it is not
    a ``CustomStreamWrapper`` itself.
    """

    def __init__(
        self, resumer: Resumer, upstream: Any, request: StreamRequest, deployment: str | None = None
    ) -> None:
        self.upstream = upstream
        self.request = request
        self.resumes = 0
        first = ck.served_by(upstream) or deployment
        self.parts: list[Part] = [Part(first, request.request_keys, request.messages)]
        self.failed: set[str] = set()  # every deployment that failed this stream: never asked again
        self._resumer = resumer
        self._run_gen = self._run()

    def __getattr__(self, name: str) -> Any:
        if name == "upstream":  # not set yet: never recurse
            raise AttributeError(name)
        return getattr(self.upstream, name)

    def __aiter__(self) -> ResumingStream:
        return self

    async def __anext__(self) -> Any:
        return await self._run_gen.__anext__()

    async def aclose(self) -> None:
        await self._run_gen.aclose()

    # -- the stream -----------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[Any]:
        resumer = self._resumer
        timeout = resumer.settings.inter_token_timeout_s
        stamp: ck.Stamp | None = None
        sent: list[str] = []
        finished = tool_calls = usage_sent = False
        skip = ""
        resumed: tuple[StreamBreak, str | None, dict[str, Any]] | None = None  # announced on first chunk
        upstream = self.upstream
        last_chunk_at = time.monotonic()
        watch = StallWatch(timeout)
        try:
            while True:
                part = self.parts[-1]
                broke: StreamBreak | None = None
                iterator = resumer.chaos_cut(upstream.__aiter__(), part.deployment)
                while True:
                    try:
                        chunk = await watch.next(iterator)
                    except StopAsyncIteration:
                        if not finished:
                            broke = StreamBreak("the stream ended without a finish reason")
                        break
                    except Stalled:
                        broke = StreamBreak(f"no chunk for {timeout:g}s (streams.inter_token_timeout_s)")
                        break
                    except Exception as exc:
                        broke = StreamBreak(describe_error(exc), classify(exc, streaming_started=True), exc)
                        break
                    last_chunk_at = time.monotonic()
                    if resumed is not None:
                        resumer.resumed(self, *resumed)
                        resumed = None
                    seen = ck.read(chunk)
                    if stamp is None:
                        stamp = ck.Stamp.of(chunk)
                    else:
                        if seen.opening:
                            continue  # a continuation's (or LiteLLM's own fallback's) opening
                        stamp.apply(chunk)
                    text = seen.text
                    if skip and text:
                        skip = ck.strip_prefix(chunk, skip)
                        text = ck.delta_text(chunk)
                    reason = seen.finish_reason
                    if reason and not finished and not self._provider_finished(upstream, part, chunk):
                        broke = StreamBreak("the stream ended without a finish reason")
                        break
                    if seen.final_usage:
                        part.usage = seen.usage
                        if not self.request.include_usage:
                            continue  # the plugin asked for it (to count tokens), not the client
                        if len(self.parts) > 1:
                            chunk.usage = await self._total_usage()
                        usage_sent = True
                    else:
                        # The engine's running count, where it sends one (``streams.tokens``).
                        if seen.usage is not None:
                            part.usage = seen.usage
                            ck.drop_usage(chunk)
                        else:
                            part.usage = ck.recorded_usage(upstream) or part.usage
                    if text:
                        sent.append(text)
                        part.texts.append(text)
                        part.content_chunks += 1
                    tool_calls = tool_calls or seen.tool_calls
                    if reason is not None and not finished and not tool_calls and self.request.choices == 1:
                        # The answer is whole, as the client has it (before LiteLLM logs it, and
                        # so before it may redact it). Tool calls are not assembled here: their
                        # answer is LiteLLM's logged one.
                        resumer.finished(self, "".join(sent))
                    finished = finished or reason is not None
                    yield chunk
                if resumed is not None:  # the continuation ended before its first chunk
                    resumer.resumed(self, *resumed)
                    resumed = None
                if broke is None or finished:
                    # Complete. A part that broke after its finish reason lost at most the usage
                    # chunk: the client asked for one, so it gets one.
                    if self.request.include_usage and not usage_sent and stamp is not None:
                        yield stamp.usage_chunk(await self._total_usage())
                    if self.resumes:
                        resumer.completed(self, "".join(sent), stamp)
                    return
                broke.silent_since = last_chunk_at
                part.deployment = ck.served_by(upstream) or part.deployment  # LiteLLM may have moved it
                _close_later(upstream)
                upstream = None
                partial = "".join(sent)
                resumer.report_break(part, broke)
                if tool_calls:
                    self._fail(broke, part, partial, "a tool call was being streamed; it cannot be continued")
                opened = await self._continue(broke, part, partial)
                if opened is None:  # the answer had already reached max_tokens
                    if stamp is not None:
                        yield stamp.finish_chunk("length")
                        if self.request.include_usage:
                            yield stamp.usage_chunk(await self._total_usage())
                    if self.resumes:
                        resumer.completed(self, partial, stamp)
                    return
                upstream, skip, details = opened
                self.upstream = upstream
                resumed = (broke, part.deployment, details)
        finally:
            watch.close()
            if upstream is not None:
                await _close(upstream)

    def _provider_finished(self, upstream: Any, part: Part, chunk: Any) -> bool:
        if ck.served_by(upstream) != part.deployment:
            # LiteLLM's own pre-content fallback moved this upstream to another deployment; its
            # chunk record is the first one's, so it cannot say who finished. Taken at its word.
            return True
        return ck.provider_finished(upstream, chunk)

    async def _continue(
        self, broke: StreamBreak, part: Part, partial: str
    ) -> tuple[Any, str, dict[str, Any]] | None:
        """Open the next part, or raise ``StreamBrokenError``; None when nothing is left to ask."""
        resumer = self._resumer
        settings = resumer.settings
        request = self.request
        why_not = request.not_resumable()
        if why_not is not None:
            self._fail(broke, part, partial, why_not)
        limit = request.max_tokens()
        # Tokens as the engines counted them (chunks do not count tokens, ``streams.tokens``).
        tokens_sent = await resumer.generated(self.parts) if limit is not None else 0
        if limit is not None and tokens_sent >= limit[1]:
            return None
        if part.deployment is not None:
            self.failed.add(part.deployment)
        while True:
            if not settings.resume:
                self._fail(broke, part, partial, "resuming is off (streams.resume: false)")
            if self.resumes >= settings.max_resumes:
                self._fail(
                    broke, part, partial, f"{self.resumes} continuation(s) already used (streams.max_resumes)"
                )
            chosen = resumer.choose(request, self.failed, partial)
            if isinstance(chosen, str):  # no deployment: the reason
                self._fail(broke, part, partial, chosen)
            target: ResumeTarget = chosen
            self.resumes += 1
            try:
                upstream, keys, continuation = await resumer.open(
                    request, target, partial, tokens_sent, self.resumes
                )
            except Exception:  # reported by ``open``; the next deployment may do better
                self.failed.add(target.deployment_id)
                continue
            self.parts.append(Part(target.deployment_id, keys, continuation.messages))
            details = {"exact": continuation.exact, "kind": target.kind, "chars_sent": len(partial)}
            return upstream, continuation.skip_prefix, details

    def _fail(self, broke: StreamBreak, part: Part, partial: str, why: str) -> NoReturn:
        message = self._resumer.broken(self, broke, part, partial, why)
        raise StreamBrokenError(message, model=self.request.group) from broke.error

    async def _total_usage(self) -> Usage:
        return await self._resumer.total_usage(self.parts)


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


_closing: set[asyncio.Task[None]] = set()


async def _close(stream: Any) -> None:
    """Close an upstream (its HTTP connection goes back or away); bounded, never raising."""
    close = getattr(stream, "aclose", None)
    if close is None:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):
            await close()


def _close_later(stream: Any) -> None:
    """Close a broken upstream off the client's path: the continuation need not wait for it."""
    task = asyncio.get_running_loop().create_task(_close(stream))
    _closing.add(task)
    task.add_done_callback(_closing.discard)
