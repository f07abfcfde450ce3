"""``litellm-failover gpu-agent``: serve this host's NVML readings for the probes to read.

Deployments point ``model_info.failover.gpu_url`` at it (``gpu_source: agent``). Bind to a
reachable address (``--host 0.0.0.0``) when the proxy runs on another host. Port 9400 is also
dcgm-exporter's default: pick another when both run on one host.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from litellm_failover.durations import DURATION_HELP, duration_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gpu-agent",
        help="serve GPU memory, health and XID/ECC errors read through NVML",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9400, help="port to bind (default 9400)")
    parser.add_argument(
        "--interval",
        type=duration_arg(),
        default=1.0,
        metavar="DURATION",
        help=f"time between NVML readings (default 1s); {DURATION_HELP}",
    )
    parser.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    from litellm_failover.providers.gpu_agent import Sampler, run_agent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    sampler = Sampler(interval_s=args.interval)

    def ready() -> None:
        print(f"gpu-agent listening on http://{args.host}:{args.port}", flush=True)

    try:
        await run_agent(args.host, args.port, stop=stop, sampler=sampler, on_ready=ready)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return 0
