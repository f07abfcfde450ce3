"""Responses API continuity follows the response's own branch, for its own caller only
(issue 11 §4), through the real ``litellm.Router`` and fake vLLM processes killed like a host.

Before §4: two continuations of one response collided at the same seq and the second was not
stored, so rebuilding from it failed; and any caller holding a response id got that
conversation rebuilt into its own request.
"""

from __future__ import annotations

import litellm
import pytest
from test_responses_continuity import Chain, creator, database_url, nodes, router_plugin  # noqa: F401
from waiting import wait_until

from litellm_failover.providers.fake.text import expected_answer

pytest_plugins = ["services"]

BOTH = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


async def _ask(router, text: str, previous: str | None = None, caller: str | None = None):
    kwargs: dict = {"previous_response_id": previous} if previous else {}
    if caller:
        kwargs["metadata"] = {"failover_caller": caller}
    return await router.aresponses(model="chat", input=text, **kwargs)


@BOTH
async def test_a_rebuild_follows_the_branch_its_response_belongs_to(router_plugin, nodes):  # noqa: F811
    router, plugin = router_plugin
    async with plugin:
        first = await _ask(router, "first question")
        holder = creator(first.id)
        branch_a = await _ask(router, "branch A", first.id)
        branch_b = await _ask(router, "branch B", first.id)  # the same parent: a second branch
        assert {creator(branch_a.id), creator(branch_b.id)} == {holder}
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 3, timeout=5)
        nodes[holder].kill()
        answer = await _ask(router, "after B", branch_b.id)
        history = [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "branch B"},
            {"role": "assistant", "content": branch_b.output_text},
            {"role": "user", "content": "after B"},
        ]
        assert answer.output_text == expected_answer(history)  # B's history, not A's
        assert creator(answer.id) != holder
        assert plugin.status()["sessions"]["rebuilds"] == 1


@BOTH
async def test_another_callers_response_id_is_not_rebuilt(router_plugin, nodes):  # noqa: F811
    router, plugin = router_plugin
    async with plugin:
        chain = Chain()
        first = await _ask(router, "alice's secret", caller="alice")
        chain.took("alice's secret", first.output_text, first.id)
        holder = creator(first.id)
        await wait_until(lambda: plugin.status()["sessions"]["turns_recorded"] == 1, timeout=5)
        nodes[holder].kill()
        with pytest.raises(litellm.NotFoundError, match="not found"):
            await _ask(router, "what did she say?", first.id, caller="bob")
        assert plugin.status()["sessions"]["rebuild_failures"] == 1
        # Its own caller still gets it back, from the store.
        answer = await _ask(router, "and then?", first.id, caller="alice")
        assert answer.output_text == chain.expect("and then?")
        assert plugin.status()["sessions"]["rebuilds"] == 1
