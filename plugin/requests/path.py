"""``RequestPath``: what happens to one client request, from its pick to its answer.

- ``route`` (hot path, synchronous, no I/O): pick the attempt's deployment from the group's
  routing table, never one that failed this request, with the session's affinity, inside what
  LiteLLM narrows the pick to afterwards (``requests.narrowing``: an order fallback's tier); the
  pick and the attempt go into the request's record (``RequestBook``). A pick the plugin cannot
  place (a ``model`` that is not the offered deployments' group) is LiteLLM's.
- ``prepare_stateful``: before ``route`` for a Responses API request whose
  ``previous_response_id`` lives on a dead deployment (the one bounded wait, in sessions).
- ``attempt_failed`` / ``request_succeeded``: the outcome hooks. Each ends the attempt in flight,
  then, for a request this plugin routed, feeds outlier detection (a failure counted once per
  request and deployment; a client error, the request's fault, is neither counted nor excluded)
  or records the success and a ``request_failover`` event when the request was served elsewhere
  than first picked.
- ``answer_arrived`` / ``answer_streamed``: the answer as the client gets it, captured for the
  request's session (only while one waits for it) before LiteLLM's logging may redact it.
- ``session_answered``: a request's final answer, for its session, with the captured answer's
  text preferred over the logged one's.

The core is read in one place, ``routed``: the group's current table and its member ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from litellm_failover.litellm_compat.offers import OfferMatcher
from litellm_failover.outlier import Outcome
from litellm_failover.requests.book import RequestBook
from litellm_failover.requests.identity import hook_keys, route_key
from litellm_failover.requests.narrowing import narrowing
from litellm_failover.routing_table import RoutingTable
from litellm_failover.sessions.answers import answer_items
from litellm_failover.sessions.content import Item
from litellm_failover.snapshot import CoreSnapshot

logger = logging.getLogger("litellm_failover")

_NOTHING: frozenset[str] = frozenset()


class CoreRecorder(Protocol):
    """What the request path needs of the core: its published snapshot, and where outcomes go."""

    @property
    def snapshot(self) -> CoreSnapshot: ...

    def record_failure(
        self, deployment_id: str, outcome: Outcome, *, request_id: str | None = None, error: str = ""
    ) -> None: ...

    def record_success(self, deployment_id: str, latency_s: float | None) -> None: ...

    def request_served_elsewhere(
        self, group: str, first: str, served: str, request_id: str | None
    ) -> None: ...


class RoutedSession(Protocol):
    """The part of a ``SessionRequest`` routing reads."""

    rebuilt_from: str | None


class Sessions(Protocol):
    """What the request path asks of the sessions (``SessionManager``)."""

    def track(
        self, group: str, kwargs: Mapping[str, Any], messages: Any, key: str | None
    ) -> RoutedSession | None: ...

    def preferred(
        self, request: Any, table: RoutingTable, exclude: frozenset[str], offered: Mapping[str, Any] | None
    ) -> str | None: ...

    def picked(self, request: Any, deployment_id: str) -> None: ...

    async def prepare_stateful(
        self,
        group: str,
        kwargs: dict[str, Any],
        messages: Any,
        table: RoutingTable,
        exclude: frozenset[str],
        offered: Mapping[str, Any] | None,
    ) -> Any: ...

    async def answered(
        self, deployment_id: str, kwargs: Mapping[str, Any], response: Any, answer: Any = None
    ) -> None: ...


class AttemptTracker(Protocol):
    """Who else follows attempts (the rescue, ``litellm_failover.rescue``): told of each routed
    attempt from inside its task, and of its first end signal (a stream's success carries its
    time to first token)."""

    def started(self, request_id: str, deployment_id: str, group: str, stream: bool) -> None: ...

    def ended(
        self, request_keys: tuple[str, ...], deployment_id: str, first_token_s: float | None
    ) -> None: ...


class RequestPath:
    def __init__(
        self,
        book: RequestBook,
        core: CoreRecorder,
        deployments: Mapping[str, dict],
        group_of: Mapping[str, str],
        sessions: Sessions,
        *,
        on_failure: Callable[[str, Outcome], None],
        redact: Callable[[str], str],
        tracker: AttemptTracker | None = None,
    ) -> None:
        self.book = book
        self.tracker = tracker
        self._core = core
        self._deployments = deployments  # LiteLLM's own deployment dicts, by id
        self.offers = OfferMatcher(deployments)  # which offered deployments are this plugin's
        self._group_of = group_of
        self._sessions = sessions
        self._on_failure = on_failure  # switching: errors during a ramp step abort it
        self._redact = redact

    def routed(self, group: str) -> tuple[RoutingTable, Sequence[str]] | None:
        """The group's current routing table and member ids; None for a group the plugin does
        not route. The one place the request path reads the core."""
        snapshot = self._core.snapshot  # one immutable view: the table and members agree
        table = snapshot.tables.get(group)
        return None if table is None else (table, snapshot.groups[group])

    # -- hot path -------------------------------------------------------------------------

    def _offered(self, group: str, healthy: list[dict]) -> tuple[RoutingTable, Sequence[str]] | None:
        """The group's table and members when this pick is the plugin's: its Router, and
        deployments it has read, of the group ``model`` names. Otherwise (LiteLLM hands every
        Router's picks to every callback; a deployment added at run time; a ``model`` that is
        not the offered deployments' group, such as None or a wildcard's name) None: LiteLLM
        decides, among what it offered."""
        snapshot = self._core.snapshot  # ``routed`` inline (every pick): one immutable view
        table = snapshot.tables.get(group)
        offered = healthy[0]
        first = str(offered["model_info"]["id"])
        if table is None:
            return None
        # LiteLLM's own dict (1.108.7) is the plugin's by identity: ``owns`` without the call.
        if self._deployments.get(first) is not offered and not self.offers.owns(offered):
            return None
        if self._group_of.get(first) != group:
            # A table of another group cannot place this pick: it would answer nothing.
            logger.debug(
                "pick for model %r offered %s of group %r: left to LiteLLM",
                group,
                first,
                self._group_of.get(first),
            )
            return None
        return table, snapshot.groups[group]

    @staticmethod
    def _available(members: Sequence[str], healthy: list[dict]) -> dict[str, dict] | None:
        """None when LiteLLM filtered nothing out: pick straight from the table, no scan of the list.
        ``members``: the group's, from the same snapshot as its table (they change at run time)."""
        if len(healthy) == len(members):
            return None
        return {str(d["model_info"]["id"]): d for d in healthy}

    def _narrowed(
        self, group: str, members: Sequence[str], healthy: list[dict], request_kwargs: Mapping[str, Any]
    ) -> tuple[dict[str, dict] | None, dict[str, dict] | None, bool] | None:
        """What this pick may take: (the offer, LiteLLM's preference applied, or None for the
        whole group; the offer again without the preference, if it dropped any; whether LiteLLM
        narrows the pick at all). None when LiteLLM's narrowing leaves nothing of the offer.

        LiteLLM narrows the answer after the filters (an order fallback's tier, ...): a pick
        outside that would leave LiteLLM nothing. See ``requests.narrowing``."""
        available = self._available(members, healthy)
        narrow = narrowing(request_kwargs)
        if narrow is None:
            return available, None, False
        offered = available if available is not None else {str(d["model_info"]["id"]): d for d in healthy}
        kept = {i: d for i, d in offered.items() if narrow.keeps(i, d)}
        if not kept:
            logger.debug("pick for %r: LiteLLM's %s leaves nothing offered", group, narrow.describe())
            return None
        preferred = {i: d for i, d in kept.items() if i not in narrow.skipped} or kept
        return preferred, (kept if len(preferred) < len(kept) else None), True

    def route(
        self,
        group: str,
        healthy: list[dict],
        request_kwargs: Mapping[str, Any],
        messages: Any = None,
    ) -> list[dict]:
        """Pick this attempt's deployment; raises ``SessionIdError`` for a bad session id."""
        routed = self._offered(group, healthy)
        if routed is None:
            return healthy
        table, members = routed
        request_id = route_key(request_kwargs)
        exclude = self.book.excluded(request_id)
        if len(healthy) == len(members) and narrowing(request_kwargs) is None:
            available, fallback, narrowed = None, None, False  # the usual pick: ``_narrowed``'s first answer
        else:
            offer = self._narrowed(group, members, healthy, request_kwargs)
            if offer is None:
                return healthy  # LiteLLM finds nothing whatever the answer: its own error stands
            available, fallback, narrowed = offer
        chosen = None
        never = _NOTHING  # out even when every other one failed the request
        session = self._sessions.track(group, request_kwargs, messages, request_id)
        if session is not None:
            if session.rebuilt_from is not None:
                never = frozenset({session.rebuilt_from})
                # Rebuilt for another node: never its dead creator, even if LiteLLM's own
                # previous_response_id check narrowed the offer down to it.
                exclude = exclude | {session.rebuilt_from}
                if not narrowed and available is not None and set(available) <= {session.rebuilt_from}:
                    available = None
            chosen = self._sessions.preferred(session, table, exclude, available)
        offers = (available,) if fallback is None else (available, fallback)
        if chosen is None:
            chosen = table.pick(exclude) if available is None else _pick(table, members, exclude, available)
        if chosen is None and fallback is not None:
            available = fallback  # a preference only: a deployment LiteLLM would skip beats none
            chosen = _pick(table, members, exclude, available)
        if chosen is None:
            again = self._again(request_id, table, members, exclude, offers, never)
            if again is None:
                return []  # nothing this pick may take is routable: LiteLLM's own error stands
            chosen, available = again
        deployment = self._deployments.get(chosen) if available is None else available.get(chosen)
        if deployment is None:
            return []
        self.book.start(request_id, chosen)
        if self.tracker is not None and request_id is not None:
            self.tracker.started(request_id, chosen, group, bool(request_kwargs.get("stream")))
        if session is not None:
            self._sessions.picked(session, chosen)
        return [deployment]

    def _again(
        self,
        request_id: str | None,
        table: RoutingTable,
        members: Sequence[str],
        exclude: frozenset[str],
        offers: tuple[dict[str, dict] | None, ...],
        never: frozenset[str],
    ) -> tuple[str, dict[str, dict] | None] | None:
        """Every deployment this pick may take has failed this request already, yet LiteLLM asks:
        it has a retry or an order fallback left. An empty answer would make that attempt a 429
        "No deployments available" (``cooldown_list=[]``), which LiteLLM raises to the client in
        place of the upstream's error (it raises the latest), so the attempt goes to one that
        failed it, the one that failed it longest ago (a transient error has had the most time to
        clear; two in turn alternate, as LiteLLM's retries without the plugin would). Only
        routable ones (panic mode makes every member so): an ejected one stays out. LiteLLM's
        retries and fallbacks are bounded, so this is too. ``never``: out whatever happens (a rebuilt
        conversation's dead creator). None when none is routable."""
        for failed in self.book.failed_order(request_id):
            if failed in never:
                continue
            for available in offers:
                chosen = _pick(table, members, exclude - {failed}, available)
                if chosen is not None:
                    return chosen, available
        return None

    def apply_rebuild(self, kwargs: dict[str, Any]) -> bool:
        """Per attempt, once its deployment is picked: put a rebuilt conversation into the call's
        own kwargs. ``prepare_stateful`` writes it into the routing hook's kwargs, which on LiteLLM
        1.108.7 are the call's; 1.110 hands the routing hook a copy, so it must be done here too."""
        for key in hook_keys(kwargs):
            request = self.book.session(key)
            apply = getattr(request, "apply_rebuild", None)
            if apply is not None:
                return bool(apply(kwargs))
        return False

    async def prepare_stateful(
        self, group: str, healthy: list[dict], request_kwargs: dict[str, Any], messages: Any = None
    ) -> None:
        """Before ``route`` for a request with ``previous_response_id``: if the deployment that
        holds the conversation is down, rebuild it from the store into the request (bounded)."""
        routed = self._offered(group, healthy)
        if routed is None:
            return
        offer = self._narrowed(group, routed[1], healthy, request_kwargs)
        if offer is None:
            return
        exclude = self.book.excluded(route_key(request_kwargs))
        available = offer[0]
        await self._sessions.prepare_stateful(group, request_kwargs, messages, routed[0], exclude, available)

    # -- outcomes -------------------------------------------------------------------------

    def attempt_failed(
        self, deployment_id: str, outcome: Outcome, request_keys: tuple[str, ...], error: str
    ) -> None:
        book = self.book
        book.end(request_keys, deployment_id)  # only ever ends this plugin's own picks
        if self.tracker is not None:
            self.tracker.ended(request_keys, deployment_id, None)
        if not book.knows(request_keys):
            return  # another Router's request (see RequestBook.knows)
        if outcome is Outcome.CLIENT_ERROR:
            # The request's fault: another deployment would refuse it too. Neither counted against
            # this one nor excluded from the request's retries (excluding each in turn would turn
            # the client's 400 into "no deployments available").
            return
        request_id = book.resolve(request_keys)
        if book.record_failure(request_id, deployment_id):
            self._core.record_failure(
                deployment_id, outcome, request_id=request_id, error=self._redact(error)
            )
            self._on_failure(deployment_id, outcome)

    def request_succeeded(
        self, deployment_id: str, latency_s: float | None, request_keys: tuple[str, ...]
    ) -> None:
        book = self.book
        book.end(request_keys, deployment_id)  # for a stream: sent once it has ended
        if self.tracker is not None:
            self.tracker.ended(request_keys, deployment_id, latency_s)  # a stream's: its first token
        if not book.knows(request_keys):
            return  # another Router's request
        self._core.record_success(deployment_id, latency_s)
        request_id = book.resolve(request_keys)
        routing = book.finish(request_id)
        if routing and routing.first_pick and routing.first_pick != deployment_id:
            group = self._group_of.get(deployment_id, "")
            self._core.request_served_elsewhere(group, routing.first_pick, deployment_id, request_id)

    # -- answers --------------------------------------------------------------------------
    #
    # With LiteLLM's ``turn_off_message_logging`` on (globally, per request or by header), the
    # answer LiteLLM hands the success log has its text replaced by a placeholder. Its hash would
    # not match the real answer the client sends back in its next turn's history, so each turn
    # would start a new branch. The answer is captured where the plugin sees it as the client
    # does, and held in the request's record until the success log records it.

    def answer_arrived(self, request_keys: tuple[str, ...], call_type: str, response: Any) -> None:
        """A deployment answered (``async_post_call_success_deployment_hook``: a non-streamed
        answer, or a Responses API stream's completed one), before LiteLLM logs it."""
        if self.book.waits_for_answer(request_keys) is None:
            return  # no session waits for it: nothing is read, nothing kept
        items = answer_items(call_type, response)
        if items:
            self.book.keep_answer(request_keys, items)

    def answer_wanted(self, request_keys: tuple[str, ...]) -> bool:
        """Whether a session waits for this request's answer: a stream assembles it only then
        (its session is on the book from the request's first pick, before the stream starts)."""
        return self.book.waits_for_answer(request_keys) is not None

    def answer_streamed(
        self, request_keys: tuple[str, ...], answer: Sequence[Item] | None, why: str | None = None
    ) -> None:
        """A chat stream the plugin wraps finished: its answer as the client assembled it from
        the chunks (text and tool calls, ``streams.answer``). None when it could not be
        assembled: the session then records LiteLLM's logged copy, and ``why`` (no content)
        is logged."""
        request_id = self.book.waits_for_answer(request_keys)
        if request_id is None:
            return  # no session waits for it
        if answer is None:
            logger.info(
                "request %s: its streamed answer could not be assembled (%s); its session records "
                "LiteLLM's logged copy",
                request_id,
                why,
            )
            return
        self.book.keep_answer(request_keys, list(answer))

    async def session_answered(self, deployment_id: str, kwargs: Mapping[str, Any], response: Any) -> None:
        """A request's final answer (a stream's, once complete): re-pin, events, conversation rows.
        The captured answer, if any, is taken (forgotten) here whatever the sessions do with it."""
        answer = self.book.take_answer(hook_keys(kwargs))
        await self._sessions.answered(deployment_id, kwargs, response, answer)


def _pick(
    table: RoutingTable, members: Sequence[str], exclude: frozenset[str], available: Mapping[str, Any] | None
) -> str | None:
    """The table's pick among ``available`` (None: every member), never one in ``exclude``."""
    if available is not None:
        exclude = exclude | frozenset(members).difference(available)
    return table.pick(exclude)
