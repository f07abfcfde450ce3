"""The event loop's longest stall around a process's first requests through a Router, plugin or not.

LiteLLM does some work only once per process, lazily, while it serves the first request: its first
logged request imports ``custom_logger_registry`` (every LiteLLM integration and
``litellm.proxy.hooks``) through ``litellm_enterprise``'s callback check, about a second on the
event loop, and its first completion loads tiktoken's default encoding (in a worker thread, but
holding the GIL). The plugin's start does those imports in a worker thread
(``litellm_failover.litellm_compat.warmup``). This bench measures what is left.

Each profile runs in a fresh Python process (a module imported once stays imported), rounds
alternating: **litellm** (a Router alone), **plugin_no_warmup** (the plugin attached and started,
its warm-up replaced by a no-op: the plugin before the fix), **plugin**, and
**plugin_eager_pydantic** (the plugin, with ``DEFER_PYDANTIC_BUILD=false``: LiteLLM builds its
pydantic schemas at import, not at first use in the request path). Each process reports how long
``import litellm`` took, serves one fake vLLM node in-process, starts a task that sleeps 10 ms at a
time and records how late it wakes (the loop's stall), then sends two non-streamed requests and two
streamed ones through the Router, one at a time, and records the longest stall from each request's
start to 1 s after its answer (the success log runs after the answer). ``--stacks`` prints the main
thread's most sampled frames during stalls over 60 ms (a thread reads its stack every 20 ms), per
profile, to stderr.

Run: ``.venv/bin/python bench/first_request_stall.py`` (``--quick``: one round; ``--rounds N``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

try:  # python -m bench.first_request_stall
    from bench import _common as common
except ImportError:  # python bench/first_request_stall.py
    import _common as common  # type: ignore[no-redef]

PROFILES = ("litellm", "plugin_no_warmup", "plugin", "plugin_eager_pydantic")
# LiteLLM reads it at import: "false" builds its pydantic schemas then, not at their first use.
EAGER_PYDANTIC = {"DEFER_PYDANTIC_BUILD": "false"}
REQUESTS = ("first", "second", "first_stream", "second_stream")
TICK_S = 0.01
AFTER_ANSWER_S = 1.0  # the window after each answer in which LiteLLM's success log runs
STALL_SAMPLED_S = 0.06


class StackSampler:
    """Samples the main thread's stack every 20 ms from a daemon thread (``--stacks``)."""

    def __init__(self) -> None:
        self.main = threading.get_ident()
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(0.02)
            frame = sys._current_frames().get(self.main)
            if frame is not None:
                stack = traceback.extract_stack(frame)
                names = tuple(f"{f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}" for f in stack)
                self.samples.append((time.perf_counter(), names))

    def top(self, windows: list[tuple[float, float]], count: int = 25) -> list[tuple[int, str]]:
        inclusive: collections.Counter[str] = collections.Counter()
        for at, names in self.samples:
            if any(start <= at <= end for start, end in windows):
                inclusive.update(n for n in set(names) if "asyncio/" not in n and "<frozen" not in n)
        return [(n, name) for name, n in inclusive.most_common(count)]


async def child(profile: str, stacks: bool) -> dict[str, Any]:
    """One profile in this (fresh) process: the longest stall per request, in seconds."""
    sampler = StackSampler() if stacks else None
    started = time.perf_counter()
    import litellm

    import_s = time.perf_counter() - started

    from litellm_failover.providers.fake.vllm import FakeVLLM

    server = FakeVLLM("p1", tokens_per_s=0)
    await server.start()
    router = litellm.Router(
        model_list=[
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": "hosted_vllm/fake-model",
                    "api_base": server.api_base,
                    "timeout": 30,
                },
                "model_info": {"id": "p1", "failover": {"gpu_url": server.url, "probe": False}},
            }
        ],
        num_retries=0,
    )
    plugin = None
    if profile != "litellm":
        import tempfile

        import litellm_failover.plugin as plugin_module

        if profile == "plugin_no_warmup":

            async def no_warmup() -> tuple[str, ...]:
                return ()

            plugin_module.warm_first_request_imports = no_warmup  # type: ignore[assignment]
        database = tempfile.mkdtemp(prefix="bench-stall-")
        plugin = plugin_module.attach(router, {"database_url": f"sqlite+aiosqlite:///{database}/e.db"})
        await plugin.start()
    late: list[float] = []
    windows: list[tuple[float, float]] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            late.append(now - last - TICK_S)
            if now - last > STALL_SAMPLED_S:
                windows.append((last, now))
            last = now

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.2)
    stalls: dict[str, float] = {}
    for name in REQUESTS:
        late.clear()
        messages = [{"role": "user", "content": "hello"}]
        if name.endswith("stream"):
            async for _ in await router.acompletion(model="chat", messages=messages, stream=True):
                pass
        else:
            await router.acompletion(model="chat", messages=messages)
        await asyncio.sleep(AFTER_ANSWER_S)
        stalls[name] = max(late, default=0.0)
    ticking.cancel()
    if plugin is not None:
        await plugin.stop()
        plugin.detach()
    await server.stop()
    return {"stalls_s": stalls, "import_s": import_s, "stacks": sampler.top(windows) if sampler else []}


def run_profile(profile: str, stacks: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", profile] + (["--stacks"] if stacks else [])
    env = {**os.environ, **(EAGER_PYDANTIC if profile == "plugin_eager_pydantic" else {})}
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"profile {profile} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def run(rounds: int, stacks: bool) -> dict[str, Any]:
    per: dict[str, dict[str, list[float]]] = {p: {r: [] for r in (*REQUESTS, "import")} for p in PROFILES}
    sampled: dict[str, list[Any]] = {}
    for index in range(rounds):
        order = PROFILES if index % 2 == 0 else tuple(reversed(PROFILES))
        for profile in order:
            out = run_profile(profile, stacks)
            for name, value in out["stalls_s"].items():
                per[profile][name].append(round(value * 1000, 1))
            per[profile]["import"].append(round(out["import_s"] * 1000))
            sampled.setdefault(profile, out["stacks"])
    metrics = {
        f"{profile}_{name}_stall_ms": common.median(values)
        for profile, by_request in per.items()
        for name, values in by_request.items()
        if name != "import"
    }
    metrics.update(
        {f"{profile}_import_litellm_ms": common.median(per[profile]["import"]) for profile in PROFILES}
    )
    goals = [
        common.Goal(
            "plugin: first request's longest loop stall (ms)", metrics["plugin_first_stall_ms"], "<=", 250
        ),
        common.Goal(
            "plugin: second request's longest loop stall (ms)", metrics["plugin_second_stall_ms"], "<=", 50
        ),
    ]
    details = {"rounds": rounds, "stalls_ms_per_process": per, "stacks": sampled}
    return common.result("first_request_stall", metrics, goals, details)


def report(data: dict[str, Any]) -> None:
    m = data["metrics"]
    common.print_rows(
        f"longest event-loop stall per request, ms (median of {data['details']['rounds']} processes each)",
        ["profile", *REQUESTS, "import litellm"],
        [
            [
                profile,
                *(m[f"{profile}_{name}_stall_ms"] for name in REQUESTS),
                m[f"{profile}_import_litellm_ms"],
            ]
            for profile in PROFILES
        ],
    )
    for profile, frames in data["details"]["stacks"].items():
        if frames:
            print(f"--- {profile}: frames sampled during stalls", file=sys.stderr)
            for count, frame in frames:
                print(f"{count:4d} {frame}", file=sys.stderr)


def main() -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="processes per profile (default 3)")
    p.add_argument("--stacks", action="store_true", help="print the frames sampled during stalls")
    p.add_argument("--child", choices=PROFILES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.stacks))))
        return 0
    data = run(1 if args.quick else max(1, args.rounds), args.stacks)
    report(data)
    return common.finish(args, data)


if __name__ == "__main__":
    raise SystemExit(main())
