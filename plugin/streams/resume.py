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

import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import litellm

from litellm_failover.classify import classify
from litellm_failover.outlier import Outcome
from litellm_failover.streams import chunks as ck
from litellm_failover.streams.answer import AnswerCapture
from litellm_failover.streams.closing import close_later, close_upstream, open_guarded
from litellm_failover.streams.request import StreamRequest
from litellm_failover.streams.stall import Stalled, StallWatch
from litellm_failover.streams.tally import Tally

logger = logging.getLogger("litellm_failover")

if TYPE_CHECKING:
    from litellm.types.utils import Usage

    from litellm_failover.providers.continuation import Continuation
    from litellm_failover.sessions.content import Item
    from litellm_failover.settings import StreamSettings


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
    tally: Tally = field(default_factory=Tally)  # its text against its tokens (``streams.tokens``)


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


class LiveParts(Protocol):
    """Where running parts are registered by deployment (``streams.ejection.LiveStreams``)."""

    def add(
        self, deployment: str, watch: StallWatch, stream: ResumingStream, *, opening: bool = ...
    ) -> Any: ...

    def remove(self, part: Any) -> None: ...


class Resumer(Protocol):
    """What a resuming stream asks of the plugin's side: where and how to go on, and where its
    outcomes go (``litellm_failover.streams.resumer.StreamResumer`` is one). A resumer with a
    ``live`` attribute (``streams.ejection.LiveStreams``, set by the plugin) has its streams'
    parts, and the continuations they are opening, registered there, so an ejection can cut the
    ones waiting on a dead node."""

    @property
    def settings(self) -> StreamSettings: ...

    def chaos_cut(self, iterator: Any, deployment: str | None) -> Any: ...

    def choose(self, request: StreamRequest, failed: set[str], partial: str) -> ResumeTarget | str: ...

    async def open(
        self, request: StreamRequest, target: Any, partial: str, parts: Sequence[Part], resume: int
    ) -> tuple[Any, Part, Continuation, dict[str, Any]]: ...

    def report_break(self, part: Part, broke: StreamBreak) -> None: ...

    def resumed(
        self, stream: ResumingStream, broke: StreamBreak, source: str | None, details: dict[str, Any]
    ) -> None: ...

    def broken(
        self, stream: ResumingStream, broke: StreamBreak, part: Part, partial: str, why: str
    ) -> str: ...

    def answer_wanted(self, stream: ResumingStream) -> bool: ...

    def finished(self, stream: ResumingStream, answer: list[Item] | None, why: str | None) -> None: ...

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
        self._tool_calls = False  # a tool call is being streamed: the stream cannot be continued
        self._sent: list[str] = []  # the text the client has, chunk by chunk
        self._resumer = resumer
        self._live: LiveParts | None = getattr(resumer, "live", None)
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
        sent = self._sent
        finished = usage_sent = False
        skip = ""
        resumed: tuple[StreamBreak, str | None, dict[str, Any]] | None = None  # announced on first chunk
        upstream = self.upstream
        last_chunk_at = time.monotonic()
        watch = StallWatch(timeout)
        capture = AnswerCapture(self.request.choices) if resumer.answer_wanted(self) else None
        choices = ck.Choices(self.request.choices)  # n > 1: openings and finishes by choice
        live = self._live
        entry = None  # this part in ``live`` while it runs
        try:
            while True:
                part = self.parts[-1]
                broke: StreamBreak | None = None
                if live is not None and part.deployment is not None:
                    entry = live.add(part.deployment, watch, self)
                iterator = resumer.chaos_cut(upstream.__aiter__(), part.deployment)
                while True:
                    try:
                        chunk = await watch.next(iterator)
                    except StopAsyncIteration:
                        if not finished:
                            broke = StreamBreak("the stream ended without a finish reason")
                        break
                    except Stalled as stall:
                        # Its own timeout, or its deployment's ejection (``streams.ejection``).
                        cause = stall.cause or f"no chunk for {timeout:g}s (streams.inter_token_timeout_s)"
                        broke = StreamBreak(cause)
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
                        if seen.opening and choices.repeated_opening(chunk):
                            continue  # a continuation's (or LiteLLM's own fallback's) opening
                        stamp.apply(chunk)
                    choices.take(chunk)
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
                    if seen.text:  # the text it generated (a resent tail too), against its count
                        part.tally.chunk(len(seen.text), part.usage)
                    if text:
                        sent.append(text)
                        part.texts.append(text)
                        part.content_chunks += 1
                    self._tool_calls = self._tool_calls or seen.tool_calls
                    if capture is not None and capture.whole(chunk, seen):
                        # The answer is whole, as the client has it: before LiteLLM logs it, and
                        # so before it may redact it (``streams.answer``).
                        resumer.finished(self, capture.answer(sent), capture.failed)
                    finished = finished or reason is not None
                    yield chunk
                if live is not None:
                    live.remove(entry)
                    entry = None
                if resumed is not None:  # the continuation ended before its first chunk
                    resumer.resumed(self, *resumed)
                    resumed = None
                if broke is None or choices.complete(finished):
                    # Complete. A part that broke after its finish reason (every choice's, n > 1)
                    # lost at most the usage chunk: the client asked for one, so it gets one.
                    if self.request.include_usage and not usage_sent and stamp is not None:
                        yield stamp.usage_chunk(await self._total_usage())
                    if self.resumes:
                        resumer.completed(self, "".join(sent), stamp)
                    return
                broke.silent_since = last_chunk_at
                part.deployment = ck.served_by(upstream) or part.deployment  # LiteLLM may have moved it
                close_later(upstream)
                upstream = None
                partial = "".join(sent)
                resumer.report_break(part, broke)
                if self._tool_calls:
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
                watch.reset()  # a limit an ejection set was the old deployment's
                resumed = (broke, part.deployment, details)
        finally:
            watch.close()
            if live is not None:
                live.remove(entry)  # the client left, or the stream ended with an error
            if upstream is not None:
                await close_upstream(upstream)

    def why_kept(self, deployment: str) -> str | None:
        """Why this stream, running on ``deployment``, would not be continued elsewhere if it
        were cut now (None: it would be). An ejection leaves such a stream to its own timeout:
        cutting it would turn a stream that may still finish into an error."""
        settings = self._resumer.settings
        if not settings.resume:
            return "resume_off"
        if self.resumes >= settings.max_resumes:
            return "max_resumes"
        if self._tool_calls or self.request.not_resumable() is not None:
            return "not_resumable"
        chosen = self._resumer.choose(self.request, self.failed | {deployment}, "".join(self._sent))
        return "no_alternative" if isinstance(chosen, str) else None

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
        # The stitched answer's tokens, as the engines counted them (not chunks, ``streams.tokens``).
        tokens_sent = await resumer.generated(self.parts) if limit is not None else 0
        if limit is not None and tokens_sent >= limit[1]:
            return None
        if part.deployment is not None:
            self.failed.add(part.deployment)
        unopened: set[str] = set()  # failed to open this continuation: asked again if nothing else
        while True:
            if not settings.resume:
                self._fail(broke, part, partial, "resuming is off (streams.resume: false)")
            if self.resumes >= settings.max_resumes:
                self._fail(
                    broke, part, partial, f"{self.resumes} continuation(s) already used (streams.max_resumes)"
                )
            chosen = resumer.choose(request, self.failed, partial)
            if isinstance(chosen, str) and unopened:
                # Only deployments that failed to open it are left (slow to a first chunk on a
                # loaded node, a refused connection): one still routable is asked again, within
                # streams.max_resumes, rather than breaking a stream it never cut.
                chosen = resumer.choose(request, self.failed - unopened, partial)
            if isinstance(chosen, str):  # no deployment: the reason
                self._fail(broke, part, partial, chosen)
            target: ResumeTarget = chosen
            self.resumes += 1
            try:
                upstream, opened, continuation, details = await self._open(target, partial)
            except Exception:  # reported by ``open``, or cut at its target's ejection: the next may do better
                self.failed.add(target.deployment_id)
                unopened.add(target.deployment_id)
                continue
            self.parts.append(opened)
            return upstream, continuation.skip_prefix, details

    async def _open(
        self, target: ResumeTarget, partial: str
    ) -> tuple[Any, Part, Continuation, dict[str, Any]]:
        """``resumer.open``, registered as opening on its target until its first chunk: the target's
        ejection for not answering cuts it (``Stalled``) and closes its connection, rather than
        leaving the client to wait out the open's own timeout (``streams.ejection``)."""
        opening = StallWatch(None)  # no limit of its own: ``open`` keeps its timeout
        live = self._live
        entry = None if live is None else live.add(target.deployment_id, opening, self, opening=True)
        try:
            opened = self._resumer.open(self.request, target, partial, self.parts, self.resumes)
            return await open_guarded(opened, opening.wait, lambda result: result[0])
        except Stalled as cut:  # ``open`` was cancelled, so it reported nothing: say why here
            logger.info("continuing a stream on %s was cancelled: %s", target.deployment_id, cut)
            raise
        finally:
            if live is not None:
                live.remove(entry)

    def _fail(self, broke: StreamBreak, part: Part, partial: str, why: str) -> NoReturn:
        message = self._resumer.broken(self, broke, part, partial, why)
        raise StreamBrokenError(message, model=self.request.group) from broke.error

    async def _total_usage(self) -> Usage:
        return await self._resumer.total_usage(self.parts)


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
