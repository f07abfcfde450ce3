"""``litellm-failover chaos inject|clear``: fault injection on running proxies, for drills.

``chaos inject`` starts a fault (error, latency or stream_cut at a probability, for a bounded
time) on one deployment of every running replica; ``chaos clear`` ends faults early. Both travel
like the operator commands (``litellm_failover.cli.operate``: Redis with ``--redis-url``, else
the database), and replicas refuse them unless ``failover_settings.chaos.enabled`` is true. Bad
input exits 2 with nothing sent; the other exit codes are the operator commands' (0 applied
everywhere, 1 refused somewhere, 3 no answer in time).
"""

from __future__ import annotations

import argparse
from typing import Any

from litellm_failover.chaos.faults import FAULT_KINDS
from litellm_failover.cli.operate import add_delivery_arguments, deliver, print_delivery
from litellm_failover.durations import DURATION_HELP


def _inject_args(args: argparse.Namespace) -> dict[str, Any]:
    """The command's arguments as typed: ``build_command`` validates them (the same rules a
    replica applies), so every message names the option at fault."""
    return {
        "kind": args.fault_kind,
        "probability": args.probability,
        "duration_s": args.duration,
        "until": args.until,
        "status": args.status,
        "delay_s": args.delay,
        "after_chunks": args.after_chunks,
    }


async def _send(args: argparse.Namespace) -> int:
    raw = _inject_args(args) if args.kind == "chaos_inject" else {}
    outcome = await deliver(args, args.kind, args.target or "", raw)
    if isinstance(outcome, int):
        return outcome
    return print_delivery(outcome, as_json=args.json)


def register(subparsers: Any) -> None:
    chaos = subparsers.add_parser(
        "chaos",
        help="Fault injection for drills: inject errors, latency or stream cuts on running proxies.",
        description="Fault injection for drills (refused unless failover_settings.chaos.enabled).",
    )
    actions = chaos.add_subparsers(dest="chaos_command", required=True, metavar="ACTION")
    inject = actions.add_parser(
        "inject",
        help="Inject a fault into a deployment's attempts on every running proxy, for a bounded time.",
        description="Inject errors, latency or mid-stream cuts into a share of a deployment's attempts.",
    )
    inject.add_argument("target", metavar="DEPLOYMENT_ID", help="the deployment (its model_info.id)")
    inject.add_argument(
        "--kind", dest="fault_kind", metavar="KIND", help=f"the fault: {', '.join(FAULT_KINDS)}"
    )
    inject.add_argument("--probability", metavar="P", help="share of attempts hit: above 0, at most 1")
    ends = inject.add_mutually_exclusive_group()
    ends.add_argument("--for", dest="duration", metavar="DURATION", help=f"how long: {DURATION_HELP}")
    ends.add_argument(
        "--until", metavar="ISO-TIME", help="when it ends (e.g. 2026-05-01T14:30:00Z; no zone: UTC)"
    )
    inject.add_argument("--status", metavar="N", help="error: the HTTP status, 4xx or 5xx (default 503)")
    inject.add_argument("--delay", metavar="DURATION", help="latency: the added delay (e.g. 500ms, 2s)")
    inject.add_argument(
        "--after-chunks",
        dest="after_chunks",
        metavar="N",
        help="stream_cut: chunks of text before the cut (default 3)",
    )
    add_delivery_arguments(inject)
    inject.set_defaults(handler=_send, kind="chaos_inject")
    clear = actions.add_parser(
        "clear",
        help="End the injected faults on a deployment (or on all) on every running proxy.",
        description="End injected faults before their end time.",
    )
    clear.add_argument(
        "target", metavar="DEPLOYMENT_ID", nargs="?", default="", help="default: every deployment"
    )
    add_delivery_arguments(clear)
    clear.set_defaults(handler=_send, kind="chaos_clear")
    from litellm_failover.drill.cli import register as register_drill  # ``chaos drill``

    register_drill(actions)
