"""``RequestPath``: what happens to one client request, from its pick to its answer.

- ``route`` (hot path, synchronous, no I/O): pick the attempt's deployment from the group's
  routing table, never one that failed this request, with the session's affinity; the pick and
  the attempt go into the request's record (``RequestBook``).
- ``prepare_stateful``: before ``route`` for a Responses API request whose
  ``previous_response_id`` lives on a dead deployment (the one bounded wait, in sessions).
- ``attempt_failed`` / ``request_succeeded``: the outcome hooks. Each ends the attempt in flight,
  then, for a request this plugin routed, feeds outlier detection (a failure counted once per
  request and deployment) or records the success and a ``request_failover`` event when the
  request was served elsewhere than first picked.
- ``session_answered``: a request's final answer, for its session.

The core is read in one place, ``routed``: the group's current table and its member ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from litellm_failover.litellm_compat.offers import OfferMatcher
from litellm_failover.outlier import Outcome
from litellm_failover.requests.book import RequestBook
from litellm_failover.requests.identity import hook_keys, route_key
from litellm_failover.routing_table import RoutingTable
from litellm_failover.snapshot import CoreSnapshot


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

    def track(self, group: str, kwargs: Mapping[str, Any], messages: Any) -> RoutedSession | None: ...

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

    async def answered(self, deployment_id: str, kwargs: Mapping[str, Any], response: Any) -> None: ...


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
    ) -> None:
        self.book = book
        self._core = core
        self._deployments = deployments  # LiteLLM's own deployment dicts, by id
        self.offers = OfferMatcher(deployments)  # which offered deployments are this plugin's
        self._group_of = group_of
        self._group_size = {group: len(ids) for group, ids in core.snapshot.groups.items()}
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
        deployments it has read. Otherwise (LiteLLM hands every Router's picks to every
        callback; a deployment added at run time) None: LiteLLM decides."""
        routed = self.routed(group)
        if routed is None or not self.offers.owns(healthy[0]):
            return None
        return routed

    def _available(self, group: str, healthy: list[dict]) -> dict[str, dict] | None:
        """None when LiteLLM filtered nothing out: pick straight from the table, no scan of the list."""
        if len(healthy) == self._group_size[group]:
            return None
        return {str(d["model_info"]["id"]): d for d in healthy}

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
        available = self._available(group, healthy)
        chosen = None
        session = self._sessions.track(group, request_kwargs, messages)
        if session is not None:
            if session.rebuilt_from is not None:
                # Rebuilt for another node: never its dead creator, even if LiteLLM's own
                # previous_response_id check narrowed the offer down to it.
                exclude = exclude | {session.rebuilt_from}
                if available is not None and set(available) <= {session.rebuilt_from}:
                    available = None
            chosen = self._sessions.preferred(session, table, exclude, available)
        if chosen is None:
            if available is not None:
                exclude = exclude | frozenset(members).difference(available)
            chosen = table.pick(exclude)
        if chosen is None:
            return []
        deployment = self._deployments.get(chosen) if available is None else available.get(chosen)
        if deployment is None:
            return []
        self.book.start(request_id, chosen)
        if session is not None:
            self._sessions.picked(session, chosen)
        return [deployment]

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
        exclude = self.book.excluded(route_key(request_kwargs))
        available = self._available(group, healthy)
        await self._sessions.prepare_stateful(group, request_kwargs, messages, routed[0], exclude, available)

    # -- outcomes -------------------------------------------------------------------------

    def attempt_failed(
        self, deployment_id: str, outcome: Outcome, request_keys: tuple[str, ...], error: str
    ) -> None:
        book = self.book
        book.end(request_keys, deployment_id)  # only ever ends this plugin's own picks
        if not book.knows(request_keys):
            return  # another Router's request (see RequestBook.knows)
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
        if not book.knows(request_keys):
            return  # another Router's request
        self._core.record_success(deployment_id, latency_s)
        request_id = book.resolve(request_keys)
        routing = book.finish(request_id)
        if routing and routing.first_pick and routing.first_pick != deployment_id:
            group = self._group_of.get(deployment_id, "")
            self._core.request_served_elsewhere(group, routing.first_pick, deployment_id, request_id)

    async def session_answered(self, deployment_id: str, kwargs: Mapping[str, Any], response: Any) -> None:
        """A request's final answer (a stream's, once complete): re-pin, events, conversation rows."""
        await self._sessions.answered(deployment_id, kwargs, response)
