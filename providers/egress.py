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

Self-hosted kinds (vLLM, SGLang, TGI) are probed directly, as before (their health, metrics and
GPU telemetry pages are on the inside network), and accept ``model_info.failover.ca_file`` for
servers with a certificate from a private CA: every read of the deployment's probe trusts it, the
GPU agent or DCGM exporter at ``gpu_url`` included. ``ca_file`` on a hosted deployment overrides
LiteLLM's setting. A bundle replaced on disk (a rotated CA) is trusted from the next probe on.

This module reads LiteLLM through ``sys.modules`` and never imports it: the providers package
must stay importable without LiteLLM (the GPU agent).
"""

from __future__ import annotations

import functools
import os
import ssl
import sys
import threading
from collections import OrderedDict
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
    """The CA bundle could not be loaded (the file changed since the configuration was read).

    Raised when a probe needs the bundle, so it becomes that probe's failed check (naming the
    file) and the next round tries the file again (``ssl_context`` keeps only a loaded bundle):
    a bundle caught mid-replacement heals on its own.
    """

    def __init__(self, path: str | None, detail: str) -> None:
        super().__init__(f"cannot load CA file {path}: {detail}")
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])  # SSLError's own would show the args tuple


CA_FILES_KEPT = 32
"""CA bundles whose context is kept, one per path (its current version), least recently used out.

Paths come from the configuration, so this is rarely reached; a version replaced on disk takes
its path's entry, never a new one, so rotating a bundle does not grow the cache.
"""

_ca_contexts: OrderedDict[str, tuple[tuple[int, ...], ssl.SSLContext]] = OrderedDict()
_ca_contexts_lock = threading.Lock()  # probes run on one loop, but a process may hold several


def ssl_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """The context for a trust setting; a CA bundle's is rebuilt when the file changes.

    Operators rotate private CAs by replacing the file (in place, or as Kubernetes does for a
    mounted secret: an atomic swap of the ``..data`` symlink), and a probe still trusting the old
    CA would fail a server whose certificate moved to the new one while the deployment's traffic
    works. So every call reads the file's identity (one ``os.stat``, through symlinks) and loads
    the bundle again when it differs from the loaded one's: loading takes milliseconds, the stat
    microseconds. The stat comes before the load, so a file replaced between the two is loaded
    new under the old identity and loaded once more at the next call: never the reverse.
    """
    if not verify:
        return _unverified_context()
    if ca_file is None:
        return _system_context()
    identity = _file_identity(ca_file)
    with _ca_contexts_lock:
        kept = _ca_contexts.get(ca_file)
        if kept is not None and kept[0] == identity:
            _ca_contexts.move_to_end(ca_file)
            return kept[1]
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        detail = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
        raise CaFileError(ca_file, detail) from None
    with _ca_contexts_lock:
        _ca_contexts[ca_file] = (identity, context)
        _ca_contexts.move_to_end(ca_file)
        while len(_ca_contexts) > CA_FILES_KEPT:
            _ca_contexts.popitem(last=False)
    return context


def _file_identity(path: str) -> tuple[int, ...]:
    """What changes when the file is replaced: another inode (a rename or a symlink swap) or a
    rewrite in place (size, modification or change time). Unseen: a rewrite in place to the same
    size within one tick of the file system's clock after the load, which no rotation tool does
    (they rename, swap a link, or write the file once)."""
    try:
        stat = os.stat(path)  # follows symlinks: the file the bundle would be read from
    except OSError as exc:
        raise CaFileError(path, exc.strerror or type(exc).__name__) from None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@functools.cache
def _system_context() -> ssl.SSLContext:
    """The system store (and ``SSL_CERT_FILE``), loaded once: it has no one file to watch."""
    return ssl.create_default_context()


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
