"""One plugin per Router: a second ``attach`` to a Router whose plugin is still attached is refused.

What the plugin changes in LiteLLM when it attaches (``disable_cooldowns`` on, LiteLLM's
``enable_mid_stream_fallback_continuation`` off, its handler in LiteLLM's callback lists, the
Router's ``acompletion`` wrapped for resuming streams) ``detach`` puts back from what it saw at
attach. A second plugin on the same Router saw the first one's changes as LiteLLM's own: detaching
the first turned LiteLLM's cooldowns back on under the second, which does its own ejection and
which LiteLLM's timer cooldowns would fight; detaching the second then left them off for good
(and the continuation too); and the second's stream wrapper called the first's, so a detached
plugin went on resuming streams.

Why refuse rather than count references to what is restored: counting would keep LiteLLM's
settings right, but two plugins on one Router are two health authorities. Both filter every pick,
both probe and eject, both write the audit trail and both wrap the Router's streams (each resuming
a break on its own view). No setting is worth restoring for that, so the second attach fails, with
a clear error, before it changes anything; and with one plugin per Router, what ``detach`` restores
is exactly what LiteLLM had.

To replace a plugin: ``old.detach()``, then ``attach(router, new_settings)`` (validate the new
settings first with ``parse_settings``). Both calls are synchronous, so no pick runs between them.
Then ``await old.stop()``: ``detach`` leaves the old plugin's background work (probes, store
writer) running.
"""

from __future__ import annotations

import weakref
from typing import Any

from litellm_failover.litellm_compat import current_deployments

# id(router) -> the plugin attached to it. Weak: a plugin dropped without ``detach`` (its handler
# gone from LiteLLM's callbacks too) no longer holds its Router. An entry found is checked against
# its Router by identity: while a plugin is alive it holds its Router, so the id is not reused.
_attached: dict[int, weakref.ref[Any]] = {}


class AlreadyAttachedError(RuntimeError):
    """``attach`` to a Router that already has a litellm-failover plugin attached."""


def attached_to(router: Any) -> Any | None:
    """The plugin attached to ``router`` now, or None."""
    ref = _attached.get(id(router))
    plugin = ref() if ref is not None else None
    if plugin is None or plugin.router is not router:
        return None
    return plugin


def refuse_second(router: Any) -> None:
    """Raise ``AlreadyAttachedError`` if ``router`` has a plugin attached; changes nothing."""
    plugin = attached_to(router)
    if plugin is None:
        return
    groups = sorted({str(d.get("model_name")) for d in current_deployments(router) if isinstance(d, dict)})
    raise AlreadyAttachedError(
        f"litellm-failover is already attached to this litellm.Router (model groups: "
        f"{', '.join(groups) or 'none'}; plugin instance {plugin.instance_id}): one plugin per Router. "
        f"Detach it first (plugin.detach()), then attach the new one"
    )


def claim(router: Any, plugin: Any) -> None:
    refuse_second(router)
    _attached[id(router)] = weakref.ref(plugin)


def release(router: Any, plugin: Any) -> None:
    """Forget ``plugin`` as ``router``'s (a no-op if another, or none, is recorded)."""
    ref = _attached.get(id(router))
    current = ref() if ref is not None else None
    if ref is not None and (current is plugin or current is None):
        del _attached[id(router)]


__all__ = ["AlreadyAttachedError", "attached_to", "claim", "refuse_second", "release"]
