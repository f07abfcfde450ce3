"""Everything that depends on which LiteLLM release is installed, in one place.

The plugin supports LiteLLM 1.108.7 to 1.110.x. Between them the Router changed shape: 1.109 put a
``RouterCore`` behind it and 1.110 made that core Rust only, with a public surface (``registry()``,
``settings()``, ``apply()``, ``select()``) and the old members left as deprecated shims. The rest of
the plugin never touches a Router member or a LiteLLM hook directly by name: it calls these
adapters, each chosen by what the running LiteLLM offers (a capability), not by a version string.

- ``version``: the installed release and the supported range.
- ``router_access``: the Router members the plugin reads or sets (its deployments, cooldowns,
  settings, one pick without a call).
- ``offers``: which deployments offered to the routing hook are this plugin's (identity on
  1.108.7, value on 1.110, whose core passes copies).
- ``hooks``: the ``CustomLogger`` hooks the plugin's handler relies on.
- ``checks``: the start-up check: every piece exists and the routing hook fires, or the plugin
  refuses to start with one message naming the LiteLLM version and the missing piece.
- ``interplay``: LiteLLM 1.109+ settings that overlap the plugin's own features.
"""

from __future__ import annotations

from litellm_failover.litellm_compat.checks import (
    LiteLLMCompatError,
    check_fires,
    check_hooks,
    check_router,
    probing,
)
from litellm_failover.litellm_compat.router_access import (
    current_deployments,
    disable_cooldowns,
    marker_check,
    marker_reader,
)
from litellm_failover.litellm_compat.version import SUPPORTED_RANGE, litellm_version

__all__ = [
    "SUPPORTED_RANGE",
    "LiteLLMCompatError",
    "check_fires",
    "check_hooks",
    "check_router",
    "current_deployments",
    "disable_cooldowns",
    "litellm_version",
    "marker_check",
    "marker_reader",
    "probing",
]
