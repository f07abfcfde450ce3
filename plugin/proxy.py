"""The LiteLLM proxy entry point: ``litellm_settings: {callbacks: ["litellm_failover.proxy_handler"]}``.

The proxy builds callbacks while it loads config.yaml, before it builds its Router. So the handler
validates ``failover_settings`` and every ``model_info.failover`` at once, in the config LiteLLM
loaded (``config_file.validate_config``; a bad value stops the proxy, reported first as a framed
block on stderr naming the key path), then attaches to the proxy's Router as soon as it exists:
from a start-up task, or on the first routed request, whichever comes first. Deployments are read
from the Router, live (``deployments_watch``). The plugin's background work stops, and the store
writer flushes, at the end of the proxy's graceful shutdown.

A plugin that fails to start (a port in use, a database it can't migrate, Redis refusing) is never
left half-attached: it stops what it started and detaches, so the proxy serves with LiteLLM's own
behaviour (its cooldowns back on, the handler gone from ``litellm.callbacks``), and says why in
one ERROR log line. A bad configuration is different: it stops the proxy before it serves.
Each worker of ``--num_workers N`` is a process with its own handler, plugin and instance id.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from litellm_failover.config_file import load_proxy_config, validate_config
from litellm_failover.handler import FailoverHandler
from litellm_failover.litellm_compat import LiteLLMCompatError, check_hooks, current_deployments, probing
from litellm_failover.litellm_compat.server import server_of
from litellm_failover.metrics.exporter import proxy_workers
from litellm_failover.offline import keep_tokenizer_downloads_off_the_loop
from litellm_failover.plugin import FailoverPlugin
from litellm_failover.settings import FailoverConfigError, FailoverSettings

logger = logging.getLogger("litellm_failover")

ROUTER_WAIT_S = 120.0


def _config_path() -> str | None:
    with contextlib.suppress(Exception):
        from litellm.proxy import proxy_server

        if proxy_server.user_config_file_path:
            return str(proxy_server.user_config_file_path)
    return os.environ.get("CONFIG_FILE_PATH") or os.environ.get("LITELLM_FAILOVER_CONFIG")


def _loaded_config() -> Mapping[str, Any] | None:
    """The config LiteLLM's proxy loaded, as it uses it: ``include:`` files merged, ``os.environ/``
    and secret-manager references resolved, from a file, a bucket or its database. LiteLLM keeps
    unknown top-level keys such as ``failover_settings`` in it, and stores it before it builds the
    callbacks (``ProxyConfig.get_config`` runs before ``load_config`` reaches ``callbacks``).
    None outside the proxy, or before it has loaded one."""
    with contextlib.suppress(Exception):
        from litellm.proxy import proxy_server

        state = proxy_server.proxy_config.get_config_state()
        if state:
            return dict(state)
    return None


def report_startup_error(error: FailoverConfigError, path: str) -> None:
    """Write a configuration error to stderr as a framed block, before the proxy prints its own
    traceback: the one thing to fix must not be the last line of a few hundred."""
    print(startup_banner(error, path), file=sys.stderr, flush=True)


def startup_banner(error: FailoverConfigError, path: str) -> str:
    rule = "=" * 78
    lines = [
        rule,
        f"litellm-failover: invalid configuration in {path}; the proxy will not start:",
        *(f"  - {problem}" for problem in error.problems),
        f"Check a fix without starting the proxy: litellm-failover config check {path}",
        rule,
    ]
    return "\n".join(lines)


def hook_server_shutdown(stop: Callable[[], Awaitable[None]]) -> bool:
    """Run ``stop`` at the end of uvicorn's graceful shutdown.

    On SIGTERM uvicorn shuts down, then re-raises the signal with the default handler, which ends
    the process before asyncio would cancel (and let finish) the plugin's tasks: the writer's last
    rows would be lost. LiteLLM offers callbacks no shutdown hook, so the plugin wraps the uvicorn
    server's ``shutdown``; the server is the owner of the SIGTERM handler it installed. Under
    another server this finds nothing and the task-cancellation path stops the plugin instead.
    """
    server = server_of(signal.getsignal(signal.SIGTERM))  # 1.110's proxy wraps uvicorn's handler
    original = getattr(server, "shutdown", None)
    if server is None or not inspect.iscoroutinefunction(original):
        return False

    async def shutdown(*args: Any, **kwargs: Any) -> Any:
        try:
            return await original(*args, **kwargs)
        finally:
            await stop()

    server.shutdown = shutdown
    return True


def refuse_to_serve(error: LiteLLMCompatError) -> None:
    """The installed LiteLLM lacks a piece the plugin needs: say which, framed on stderr, and stop
    the proxy (SIGTERM to itself, so it shuts down gracefully) rather than let it serve without
    the failover it was configured with."""
    rule = "=" * 78
    print(f"{rule}\n{error}\n{rule}", file=sys.stderr, flush=True)
    logger.error("%s", error)
    os.kill(os.getpid(), signal.SIGTERM)


class ProxyFailoverHandler(FailoverHandler):
    def __init__(self, settings: FailoverSettings) -> None:
        super().__init__()
        level = os.environ.get("LITELLM_FAILOVER_LOG_LEVEL")
        if level:
            logging.basicConfig()
            logger.setLevel(level.upper())
        self.settings = settings
        self._lifecycle: asyncio.Task[None] | None = None
        self._stopped = False
        self._starting: asyncio.Future[None] | None = None  # the plugin's start, while it runs
        self._refused: LiteLLMCompatError | None = None
        self.failed: str | None = None  # why the plugin could not start; then it stays detached
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            self._lifecycle = loop.create_task(self._run(), name="failover:proxy")

    def _attach(self) -> FailoverPlugin | None:
        if self.plugin is not None or self.failed is not None:
            return self.plugin
        from litellm.proxy import proxy_server

        router = proxy_server.llm_router
        if router is None:
            return None
        if self.settings.instance_id and proxy_workers() > 1:
            logger.warning(
                "litellm-failover: instance_id %r is set and this proxy runs %d workers: every worker "
                "claims it, so status --live and the events can't tell them apart; leave it unset",
                self.settings.instance_id,
                proxy_workers(),
            )
        try:
            FailoverPlugin(router, self.settings, handler=self)  # sets self.plugin
        except LiteLLMCompatError:
            raise  # this LiteLLM lacks a piece the plugin needs: the proxy refuses to serve
        except Exception as exc:
            # The plugin rolled LiteLLM back (``FailoverPlugin`` is all or nothing): this request
            # and the next go LiteLLM's own way.
            self._give_up(exc)
            return None
        logger.info(
            "litellm-failover attached to the proxy router (%d deployments)", len(current_deployments(router))
        )
        return self.plugin

    async def _run(self) -> None:
        """Wait for the proxy's Router, start the plugin, and stop it when the loop shuts down."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ROUTER_WAIT_S
        try:
            plugin = self._attach()
            while plugin is None and self.failed is None and loop.time() < deadline:
                await asyncio.sleep(0.05)
                plugin = self._attach()
            if plugin is None:
                if self.failed is None:  # (a failed attach has said why, once)
                    logger.error("litellm-failover: the proxy built no Router within %.0fs", ROUTER_WAIT_S)
                return
            # Hooked before the start, which takes seconds (more under load): a SIGTERM meanwhile
            # still stops the plugin, and its writer flushes the rows held since the attach
            # (outlier ejections of the first requests); hooked after, they died with the process.
            hook_server_shutdown(self._stop)
            self._starting = asyncio.ensure_future(plugin.start())
            await self._starting
        except LiteLLMCompatError as exc:
            refuse_to_serve(exc)
            return
        except Exception as exc:
            # ``start`` stopped what it had started and detached: LiteLLM's cooldowns, callbacks
            # and streams are as they were without the plugin. Say so loudly, once.
            self._stopped = True
            self._give_up(exc)
            return
        try:
            await asyncio.Event().wait()
        finally:
            await self._stop()

    def _give_up(self, exc: BaseException) -> None:
        self.failed = f"{type(exc).__name__}: {exc}"
        logger.error(
            "litellm-failover could not start and has detached; this proxy worker (pid %d) routes "
            "with LiteLLM's own behaviour (cooldowns and retries as configured for LiteLLM): %s",
            os.getpid(),
            self.failed,
            exc_info=exc,
        )

    async def _stop(self) -> None:
        plugin = self.plugin
        if plugin is None or self._stopped:
            return
        self._stopped = True
        starting = self._starting
        if starting is not None and not starting.done():
            # The server shuts down while the plugin starts: cancel the start, whose failure path
            # stops what it started (the writer flushing what it holds) and detaches. Waiting for
            # the start instead could hold the shutdown as long as a hung Redis or database does.
            starting.cancel()
            await asyncio.wait({starting})
            logger.info("litellm-failover stopped while starting; store writer: %s", plugin.writer.stats())
            return
        await plugin.stop()
        logger.info("litellm-failover stopped; store writer: %s", plugin.writer.stats())

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list,
        messages: Any,
        request_kwargs: dict | None = None,
        parent_otel_span: Any = None,
    ) -> list[dict]:
        if self.plugin is None and self._refused is None and not probing():
            try:
                self._attach()
            except LiteLLMCompatError as exc:
                refuse_to_serve(exc)
                self._refused = exc  # a request beat the start-up task: route with the plugin anyway
        return await super().async_filter_deployments(
            model, healthy_deployments, messages, request_kwargs, parent_otel_span
        )

    # The proxy wraps its chunk iterator only with hooks a callback's own class defines (it looks
    # in ``type(callback).__dict__``), so the inherited resuming hook is named here again.
    async_post_call_streaming_iterator_hook = FailoverHandler.async_post_call_streaming_iterator_hook


_instance: ProxyFailoverHandler | None = None


def proxy_handler() -> ProxyFailoverHandler:
    """The proxy's handler, built once from the config the proxy is loading."""
    global _instance
    if _instance is None:
        keep_tokenizer_downloads_off_the_loop()  # before the proxy serves its first request
        check_hooks(ProxyFailoverHandler)  # a LiteLLM without the hooks: the proxy does not start
        path = _config_path()
        loaded = _loaded_config()
        if path is None and loaded is None:
            raise FailoverConfigError(
                "litellm_failover.proxy_handler: no config file found (start the proxy with --config)"
            )
        where = path or "the config LiteLLM loaded"
        try:
            # What LiteLLM loaded, not the file read again: the file is the fallback only.
            config = validate_config(loaded, where) if loaded is not None else load_proxy_config(str(path))
        except FailoverConfigError as exc:
            report_startup_error(exc, where)
            raise
        _instance = ProxyFailoverHandler(config.settings)
    return _instance
