"""The control package's optional part, imported on demand: the Redis channel.

redis-py is the ``redis`` extra. A plugin without a fleet (no ``redis_url``) and a CLI command
sent through the database must load without it, so neither the control plane nor the sending
client imports ``redis_channel`` at the top; both ask here when a Redis URL is actually in use.
"""

from __future__ import annotations

from types import ModuleType


def redis_channel() -> ModuleType:
    """The ``litellm_failover.control.redis_channel`` module (imports redis-py on first use)."""
    from litellm_failover.control import redis_channel as module

    return module
