"""How a probe leaves this host: the TLS trust it uses and whether it goes through a proxy.

A probe of a hosted API must take the road the deployment's real requests take, or it measures
the wrong thing: a team behind an egress proxy whose requests reach OpenAI through
``HTTPS_PROXY`` would otherwise see every hosted standby as down, and a team with a private CA
(set as LiteLLM's ``ssl_verify``) would see TLS errors its traffic never has. So hosted kinds
(``openai``, ``azure``, ``anthropic``, ``openai-compatible``) follow what LiteLLM's HTTP client
follows:

- Proxy: ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` and ``NO_PROXY`` (either case), which
  LiteLLM's aiohttp transport honours unless ``litellm.disable_aiohttp_trust_env`` (or the
  ``DISABLE_AIOHTTP_TRUST_ENV`` variable) turns that off; then probes go direct too.
- TLS: the deployment's ``litellm_params.ssl_verify``, else ``SSL_VERIFY``, else
  ``litellm.ssl_verify``, as LiteLLM resolves it: ``false`` skips verification, a file path is
  the CA bundle to trust. ``SSL_CERT_FILE`` is honoured by OpenSSL's default store.

Self-hosted kinds (vLLM, SGLang, TGI) are probed directly, as before (their health and metrics
pages are on the inside network), and accept ``model_info.failover.ca_file`` for a server with a
certificate from a private CA. ``ca_file`` on a hosted deployment overrides LiteLLM's setting.

This module reads LiteLLM through ``sys.modules`` and never imports it: the providers package
must stay importable without LiteLLM (the GPU agent).
"""

from __future__ import annotations

import functools
import os
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litellm_failover.settings import DeploymentFailoverConfig

_FALSE = frozenset({"false", "0", "no", "off"})
_TRUE = frozenset({"true", "1", "yes", "on"})


@dataclass(frozen=True, slots=True)
class Egress:
    """A probe's route out: hashable, so the probe client keeps connections per route."""

    verify: bool = True
    ca_file: str | None = None
    env_proxy: bool = False  # honour HTTPS_PROXY / NO_PROXY (hosted kinds)


DIRECT = Egress()


class CaFileError(ssl.SSLError):
    """The CA bundle could not be loaded (the file changed since the configuration was read)."""


@functools.cache
def ssl_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """One context per trust setting, built once: loading a CA store takes milliseconds."""
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        detail = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
        raise CaFileError(f"cannot load CA file {ca_file}: {detail}") from None


def _bool_text(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in _FALSE:
        return False
    if lowered in _TRUE:
        return True
    return None


def _checked_ca_file(path: str, where: str) -> str:
    from litellm_failover.settings import FailoverConfigError

    if not os.path.isfile(path):
        raise FailoverConfigError(f"invalid configuration: {where}: CA file {path!r} does not exist")
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise FailoverConfigError(
            f"invalid configuration: {where}: {path!r} is not a PEM CA bundle ({type(exc).__name__})"
        ) from None
    return path


def _verify_value(value: Any, where: str) -> tuple[bool, str | None]:
    """LiteLLM's ``ssl_verify``: a bool, a boolean string, or a CA bundle path."""
    if isinstance(value, bool):
        return value, None
    text = str(value)
    as_bool = _bool_text(text)
    if as_bool is not None and not os.path.exists(text):
        return as_bool, None
    return True, _checked_ca_file(text, where)


def litellm_ssl_verify() -> Any:
    """LiteLLM's process-wide ``ssl_verify`` (``True`` when LiteLLM is not loaded)."""
    litellm = sys.modules.get("litellm")
    return getattr(litellm, "ssl_verify", True) if litellm is not None else True


def litellm_trusts_env() -> bool:
    """Whether LiteLLM's HTTP client takes proxies from the environment (its default)."""
    litellm = sys.modules.get("litellm")
    if litellm is not None and getattr(litellm, "disable_aiohttp_trust_env", False) is True:
        return False
    return _bool_text(os.environ.get("DISABLE_AIOHTTP_TRUST_ENV", "false")) is not True


def egress_for(
    self_hosted: bool,
    litellm_params: Mapping[str, Any],
    config: DeploymentFailoverConfig,
    *,
    where: str,
) -> Egress:
    """The route of one deployment's probes; configuration errors name the key at fault."""
    failover = f"{where}.model_info.failover"
    if config.ca_file is not None:
        ca_file = _checked_ca_file(config.ca_file, f"{failover}.ca_file")
        return Egress(verify=True, ca_file=ca_file, env_proxy=not self_hosted and litellm_trusts_env())
    if self_hosted:
        return DIRECT
    from litellm_failover.providers import env_ref

    raw = litellm_params.get("ssl_verify")
    own = raw if isinstance(raw, bool) else env_ref(raw, where=f"{where}.litellm_params.ssl_verify")
    if own is not None:
        verify, ca_file = _verify_value(own, f"{where}.litellm_params.ssl_verify")
    elif os.environ.get("SSL_VERIFY"):
        verify, ca_file = _verify_value(os.environ["SSL_VERIFY"], "the SSL_VERIFY environment variable")
    else:
        verify, ca_file = _verify_value(litellm_ssl_verify(), "litellm.ssl_verify")
    return Egress(verify=verify, ca_file=ca_file, env_proxy=litellm_trusts_env())
