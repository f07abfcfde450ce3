"""Sessions, piece by piece: naming, validation, pins, affinity rules, rows, response ids.

Fast tests without servers; the same behaviour through the real Router and proxy is in
test_sessions_router.py, test_sessions_proxy.py and test_responses_continuity.py.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from factories import Clock, bad_report, good_report, model_list, specs_for
from litellm.responses.utils import ResponsesAPIRequestUtils

from litellm_failover.core import FailoverCore
from litellm_failover.events import EventType
from litellm_failover.requests import RequestBook
from litellm_failover.sessions import MAX_SESSION_ID_CHARS, SessionIdError, SessionManager, identify
from litellm_failover.sessions.content import (
    Item,
    canonical_json,
    chat_items,
    responses_answer,
    responses_items,
    to_input_item,
)
from litellm_failover.sessions.continuity import current_input, parse_response_id
from litellm_failover.sessions.pins import PinStore
from litellm_failover.sessions.recorder import Recorder, Turn, Usage
from litellm_failover.settings import SessionSettings, parse_settings

# --- naming and validation -------------------------------------------------------------------


def test_the_header_wins_then_metadata_then_litellm_session_id_then_user():
    kwargs = {
        "proxy_server_request": {"headers": {"x-session-id": "from-header"}},
        "metadata": {"session_id": "from-metadata"},
        "litellm_session_id": "from-litellm",
        "user": "from-user",
    }
    assert identify(kwargs, use_user_field=True).value == "from-header"
    del kwargs["proxy_server_request"]
    assert identify(kwargs, use_user_field=True).value == "from-metadata"
    del kwargs["metadata"]
    assert identify(kwargs, use_user_field=True).value == "from-litellm"
    del kwargs["litellm_session_id"]
    assert identify(kwargs, use_user_field=True).value == "from-user"
    assert identify(kwargs, use_user_field=False) is None  # `user` is opt-in
    assert identify({}, use_user_field=True) is None


def test_each_place_litellm_puts_the_hint_is_read():
    assert identify({"extra_headers": {"X-Session-Id": "sdk"}}, use_user_field=False).value == "sdk"
    responses_via_proxy = {"litellm_metadata": {"session_id": "lm"}}
    assert identify(responses_via_proxy, use_user_field=False).value == "lm"
    empty_header = {"proxy_server_request": {"headers": {"x-session-id": ""}}, "litellm_session_id": "x"}
    assert identify(empty_header, use_user_field=False).value == "x"  # empty means absent


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        (
            {"proxy_server_request": {"headers": {"x-session-id": "a" * (MAX_SESSION_ID_CHARS + 1)}}},
            ["x-session-id header", "257 characters", "limit is 256"],
        ),
        ({"metadata": {"session_id": "bad\nid"}}, ["metadata.session_id", "U+000A", "position 3"]),
        ({"litellm_session_id": "tab\there"}, ["litellm_session_id", "U+0009"]),
        ({"metadata": {"session_id": 42}}, ["metadata.session_id", "must be a string"]),
        ({"user": "nul\x00"}, ["user field", "U+0000"]),
    ],
)
def test_a_bad_session_id_is_a_clear_error_naming_where_it_came_from(kwargs, needles):
    with pytest.raises(SessionIdError) as info:
        identify(kwargs, use_user_field=True)
    for needle in needles:
        assert needle in str(info.value)
    assert info.value.status_code == 400 and isinstance(info.value, ValueError)


def test_limits_are_inclusive_and_unicode_is_welcome():
    longest = "é" * MAX_SESSION_ID_CHARS
    assert identify({"litellm_session_id": longest}, use_user_field=False).value == longest
    assert identify({"litellm_session_id": "chat 🙂 #1"}, use_user_field=False).value == "chat 🙂 #1"


def test_only_the_winning_candidate_is_validated():
    kwargs = {"metadata": {"session_id": "ok"}, "user": "x" * 1000}
    assert identify(kwargs, use_user_field=True).value == "ok"


# --- pins ------------------------------------------------------------------------------------


def test_pins_are_bounded_lru_and_tell_listeners_only_local_changes():
    pins = PinStore(max_pins=2)
    heard = []
    pins.add_listener(lambda *args: heard.append(args))
    assert pins.pin("s1", "g", "p1") is None
    assert pins.pin("s1", "g", "p1") == "p1"  # unchanged: nobody told
    pins.pin("s2", "g", "p2")
    pins.get("s1", "g")  # s1 recently used: s2 is the oldest now
    pins.apply_remote("s3", "g", "p1")  # from another replica: applied, not re-published
    assert heard == [("s1", "g", "p1"), ("s2", "g", "p2")]
    assert pins.peek("s2", "g") is None and pins.peek("s3", "g") == "p1" and len(pins) == 2
    assert pins.evicted == 1
    assert pins.pinned_to("g", "p1", limit=10) == ["s3", "s1"]
    assert pins.pinned_to("g", "p1", limit=1) == ["s3"]


def test_a_broken_pin_listener_does_not_break_pinning():
    pins = PinStore(max_pins=10)

    def broken(*args):
        raise RuntimeError("redis is down")

    pins.add_listener(broken)
    pins.pin("s", "g", "p1")
    assert pins.get("s", "g") == "p1"


# --- affinity rules --------------------------------------------------------------------------


class ListStore:
    """A writer stand-in for rule tests: keeps rows in lists, has no database."""

    engine = None

    def __init__(self) -> None:
        self.messages = []
        self.sessions = []
        self.events = []

    def submit_message(self, row):
        self.messages.append(row)
        return True

    def submit_session(self, row):
        self.sessions.append(row)

    def submit_event(self, event):
        self.events.append(event)
        return True

    def submit_state(self, row):
        pass

    async def flush(self, timeout=None):  # noqa: ASYNC109 (the writer's signature)
        return True


ENTRIES = model_list(("g", "p1", 1, 1.0), ("g", "p2", 1, 1.0), ("g", "s1", 2, 1.0))


def make_manager(**sessions):
    settings = parse_settings(
        {"health": {"unhealthy_threshold": 1, "healthy_threshold": 1}, "sessions": sessions}
    )
    store = ListStore()
    clock = Clock()
    core = FailoverCore(
        settings,
        specs_for(ENTRIES, settings),
        instance_id="t",
        probed=lambda s: True,
        sink=store,
        clock=clock,
    )
    manager = SessionManager(settings.sessions, core, store, {}, book=RequestBook(ttl_s=600))
    return manager, core, store, clock


def route(manager, core, session_id, request_id, exclude=frozenset()):
    """What FailoverPlugin.route does with the manager, minus LiteLLM."""
    kwargs = {"metadata": {"session_id": session_id}, "litellm_trace_id": request_id}
    request = manager.track("g", kwargs, [])
    table = core.tables["g"]
    chosen = manager.preferred(request, table, exclude, None) or table.pick(exclude)
    manager.picked(request, chosen)
    return request, chosen


def test_a_pin_holds_while_its_deployment_serves_and_never_overrides_health():
    manager, core, _, _ = make_manager()
    _, first = route(manager, core, "s", "r1")
    assert first in ("p1", "p2")
    other = "p2" if first == "p1" else "p1"
    assert {route(manager, core, "s", f"r{i}")[1] for i in range(2, 40)} == {first}

    request, chosen = route(manager, core, "s", "r-excluded", exclude=frozenset({first}))
    assert chosen == other and request.unpinned_reason == f"{first} failed this request"

    core.apply_probe(first, bad_report())  # ejected: the pin must not keep the session there
    request, chosen = route(manager, core, "s", "r-ejected")
    assert chosen == other and request.unpinned_reason == f"{first} is unhealthy"


def test_failback_wins_over_a_pin_to_the_standby():
    manager, core, _, clock = make_manager()
    core.apply_probe("p1", bad_report())
    core.apply_probe("p2", bad_report())
    _, chosen = route(manager, core, "s", "r1")
    assert chosen == "s1"
    for _ in range(60):  # the primaries recover: hold-down and ejection time pass, probes succeed
        clock.advance(5)
        core.apply_probe("p1", good_report())
        core.apply_probe("p2", good_report())
    assert core.tables["g"].active_tier == 1
    request, chosen = route(manager, core, "s", "r2")
    assert chosen in ("p1", "p2")
    assert request.unpinned_reason == "s1 is not in the serving tier (tier 1 serves)"


async def test_the_answering_deployment_is_the_new_pin_and_the_move_is_an_event():
    manager, core, store, _ = make_manager()
    _, first = route(manager, core, "s", "r1")
    await manager.answered(first, {"litellm_trace_id": "r1"}, None)
    assert not [e for e in store.events if e.event_type == EventType.SESSION_REPINNED.value]
    core.apply_probe(first, bad_report())
    _, chosen = route(manager, core, "s", "r2")
    await manager.answered(chosen, {"litellm_trace_id": "r2"}, None)
    moved = [e for e in store.events if e.event_type == EventType.SESSION_REPINNED.value]
    assert [(e.from_deployment, e.to_deployment, e.details["session_id"]) for e in moved] == [
        (first, chosen, "s")
    ]
    assert moved[0].reason == f"{first} is unhealthy" and moved[0].request_id == "r2"
    assert manager.pins.peek("s", "g") == chosen


def test_sessions_disabled_means_no_pins_and_no_validation():
    manager, _, _, _ = make_manager(enabled=False)
    kwargs = {"metadata": {"session_id": "x" * 999}}
    assert manager.track("g", kwargs, []) is None
    assert manager.check(kwargs) is None


# --- rows ------------------------------------------------------------------------------------


def turn(session_id="s", items=("hello",), answer="world", start=0):
    return Turn(
        session_id=session_id,
        model_group="g",
        start_seq=start,
        request_items=[Item("user", text) for text in items],
        answer_items=[Item("assistant", answer)],
        deployment_id="p1",
        response_id="resp_1",
        usage=Usage(3, 5),
    )


def test_rows_carry_position_hash_tokens_and_the_answering_deployment():
    store = ListStore()
    recorder = Recorder(SessionSettings(), store, remembered=100)
    recorder.record(turn(), pinned="p1")
    user, answer = store.messages
    assert (user.seq, user.role, user.content, user.deployment_id) == (0, "user", "hello", None)
    assert (answer.seq, answer.role, answer.content, answer.deployment_id) == (1, "assistant", "world", "p1")
    assert answer.content_hash == hashlib.sha256(b"world").hexdigest() and answer.content_chars == 5
    assert (answer.prompt_tokens, answer.completion_tokens, answer.response_id) == (3, 5, "resp_1")
    assert user.prompt_tokens is None and user.response_id is None
    assert [(s.session_id, s.pinned_deployment, s.turns) for s in store.sessions] == [("s", "p1", 1)]


def test_history_already_stored_is_not_submitted_again():
    store = ListStore()
    recorder = Recorder(SessionSettings(), store, remembered=100)
    recorder.record(turn(items=("a",), answer="b"), pinned="p1")
    recorder.record(turn(items=("a", "b", "c"), answer="d"), pinned="p1")
    assert [(m.seq, m.content) for m in store.messages] == [(0, "a"), (1, "b"), (2, "c"), (3, "d")]


def test_store_content_off_keeps_hashes_and_counts_only():
    store = ListStore()
    recorder = Recorder(SessionSettings(store_content=False), store, remembered=100)
    recorder.record(turn(), pinned="p1")
    assert [m.content for m in store.messages] == [None, None]
    assert [m.content_hash for m in store.messages] == [
        hashlib.sha256(b"hello").hexdigest(),
        hashlib.sha256(b"world").hexdigest(),
    ]
    assert store.messages[1].completion_tokens == 5 and not any(m.truncated for m in store.messages)


def test_a_message_over_the_cap_is_hash_only_marked_and_counted():
    store = ListStore()
    recorder = Recorder(SessionSettings(max_message_chars=10), store, remembered=100)
    recorder.record(turn(items=("short", "x" * 11), answer="exactly 10"), pinned="p1")
    assert [(m.content, m.truncated, m.content_chars) for m in store.messages] == [
        ("short", False, 5),
        (None, True, 11),
        ("exactly 10", False, 10),
    ]
    assert recorder.stats()["oversized_messages"] == 1


def test_structured_content_is_hashed_as_canonical_json():
    parts = [{"type": "image_url", "image_url": {"url": "data:x"}}, {"type": "text", "text": "what?"}]
    (item,) = chat_items([{"role": "user", "content": parts}])
    assert item.text == canonical_json(parts) == json.dumps(parts, sort_keys=True, separators=(",", ":"))
    (text_only,) = chat_items([{"role": "user", "content": [{"type": "text", "text": "a"}] * 2}])
    assert text_only.text == "a\na"  # text parts are text, joined as chat templates join them
    calls = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]}
    (tool_turn,) = chat_items([calls])
    assert json.loads(tool_turn.text) == {"tool_calls": [{"id": "c1", "type": "function"}]}


def test_responses_items_round_trip_into_input_items():
    items = responses_items(
        [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ],
        instructions="be brief",
    )
    assert [(i.role, i.text) for i in items[:2]] == [("system", "be brief"), ("user", "hi")]
    assert to_input_item(items[2].role, items[2].text) == {
        "type": "function_call_output",
        "call_id": "c1",
        "output": "42",
    }
    assert to_input_item("user", "[1, 2]") == {"role": "user", "content": "[1, 2]"}
    assert current_input("next") == [{"role": "user", "content": "next"}]


def test_responses_answers_skip_reasoning_and_keep_calls():
    class Answer:
        output = [
            {"type": "reasoning", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c"},
        ]

    items = responses_answer(Answer())
    assert [i.role for i in items] == ["assistant", "function_call"] and items[0].text == "ok"


def test_response_ids_are_stored_as_the_deployment_made_them():
    encoded = ResponsesAPIRequestUtils._build_responses_api_response_id("hosted_vllm", "p2", "resp_abc")
    ref = parse_response_id(encoded)
    assert (ref.raw_id, ref.deployment_id) == ("resp_abc", "p2")
    plain = parse_response_id("resp_0123456789abcdef0123456789abcdef")
    assert plain.raw_id == "resp_0123456789abcdef0123456789abcdef" and plain.deployment_id is None


async def test_store_messages_off_still_pins_but_stores_nothing():
    manager, core, store, _ = make_manager(store_messages=False)
    _, first = route(manager, core, "s", "r1")

    class Answer:
        choices = [type("Choice", (), {"message": {"role": "assistant", "content": "hi"}})()]
        usage = None

    await manager.answered(first, {"litellm_trace_id": "r1", "call_type": "acompletion"}, Answer())
    assert manager.pins.peek("s", "g") == first
    assert store.messages == [] and store.sessions == []
