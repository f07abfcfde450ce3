"""``litellm-failover fake-vllm``: run one fake vLLM node in the foreground.

Drills and the subprocess helper need a node that lives in its own process, so that killing it
(SIGKILL) looks to the plugin exactly like a GPU node dying: refused connections, not 500s.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from litellm_failover.providers.fake.faults import FAULT_MODES, FaultError
from litellm_failover.providers.fake.text import DEFAULT_WORDS
from litellm_failover.providers.fake.vllm import DEFAULT_MODEL, DEFAULT_TOKENS_PER_S, FakeVLLM


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fake-vllm`` subcommand."""
    parser = subparsers.add_parser(
        "fake-vllm",
        help="run a fake vLLM server (OpenAI API, /metrics and a GPU sidecar, all on one port) with faults",
        description=(
            "Serve a fake vLLM node until SIGTERM/SIGINT: the OpenAI API, /health, /metrics and a "
            "simulated GPU sidecar (/gpu-status, /gpu-memory), all on --port; point a deployment's "
            "model_info.failover.gpu_url at http://HOST:PORT. Faults can be set at start with --fault "
            'or at run time with POST /control/fault {"mode": ...}; DELETE /control/fault clears.'
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="port to bind")
    parser.add_argument(
        "--name", required=True, help="node name, sent in x-fake-vllm-name and system_fingerprint"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"served model name (default {DEFAULT_MODEL})")
    parser.add_argument("--words", type=int, default=DEFAULT_WORDS, help="words per answer (default 24)")
    parser.add_argument(
        "--tokens-per-s",
        type=float,
        default=DEFAULT_TOKENS_PER_S,
        help="stream rate, 0 = unthrottled (default 200)",
    )
    parser.add_argument(
        "--chunk-tokens",
        default="1",
        metavar="N[,N...]",
        help="tokens per streamed chunk, cycled; 0 is a chunk with no text, e.g. 3 or 1,3,0,2 (default 1)",
    )
    parser.add_argument("--fault", choices=sorted(FAULT_MODES), help="fault mode in force from the start")
    parser.add_argument(
        "--fault-param",
        type=_key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of --fault, e.g. delay_s=2 or after_chunks=3 (repeatable)",
    )
    parser.set_defaults(handler=run)


def _server_from_args(args: argparse.Namespace) -> FakeVLLM:
    """Build and configure the server; ``ValueError`` (incl. ``FaultError``) means bad arguments."""
    if args.fault_param and not args.fault:
        raise ValueError("--fault-param needs --fault")
    server = FakeVLLM(
        args.name,
        args.host,
        args.port,
        model=args.model,
        words=args.words,
        tokens_per_s=args.tokens_per_s,
        chunk_tokens=args.chunk_tokens,
    )
    if args.fault:
        server.set_fault(args.fault, **dict(args.fault_param))
    return server


async def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or SIGINT, then stop cleanly (in-flight hangs are released)."""
    try:
        server = _server_from_args(args)
    except (ValueError, FaultError) as exc:
        print(f"litellm-failover fake-vllm: {exc}", file=sys.stderr)
        return 2
    try:
        await server.start()
    except OSError as exc:
        print(f"litellm-failover fake-vllm: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fault = f" (fault: {server.fault.as_dict()})" if server.fault else ""
    print(f"fake-vllm {server.name} serving {server.model} at {server.api_base}{fault}", flush=True)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.stop()
    return 0
