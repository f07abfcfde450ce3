"""The proxy configs the drill compares: ``plugin`` (LiteLLM + litellm-failover) and ``plain``.

Both serve the same model groups (one per scenario, its own nodes), with the same per-attempt
timeouts and retry count, so the comparison isolates what the plugin adds.

Shared by both profiles, and why:

- ``litellm_params.order``: the tier (1 = primary, 2 = standby). Checked in LiteLLM 1.108.7:
  ``Router.async_get_healthy_deployments`` calls ``litellm.utils.get_order_filtered_deployments``
  after cooldowns are removed, which keeps only the lowest ``order`` present, so the standby
  serves only once every primary is in cooldown (or excluded), and the primary is back as soon as
  its cooldown ends.
- ``timeout: 3`` / ``stream_timeout: 3``: a fake answer takes ~0.15 s; 3 s bounds what a hung or
  black-holed node costs a request before it is retried, without cutting slow-but-healthy work.
- ``router_settings.num_retries: 2``, ``retry_after: 0``: two more attempts per request, at once
  (a retry wait only adds latency when another deployment is there to take it).

``plain``: LiteLLM alone, configured as a careful user would:

- ``allowed_fails: 1``: cool a deployment down on its second failure within the window.
  Checked: ``Router.__init__`` keeps any non-None value and ``_is_allowed_fails_set_on_router``
  honours it unless it equals ``litellm.allowed_fails`` (3, the default, then treated as unset,
  which switches to a percentage rule needing far more traffic). 0 would cool a node down on a
  single transient error; 1 is the most eager setting a careful operator would pick.
- ``cooldown_time``: 5 s (times ``--duration-scale``): LiteLLM's failback is timer-only and all at
  once, so the timer is its hold-down; 5 s is short enough to see the failback inside the
  scenario, long enough not to thrash on a node that is still down.
- ``fallbacks``: each scenario group falls back to ``<group>-fallback``, a group holding the
  standby nodes under separate deployment ids, so a request whose retries all landed on a dead
  primary still has somewhere to go (LiteLLM's documented answer to "retries hit the same node").
- ``routing_strategy: simple-shuffle`` (the default) spreads a tier evenly, like the plugin's
  weighted in-tier strategy on equal weights.

``plugin``: ``litellm_settings.callbacks: [litellm_failover.proxy_handler]`` plus
``failover_settings``:

- ``health``: probe every 0.5 s, 0.1 s while failing, a probe slower than 1 s fails: the drill's
  faults are seconds long, so detection has to be sub-second.
- ``failback``: hold-down 2 s, ramp 10 % -> 50 % -> 100 % every 2 s (both times
  ``--duration-scale``): short enough to finish inside a scenario, long enough to measure.
- ``outlier.base_ejection_s``: 3 s (times ``--duration-scale``; default 5 s): an ejection by
  traffic errors ends with a half-open probe, and a repeat doubles it (flap damping); 3 s keeps
  a fault, one repeat and the failback ramp inside a scenario's recovery phase.
- ``streams.resume: true`` with ``inter_token_timeout_s: 1.5``: a stream that stalls (hang, black
  hole) is treated as broken and continued elsewhere well inside the 3 s timeouts.
- ``sessions.enabled: false``: the drill's requests are single-turn; session pinning is tested on
  its own and would only blur the traffic shares measured here.
- ``database_url``: a SQLite file in the work directory, read back for the events.

Those are the ``tuned`` plugin settings (``--settings tuned``, the default). ``--settings default``
sets only ``database_url`` (the drill reads its events back) and the callback: every other
``failover_settings`` value is the plugin's own default, as a new user gets it, and
``--duration-scale`` does not touch them (scaled, they would not be the defaults); sessions stay
at their default (on: the drill's requests carry no session id, so nothing is pinned). The
LiteLLM side (timeouts, retries, ``order``) is the same under both, so the two runs differ only
in the plugin's settings. The scenario phases follow from the settings in use
(``litellm_failover.drill.timing``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

PROFILES = ("plugin", "plain")
# The plugin profile's settings: "tuned" to the drill's short phases, or the plugin's "default"s.
SETTINGS = ("tuned", "default")
REQUEST_TIMEOUT_S = 3
NUM_RETRIES = 2
RAMP_STEPS = (10.0, 50.0, 100.0)
HOLD_DOWN_S = 2.0
STEP_INTERVAL_S = 2.0
PLAIN_COOLDOWN_S = 5.0
BASE_EJECTION_S = 3.0
PLAIN_ALLOWED_FAILS = 1
FALLBACK_SUFFIX = "-fallback"


def deployment_id(group: str, node: str) -> str:
    """Deployment ids (and node names) are unique across the proxy: ``<scenario>-<node>``."""
    return f"{group}-{node}"


def short_id(group: str, value: str | None) -> str | None:
    """``sigkill_primary-p1`` -> ``p1`` (and ``...-s1-fb``, the plain fallback copy, -> ``s1``)."""
    if value is None:
        return None
    prefix = f"{group}-"
    short = value[len(prefix) :] if value.startswith(prefix) else value
    return short.removesuffix("-fb")


def _deployment(group: str, model_name: str, node: str, tier: int, api_base: str, suffix: str = "") -> dict:
    return {
        "model_name": model_name,
        "litellm_params": {
            "model": "hosted_vllm/fake-model",
            "api_base": api_base,
            "order": tier,
            "timeout": REQUEST_TIMEOUT_S,
            "stream_timeout": REQUEST_TIMEOUT_S,
        },
        "model_info": {"id": deployment_id(group, node) + suffix},
    }


def ramp_settings(scale: float) -> dict[str, Any]:
    return {
        "hold_down_s": round(HOLD_DOWN_S * scale, 3),
        "ramp_steps": list(RAMP_STEPS),
        "step_interval_s": round(STEP_INTERVAL_S * scale, 3),
    }


def build_config(
    profile: str,
    groups: Mapping[str, Iterable[tuple[str, int, str, str]]],
    *,
    workdir: Path,
    scale: float,
    settings: str = "tuned",
) -> dict[str, Any]:
    """The proxy config for ``profile``; ``groups``: scenario -> (node, tier, api_base, gpu_url).

    ``settings`` picks the plugin profile's ``failover_settings`` (``SETTINGS``); the plain
    profile has none, so it is the same under both."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    if settings not in SETTINGS:
        raise ValueError(f"settings must be one of {', '.join(SETTINGS)}, got {settings!r}")
    model_list: list[dict[str, Any]] = []
    fallbacks: list[dict[str, list[str]]] = []
    for group, nodes in groups.items():
        nodes = list(nodes)
        for node, tier, api_base, gpu_url in nodes:
            entry = _deployment(group, group, node, tier, api_base)
            if profile == "plugin" and gpu_url:
                entry["model_info"]["failover"] = {"gpu_url": gpu_url}
            model_list.append(entry)
        if profile == "plain":
            standbys = [(node, api_base) for node, tier, api_base, _ in nodes if tier > 1]
            for node, api_base in standbys:
                model_list.append(_deployment(group, group + FALLBACK_SUFFIX, node, 1, api_base, "-fb"))
            if standbys:
                fallbacks.append({group: [group + FALLBACK_SUFFIX]})
    router_settings: dict[str, Any] = {"num_retries": NUM_RETRIES, "retry_after": 0}
    config: dict[str, Any] = {"model_list": model_list, "router_settings": router_settings}
    if profile == "plain":
        router_settings.update(
            allowed_fails=PLAIN_ALLOWED_FAILS,
            cooldown_time=round(max(1.0, PLAIN_COOLDOWN_S * scale), 3),
            fallbacks=fallbacks,
            timeout=REQUEST_TIMEOUT_S,
            stream_timeout=REQUEST_TIMEOUT_S,
        )
        return config
    config["litellm_settings"] = {"callbacks": ["litellm_failover.proxy_handler"]}
    config["failover_settings"] = failover_settings(settings, workdir=workdir, scale=scale)
    return config


def failover_settings(settings: str, *, workdir: Path, scale: float) -> dict[str, Any]:
    """The plugin profile's ``failover_settings`` block: ``tuned`` (see the module docstring) or
    ``default`` (only what the drill must set: where the events go)."""
    if settings == "default":
        return {"database_url": database_url(workdir)}
    return {
        "database_url": database_url(workdir),
        "health": {"interval_s": 0.5, "failure_interval_s": 0.1, "max_probe_latency_s": 1.0},
        "outlier": {"base_ejection_s": round(max(0.5, BASE_EJECTION_S * scale), 3)},
        "failback": ramp_settings(scale),
        "streams": {"resume": True, "inter_token_timeout_s": 1.5},
        "sessions": {"enabled": False},
    }


def database_url(workdir: Path) -> str:
    return f"sqlite+aiosqlite:///{Path(workdir).resolve()}/failover.db"


_SECRET_KEYS = ("key", "secret", "password", "token")


def public_config(config: Any) -> Any:
    """The config as the report shows it: secret-looking values and URL credentials removed."""
    if isinstance(config, dict):
        return {
            key: "<redacted>"
            if any(part in str(key).lower() for part in _SECRET_KEYS) and isinstance(value, str)
            else public_config(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [public_config(item) for item in config]
    if isinstance(config, str) and "://" in config and "@" in config.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = config.split("://", 1)
        return f"{scheme}://<redacted>@{rest.split('@', 1)[1]}"
    return config
