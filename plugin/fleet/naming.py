"""Which fleet a replica belongs to: its name, and the Redis channel and key prefix that follow.

Redis pub/sub ignores the database number, so with one shared constant channel two fleets on one
Redis (a staging and a production proxy, say) would hear each other's ejections, pins and
commands. So the channel is ``litellm_failover:<fleet name>`` and the name, unless given
(``fleet.name``, ``$LITELLM_FAILOVER_FLEET``), is ``db-`` and a hash of what the replicas of one
deployment share and another deployment does not: the database URL with its password left out
(replicas of a fleet share one events database) and the Redis database number. The CLI computes
the same from the same config file, so ``--config`` is all it needs.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

from litellm_failover.redact import mask_url

if TYPE_CHECKING:
    from litellm_failover.settings import FailoverSettings

FLEET_ENV = "LITELLM_FAILOVER_FLEET"
CHANNEL_PREFIX = "litellm_failover"


def _redis_db(redis_url: str | None) -> int:
    if not redis_url:
        return 0
    try:
        from redis.asyncio.connection import parse_url  # the `redis` extra, there with a redis_url
    except ImportError:
        return 0  # no Redis client: this plugin refuses its redis_url at start anyway
    try:
        return int(parse_url(redis_url).get("db", 0) or 0)
    except (ValueError, TypeError):
        return 0  # a malformed URL is refused where it is connected to, with a clear error


def derived_name(database_url: str, redis_url: str | None) -> str:
    """``db-<12 hex>``: the same for every replica of one deployment, different across deployments."""
    scheme, sep, rest = mask_url(database_url).partition("://")
    # ``postgresql://`` and ``postgresql+asyncpg://`` are one database (the proxy switches drivers)
    seed = f"{scheme.split('+')[0]}{sep}{rest}|redis-db={_redis_db(redis_url)}"
    return "db-" + hashlib.sha256(seed.encode()).hexdigest()[:12]


def fleet_name(name: str | None, database_url: str, redis_url: str | None) -> str:
    return name or os.environ.get(FLEET_ENV) or derived_name(database_url, redis_url)


def channel_for(channel: str | None, name: str | None, database_url: str, redis_url: str | None) -> str:
    """The explicit channel if any, else ``litellm_failover:<fleet name>``."""
    return channel or f"{CHANNEL_PREFIX}:{fleet_name(name, database_url, redis_url)}"


def settings_channel(settings: FailoverSettings) -> str:
    return channel_for(settings.fleet.channel, settings.fleet.name, settings.database_url, settings.redis_url)


def require_redis_client() -> None:
    """A ``redis_url`` needs redis-py, the ``redis`` extra: say so at start, naming the key and
    the install, rather than fail in a background task later."""
    try:
        import redis  # noqa: F401
    except ImportError:
        from litellm_failover.settings import FailoverConfigError

        raise FailoverConfigError.of(
            [
                "redis_url: set, but the Redis client (redis-py) is not installed: "
                "pip install 'litellm-failover[redis]'"
            ]
        ) from None
