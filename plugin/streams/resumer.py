"""``StreamResumer``: the plugin's side of mid-stream failover.

``ResumingStream`` decides *when* a stream broke; this decides *where and how* it goes on, with
the request path's state: the routing table picks the next deployment (never one that failed
this stream or this request: the request book's exclusions plus the stream's own), the target's
provider adapter builds the continuation, and the Router sends it. Events go to the core's
``emit``; outcomes and the stitched answer go back through ``StreamOutcomes`` (the plugin's
request path entry points).

Two entry points wrap a stream:

- Router (``attach()``): ``install`` wraps the Router instance's ``acompletion``. LiteLLM offers
  SDK callers no hook that can replace a stream (``async_post_call_success_deployment_hook`` is
  not called for streams, the proxy's iterator hook only runs in the proxy), so the instance
  attribute is the one place; ``uninstall`` (``plugin.detach()``) puts the method back.
- Proxy: the handler's ``async_post_call_streaming_iterator_hook`` hands the proxy's chunk
  iterator to ``proxy_stream``.

A continuation is sent to one named deployment (``model=<deployment id>``, no retries, no
fallbacks): the plugin has already chosen it, and a retry of a dead target must go elsewhere,
which is this module's loop, not LiteLLM's.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import litellm
from litellm.types.utils import Usage

from litellm_failover.chaos.effects import cut_after
from litellm_failover.classify import classify
from litellm_failover.events import EventType, FailoverEvent
from litellm_failover.outlier import Outcome
from litellm_failover.providers.continuation import Continuation
from litellm_failover.streams import chunks as ck
from litellm_failover.streams.request import StreamRequest
from litellm_failover.streams.resume import Part, ResumingStream, StreamBreak, describe_error
from litellm_failover.streams.tally import Tally
from litellm_failover.streams.targets import Target, target_of
from litellm_failover.streams.tokens import TokenCounter, counted_points, with_running_usage

if TYPE_CHECKING:
    from litellm_failover.chaos import ChaosInjector
    from litellm_failover.deployments import DeploymentSpec
    from litellm_failover.requests import RequestBook
    from litellm_failover.routing_table import RoutingTable
    from litellm_failover.sessions.content import Item
    from litellm_failover.settings import StreamSettings

logger = logging.getLogger("litellm_failover")


class StreamOutcomes(Protocol):
    """Where a stream's outcomes go: the request path's entry points (``FailoverPlugin`` is one)."""

    def attempt_failed(
        self, deployment_id: str, outcome: Outcome, request_keys: tuple[str, ...], error: str
    ) -> None: ...

    def answer_wanted(self, request_keys: tuple[str, ...]) -> bool: ...

    def answer_streamed(
        self, request_keys: tuple[str, ...], answer: Sequence[Item] | None, why: str | None
    ) -> None: ...

    async def session_answered(
        self, deployment_id: str, kwargs: Mapping[str, Any], response: Any
    ) -> None: ...


Routed = Callable[[str], "tuple[RoutingTable, Sequence[str]] | None"]
"""A group's current routing table and member ids, None for a group the plugin does not route
(``RequestPath.routed``)."""


class StreamResumer:
    def __init__(
        self,
        settings: StreamSettings,
        router: Any,
        *,
        specs: Mapping[str, DeploymentSpec],
        routed: Routed,
        book: RequestBook,
        outcomes: StreamOutcomes,
        chaos: ChaosInjector,
        emit: Callable[[FailoverEvent], None],
        instance_id: str,
        redact: Callable[[str], str],
    ) -> None:
        self.settings = settings
        self._router = router
        self._call = router.acompletion  # the Router's own, never the wrapped one
        self._routed = routed
        self._book = book
        self._outcomes = outcomes
        self._chaos = chaos
        self._emit = emit
        self._instance_id = instance_id
        self._redact = redact
        self._installed: Any = None  # the Router's wrapped acompletion, while installed
        self._tasks: set[asyncio.Task[Any]] = set()
        self._groups = {dep_id: spec.group for dep_id, spec in specs.items()}
        self._tokens = TokenCounter({dep_id: spec.model for dep_id, spec in specs.items()})
        self._targets = {dep_id: target_of(dep_id, spec) for dep_id, spec in specs.items()}

    def track(self, specs: Mapping[str, DeploymentSpec], removed: Iterable[str] = ()) -> None:
        """Deployments added or changed in LiteLLM at run time can continue streams; removed ones
        cannot."""
        removed = list(removed)
        for dep_id in removed:
            self._groups.pop(dep_id, None)
            self._targets.pop(dep_id, None)
        self._tokens.track({dep_id: spec.model for dep_id, spec in specs.items()}, removed)
        self._groups.update({dep_id: spec.group for dep_id, spec in specs.items()})
        self._targets.update({dep_id: target_of(dep_id, spec) for dep_id, spec in specs.items()})

    # -- wiring ---------------------------------------------------------------------------

    def install(self) -> None:
        """Make ``router.acompletion(stream=True)`` return resuming streams (the SDK path)."""
        if self._installed is not None:
            return
        call = self._call

        async def acompletion(model: str, messages: list[Any], stream: bool = False, **kwargs: Any) -> Any:
            if stream is not True:  # a non-boolean ``stream`` goes to the backend as sent, to refuse
                return await call(model=model, messages=messages, stream=stream, **kwargs)
            # The stream's request is known to the request book by this key (``requests.identity``).
            kwargs.setdefault("litellm_trace_id", str(uuid.uuid4()))
            response = await call(model=model, messages=messages, stream=True, **kwargs)
            return self.wrap(response, model, messages, kwargs)

        self._router.acompletion = acompletion  # type: ignore[method-assign]
        self._installed = acompletion

    def uninstall(self) -> None:
        if self._installed is not None and vars(self._router).get("acompletion") is self._installed:
            del self._router.acompletion  # the class's method shows through again
        self._installed = None

    def wrap(self, response: Any, group: Any, messages: Any, kwargs: Mapping[str, Any]) -> Any:
        """A resuming stream over ``response``, or ``response`` itself when it is not a chat
        stream of a group this plugin routes."""
        if (
            not isinstance(group, str)
            or self._routed(group) is None
            or not isinstance(messages, Sequence)
            or not hasattr(response, "__aiter__")
        ):
            return response
        request = StreamRequest.from_kwargs(group, messages, kwargs)
        return ResumingStream(self, response, request, deployment=_picked(kwargs))

    async def proxy_stream(self, response: Any, request_data: Mapping[str, Any]) -> AsyncIterator[Any]:
        """The proxy's chunk iterator, resuming (``async_post_call_streaming_iterator_hook``)."""
        stream = self.wrap(response, request_data.get("model"), request_data.get("messages"), request_data)
        if stream is response:
            async for chunk in response:
                yield chunk
            return
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()

    # -- what a resuming stream asks ------------------------------------------------------

    def choose(self, request: StreamRequest, failed: set[str], partial: str) -> Target | str:
        """The deployment the stream continues on, or why there is none. A deployment that can
        continue exactly goes first; one that cannot only under ``inexact_continuation``."""
        routed = self._routed(request.group)
        if routed is None:
            return f"group {request.group!r} is not routed by the plugin"
        table, members = routed
        book = self._book
        exclude = frozenset(failed) | book.excluded(book.resolve(request.request_keys))
        inexact = frozenset(
            dep_id for dep_id in members if partial and (request.structured or not self._target(dep_id).exact)
        )
        chosen = table.pick(exclude | inexact)
        if chosen is None and inexact - exclude:
            if self.settings.inexact_continuation == "best_effort":
                chosen = table.pick(exclude)
            else:
                kinds = sorted({str(self._target(d).kind) for d in inexact - exclude})
                return (
                    f"the deployments left ({', '.join(kinds)}) cannot continue it exactly "
                    "and streams.inexact_continuation is 'error'"
                )
        if chosen is None:
            return f"no other healthy deployment in group {request.group!r}"
        return self._target(chosen)

    def _target(self, deployment_id: str) -> Target:
        return self._targets.get(deployment_id) or Target(deployment_id, None, None)

    async def open(
        self, request: StreamRequest, target: Target, partial: str, parts: Sequence[Part], resume: int
    ) -> tuple[Any, Part, Continuation, dict[str, Any]]:
        """Start the continuation on ``target``; its first chunk is already read when this
        returns (the Router reads it ahead), and the part it is, with the ``stream_resumed``
        event's details. A failure is reported, then raised.

        A cut-back rule continues from a point where the tokens before are known (the engine's
        count at a chunk boundary, ``streams.tokens``), so the continuation's ``max_tokens`` is
        the client's limit less exactly those: the tail it writes again counts once."""
        continuation = target.continuation(request, partial, counted_points(parts))
        kept = len(partial) - len(continuation.skip_prefix)
        tokens = self._tokens
        base = await tokens.tokens_at(parts, kept) if kept else 0
        broken = parts[-1]
        generated, source = await tokens.counted(broken, partial[broken.tally.start : broken.tally.reach])
        details = {
            "exact": continuation.exact,
            "kind": target.kind,
            "chars_sent": len(partial),
            "chars_kept": kept,
            "chars_regenerated": len(continuation.skip_prefix),
            "tokens_generated": generated,
            "tokens_source": source,
            "tokens_kept": base,
        }
        key = f"failover-resume-{uuid.uuid4().hex}"
        kwargs = request.continuation_kwargs(continuation.messages, continuation.extra_body, base)
        kwargs.update(
            model=target.deployment_id,
            stream=True,
            num_retries=0,
            disable_fallbacks=True,
            litellm_trace_id=key,
            metadata={"failover_resume": {"request_id": request.request_id, "resume": resume}},
        )
        self._book.record_pick(key, target.deployment_id)
        timeout = self.settings.inter_token_timeout_s
        try:
            async with asyncio.timeout(timeout):
                stream = await self._call(**kwargs)
        except Exception as exc:
            stalled = isinstance(exc, TimeoutError)
            cause = f"no first chunk within {timeout:g}s" if stalled else describe_error(exc)
            outcome = Outcome.TIMEOUT if stalled else classify(exc)
            self.report_break(Part(target.deployment_id, (key,), []), StreamBreak(cause, outcome, exc))
            logger.info("continuing a stream on %s failed: %s", target.deployment_id, self._redact(cause))
            raise
        part = Part(target.deployment_id, (key,), continuation.messages, tally=Tally(kept, base))
        return stream, part, continuation, details

    def chaos_cut(self, iterator: Any, deployment: str | None) -> Any:
        """Fault injection (``chaos inject --kind stream_cut``): a cut drawn for this part ends it
        after N chunks as a dropped connection would; otherwise ``iterator`` itself."""
        chaos = self._chaos
        fault = chaos.draw(deployment, "stream_cut") if chaos.armed else None
        return iterator if fault is None else cut_after(iterator, fault)

    def report_break(self, part: Part, broke: StreamBreak) -> None:
        """The deployment cut this stream: an outcome for outlier detection (counted once per
        request, whichever of this and LiteLLM's failure log reports it first)."""
        if part.deployment is None:
            return
        logger.info("stream broke on %s: %s", part.deployment, self._redact(broke.cause))
        self._outcomes.attempt_failed(part.deployment, broke.outcome, part.request_keys, broke.cause)

    def resumed(
        self, stream: ResumingStream, broke: StreamBreak, source: str | None, details: dict[str, Any]
    ) -> None:
        """The continuation's first chunk is here: the ``stream_resumed`` event. ``gap_ms`` is the
        silence the client saw (from its last chunk before the break to this one, an inter-token
        timeout included); ``resume_ms`` the part of it spent continuing, after the break was seen."""
        target = stream.parts[-1].deployment
        now = time.monotonic()
        since = broke.silent_since if broke.silent_since is not None else broke.at
        chars = details["chars_sent"]
        self._emit(
            FailoverEvent(
                event_type=EventType.STREAM_RESUMED.value,
                model_group=stream.request.group,
                deployment_id=target,
                from_deployment=source,
                to_deployment=target,
                reason=f"stream broke on {source} after {chars} characters; continued on {target}",
                request_id=stream.request.request_id,
                instance_id=self._instance_id,
                details={
                    "from": source,
                    "to": target,
                    **details,
                    "gap_ms": round((now - since) * 1000, 1),
                    "resume_ms": round((now - broke.at) * 1000, 1),
                    "resume": stream.resumes,
                    "cause": self._redact(broke.cause),
                },
            )
        )

    def broken(self, stream: ResumingStream, broke: StreamBreak, part: Part, partial: str, why: str) -> str:
        """Nothing can continue the stream: the ``stream_broken`` event and the client's message."""
        cause = self._redact(broke.cause)
        message = (
            f"the stream broke on {part.deployment} after {len(partial)} characters ({cause}) "
            f"and could not be continued: {why}"
        )
        self._emit(
            FailoverEvent(
                event_type=EventType.STREAM_BROKEN.value,
                model_group=stream.request.group,
                deployment_id=part.deployment,
                from_deployment=part.deployment,
                reason=message,
                request_id=stream.request.request_id,
                instance_id=self._instance_id,
                details={"chars_sent": len(partial), "resumes": stream.resumes, "cause": cause, "why": why},
            )
        )
        return message

    def answer_wanted(self, stream: ResumingStream) -> bool:
        """Whether the stream's answer is to be assembled: only for a request whose session waits
        for it (tool calls and ``n`` > 1 choices are assembled chunk by chunk, ``streams.answer``)."""
        return self._outcomes.answer_wanted(stream.request.request_keys)

    def finished(self, stream: ResumingStream, answer: list[Item] | None, why: str | None) -> None:
        """The stream's answer is complete: as the client got it, for the request's session
        (LiteLLM's logged answer may have its text redacted, ``RequestPath.answer_streamed``);
        None when it could not be assembled (``why``, ``streams.answer``)."""
        self._outcomes.answer_streamed(stream.request.request_keys, answer, why)

    def completed(self, stream: ResumingStream, text: str, stamp: ck.Stamp | None) -> None:
        """A resumed stream finished: the request is done for the request book, and the session
        (if any) records the stitched answer, as it would an uninterrupted one."""
        request = stream.request
        self._book.finish(self._book.resolve(request.request_keys))
        final = stream.parts[-1].deployment
        if final is None or stamp is None:
            return
        answer = litellm.ModelResponse(
            id=stamp.id,
            created=stamp.created,
            model=stamp.model,
            choices=[
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
        )
        kwargs = {
            "litellm_call_id": request.call_id,
            "litellm_trace_id": request.trace_id,
            "call_type": "acompletion",
        }
        task = asyncio.get_running_loop().create_task(self._outcomes.session_answered(final, kwargs, answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def ask_running_usage(self, deployment_id: str | None, kwargs: dict[str, Any]) -> bool:
        """A stream's attempt on ``deployment_id`` (the deployment hook's kwargs): ask the engine
        for its running token count when its kind has one and the stream may need continuing
        (``streams.tokens``). True when ``kwargs`` changed."""
        target = self._targets.get(deployment_id or "")
        options = target.running_usage if target is not None else None
        if not options or not self.settings.resume:
            return False
        group = self._groups.get(target.deployment_id)
        if group is None or self._routed(group) is None:
            return False  # its streams are not the plugin's: the client would get the usage
        return with_running_usage(kwargs, options)

    async def generated(self, parts: Sequence[Part]) -> int:
        """Completion tokens of the stitched answer so far, by the engines' counts or the estimate."""
        return await self._tokens.answer_tokens(parts)

    async def total_usage(self, parts: Sequence[Part]) -> Usage:
        """The client's one usage: the first part's prompt and the stitched answer's completion."""
        return await self._tokens.total_usage(parts)


def _picked(kwargs: Mapping[str, Any]) -> str | None:
    """The deployment the proxy's Router picked, from the request it routed (``metadata.model_info``),
    for when the stream itself does not say (another callback's iterator wraps it)."""
    metadata = kwargs.get("metadata")
    info = metadata.get("model_info") if isinstance(metadata, Mapping) else None
    picked = info.get("id") if isinstance(info, Mapping) else None
    return str(picked) if picked else None
