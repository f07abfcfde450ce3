"""The request book: one record per client request, its identity rule and its one expiry."""

from __future__ import annotations

from factories import Clock

from litellm_failover.requests import RequestBook, hook_keys, route_key


def test_routing_keys_a_request_by_call_id_else_trace_id_and_hooks_try_both():
    assert route_key({"litellm_call_id": "c", "litellm_trace_id": "t"}) == "c"  # the proxy
    assert route_key({"litellm_trace_id": "t"}) == "t"  # the Router
    assert route_key({}) is None
    assert hook_keys({"litellm_call_id": "c", "litellm_trace_id": "t"}) == ("c", "t")
    assert hook_keys({"litellm_trace_id": "t"}) == ("t",)


def test_a_hook_resolves_to_the_id_routing_knows_and_ignores_other_routers_requests():
    book = RequestBook(ttl_s=60, clock=Clock())
    book.start("t", "a")
    assert book.resolve(("c", "t")) == "t" and book.knows(("c", "t"))
    assert not book.knows(("elsewhere",)) and book.resolve(("elsewhere",)) == "elsewhere"
    assert book.knows(())  # no id at all: cannot be told apart, counts


def test_one_record_keeps_picks_failures_attempts_and_session_each_until_it_ends():
    ended = []
    book = RequestBook(ttl_s=60, clock=Clock())
    book.listener = ended.append
    book.keep_session("r", "session")
    book.start("r", "a")
    assert book.record_failure("r", "a") and book.end(("r",), "a") and ended == ["a"]
    book.start("r", "b")
    assert book.excluded("r") == {"a"} and book.counts() == {"b": 1}
    assert book.finish("r").first_pick == "a"
    assert not book.knows(("r",)) and book.excluded("r") == frozenset()
    # What succeeded is forgotten by routing; its attempt and its session stay until they end.
    assert book.count("b") == 1 and book.sessions_pending() == 1 and len(book) == 1
    assert book.end(("r",), "b") and not book.end(("r",), "b")  # a second end finds nothing
    assert book.take_session(("c", "r")) == "session" and len(book) == 0


def test_a_new_pick_while_an_attempt_is_in_flight_excludes_it_before_its_failure_hook_runs():
    # LiteLLM retried on b: the attempt on a failed, though its failure hook (a task of its own)
    # has not run yet. A continuation chosen meanwhile must not go back to a.
    book = RequestBook(ttl_s=60, clock=Clock())
    book.start("r", "a")
    assert book.excluded("r") == frozenset()
    book.start("r", "b")
    assert book.excluded("r") == {"a"} and book.failed_order("r") == ("a",)
    # The hook still counts the failure once (outlier detection), and only once.
    assert book.record_failure("r", "a") and not book.record_failure("r", "a")
    assert book.failed_order("r") == ("a",) and book.excluded("r") == {"a"}
    # The same deployment picked again for the request supersedes nothing.
    book.start("r", "b")
    assert book.excluded("r") == {"a"}


def test_a_request_untouched_for_the_ttl_is_forgotten_whole_and_its_attempts_count_as_expired():
    clock = Clock()
    ended = []
    book = RequestBook(ttl_s=20, clock=clock)
    book.listener = ended.append
    book.keep_session("lost", "session")
    book.start("lost", "a")
    clock.advance(10)
    book.start("live", "a")
    clock.advance(15)
    book.expire()
    assert book.counts() == {"a": 1} and ended == ["a"] and book.expired == {"a": 1}
    assert book.session("lost") is None and book.sessions_pending() == 0 and len(book) == 1
    assert book.stats() == {"in_flight": 1, "started": 2, "ended": 0, "expired": 1, "ttl_s": 20}


def test_a_write_expires_what_is_due_though_the_book_is_looked_at_only_when_something_may_be():
    # The book skips its front on a write until the oldest touch it saw could be due; a record
    # touched again (moved to the back) still expires on time, and the others on theirs.
    clock = Clock()
    book = RequestBook(ttl_s=10, clock=clock)
    book.start("r1", "a")
    clock.advance(5)
    book.start("r2", "a")
    clock.advance(3)
    book.keep_session("r1", "session")  # r1 touched at 8: now due after 18, r2 after 15
    clock.advance(7.5)  # 15.5
    book.start("r3", "b")  # a write: r2 goes, r1 stays
    assert book.get("r2") is None and book.get("r1") is not None and book.expired == {"a": 1}
    clock.advance(2)  # 17.5: nothing more is due
    book.start("r4", "b")
    assert book.get("r1") is not None and len(book) == 3
    clock.advance(1)  # 18.5
    book.start("r5", "b")
    assert book.get("r1") is None and book.sessions_pending() == 0 and book.expired == {"a": 2}
