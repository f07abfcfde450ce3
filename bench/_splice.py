"""What a client reads at the splice when a stream breaks mid-answer, three profiles (issue 12 §4).

Fake vLLM nodes (subprocesses of this interpreter): p1, the primary, drops every stream after
``DROP_AFTER_CHUNKS`` chunks (``drop_midstream``); s1 (same group, ``order: 2``) and s2 (the
``chat-standby`` fallback group) are healthy. Every request is streamed on a fresh Router, so each
one meets p1 first (``bench/_splice_client.py``). Each profile runs twice: ``default``, LiteLLM's
default Router settings plus the fallback group, and ``tuned``, the failover drill's careful-user
settings as well (``num_retries: 2``, ``retry_after: 0``, ``allowed_fails: 1``, ``cooldown_time:
5``; ``litellm_failover.drill.profiles``). The plugin runs with its default settings in both.
Profiles:

- ``plain``: LiteLLM alone (this interpreter's LiteLLM);
- ``plugin``: the same Router with litellm-failover attached, default settings;
- ``litellm_continuation``: LiteLLM 1.109+ alone with ``enable_mid_stream_fallback_continuation``
  and ``model_info.supports_assistant_prefill``, run by ``--litellm-python`` (an interpreter with
  that LiteLLM; started with ``-I``, so nothing of ours is on its path). LiteLLM sends the partial
  text as a trailing assistant message with ``prefix: true``; vLLM's chat templates do not read
  ``prefix`` and, without ``continue_final_message``, open a new assistant turn after it, and so
  does the fake (``providers/fake/chat.py``).

Judged against the uninterrupted answer (the fake's answers are deterministic,
``providers/fake/text.py``; one word is one token): ``exact`` (the stitched text is the answer,
cut at ``max_tokens`` when it cuts), ``duplicated`` (the part after the splice restarts the
answer: text the client already has comes again), ``missing`` (the rest is short of the answer,
or is not the answer's rest at all: the words after the cut never arrive), ``error`` (the stream
raised); ``max_tokens kept`` (the stitched answer has at most the client's limit, and exactly the
uninterrupted answer's count when the limit cuts it); ``resume`` (the gap at the client between
the last chunk of p1 and the first chunk of the node that took over).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

try:  # python -m bench.failover_comparison
    from bench import _common as common
    from bench import _splice_client as client
except ImportError:  # python bench/failover_comparison.py: bench/ itself is on sys.path
    import _common as common  # type: ignore[no-redef]
    import _splice_client as client  # type: ignore[no-redef]

PROFILES = ("plain", "plugin", "litellm_continuation")
SETTINGS = ("default", "tuned")
VERDICTS = ("exact", "duplicated", "missing", "error")
DROP_AFTER_CHUNKS = 8
ROUNDS = 6  # per limit
LIMITS = (None, 16)  # no limit; a limit that cuts the 24-word answer
TOKENS_PER_S = 400.0
CHILD_CAP_S = 300.0
PYTHON_ENV = "LITELLM_FAILOVER_BENCH_CONTINUATION_PYTHON"
CLIENT = Path(__file__).resolve().with_name("_splice_client.py")


def requests() -> list[dict[str, Any]]:
    """The same requests, in the same order, for every profile."""
    out = []
    for limit in LIMITS:
        for index in range(ROUNDS):
            messages = [{"role": "user", "content": f"splice bench request {index} limit {limit}"}]
            out.append({"index": len(out), "messages": messages, "max_tokens": limit})
    return out


def router_settings(name: str) -> dict[str, Any]:
    """``default``: LiteLLM's own; ``tuned``: the drill's plain profile (why each: its module)."""
    if name == "default":
        return {}
    from litellm_failover.drill import profiles

    return {
        "num_retries": profiles.NUM_RETRIES,
        "retry_after": 0,
        "allowed_fails": profiles.PLAIN_ALLOWED_FAILS,
        "cooldown_time": profiles.PLAIN_COOLDOWN_S,
    }


def settings_name(settings: Mapping[str, Any]) -> str:
    return "tuned" if settings else "default"


async def _plain(
    nodes: Mapping[str, str], settings: Mapping[str, Any], batch: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    def make() -> Any:
        return client.make_router(nodes, settings, continuation=False)

    return {"samples": await client.run_rounds(nodes, batch, make)}


async def _plugin(
    nodes: Mapping[str, str], settings: Mapping[str, Any], batch: Sequence[Mapping[str, Any]], workdir: Path
) -> dict[str, Any]:
    from litellm_failover import attach

    plugins: dict[int, Any] = {}
    databases = itertools.count()

    async def make() -> Any:
        router = client.make_router(nodes, settings, continuation=False)
        # A database of its own per Router: nothing learnt by one round carries into the next.
        database = workdir / f"splice-{settings_name(settings)}-{next(databases)}.db"
        plugin = attach(router, {"database_url": f"sqlite+aiosqlite:///{database}"})
        await plugin.start()
        plugins[id(router)] = plugin
        return router

    async def close(router: Any) -> None:
        plugin = plugins.pop(id(router))
        await plugin.stop()
        plugin.detach()

    return {"samples": await client.run_rounds(nodes, batch, make, close)}


def _continuation(
    nodes: Mapping[str, str],
    settings: Mapping[str, Any],
    batch: Sequence[Mapping[str, Any]],
    python: str | None,
    workdir: Path,
) -> dict[str, Any]:
    """LiteLLM's own continuation, in ``python`` (a separate interpreter), or why it did not run."""
    if not python:
        if not client.has_continuation():
            return {"unavailable": "this interpreter's LiteLLM has no continuation (1.109+); "
                    f"pass --litellm-python or set {PYTHON_ENV}"}  # fmt: skip
        python = sys.executable
    config = workdir / "continuation.json"
    out = workdir / "continuation.out.json"
    out.unlink(missing_ok=True)
    body = {"nodes": dict(nodes), "settings": dict(settings), "requests": list(batch), "out": str(out)}
    config.write_text(json.dumps(body))
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no network here: skip the cost map's fetch retries
    done = subprocess.run(  # our own script, under a Python the user named
        [python, "-I", str(CLIENT), str(config)], env=env, capture_output=True, text=True, timeout=CHILD_CAP_S
    )
    if done.returncode != 0 or not out.exists():
        return {"unavailable": f"{python} exited {done.returncode}: {done.stderr.strip()[-400:]}"}
    return json.loads(out.read_text())


async def run_all(python: str | None, workdir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Every settings set and profile against the same nodes and requests."""
    from litellm_failover.providers.fake.process import FakeVLLMProcess

    batch = requests()
    nodes = {name: FakeVLLMProcess(name, tokens_per_s=TOKENS_PER_S) for name in ("p1", "s1", "s2")}
    judged: dict[str, dict[str, dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        for node in nodes.values():
            node.start()
            stack.callback(node.stop)
        nodes["p1"].set_fault("drop_midstream", after_chunks=DROP_AFTER_CHUNKS)
        bases = {name: node.api_base for name, node in nodes.items()}
        for name in SETTINGS:
            settings = router_settings(name)
            results = {
                "plain": await _plain(bases, settings, batch),
                "plugin": await _plugin(bases, settings, batch, workdir),
                "litellm_continuation": await asyncio.to_thread(
                    _continuation, bases, settings, batch, python, workdir
                ),
            }
            judged[name] = {profile: judge(results[profile], batch) for profile in PROFILES}
    return judged


# --- judging -----------------------------------------------------------------------------------


def classify(sample: Mapping[str, Any], expected: str, limit: int | None) -> dict[str, Any]:
    """One stream against the uninterrupted answer ``expected`` (already cut at ``limit``)."""
    chunks = sample["chunks"]
    text = "".join(chunk[2] for chunk in chunks)
    cut_at = next((i for i, chunk in enumerate(chunks) if chunk[1] != "p1"), None)
    spliced = cut_at is not None and cut_at > 0
    before = "".join(chunk[2] for chunk in chunks[:cut_at]) if spliced else text
    after = text[len(before) :]
    if sample["error"] is not None:
        verdict = "error"
    elif text == expected:
        verdict = "exact"
    elif spliced and after and expected.startswith(after.lstrip()) and before:
        verdict = "duplicated"  # the standby started the answer again after the cut
    else:
        verdict = "missing"
    tokens = len(chunks)  # the fake streams one token (a word) per chunk
    # Judged on finished streams only (a broken one kept nothing): at most the limit, and exactly
    # the uninterrupted answer's count, which the limit cut.
    kept = sample["error"] is None and tokens <= (limit or tokens) and tokens == len(expected.split())
    resume = chunks[cut_at][0] - chunks[cut_at - 1][0] if spliced else math.nan
    return {"verdict": verdict, "spliced": spliced, "tokens": tokens, "max_tokens_kept": kept,
            "resume_s": resume, "served_after_cut": chunks[cut_at][1] if spliced else None,
            "error": sample["error"]}  # fmt: skip


def judge(result: Mapping[str, Any], batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per profile: counts of each verdict, limits kept, resume times; or why it did not run."""
    from litellm_failover.providers.fake.text import DEFAULT_WORDS, expected_answer

    if "unavailable" in result:
        return {"unavailable": result["unavailable"]}
    by_index = {request["index"]: request for request in batch}
    rows = []
    for sample in result["samples"]:
        request = by_index[sample["index"]]
        limit = request["max_tokens"]
        expected = expected_answer(request["messages"], min(limit or DEFAULT_WORDS, DEFAULT_WORDS))
        text = "".join(chunk[2] for chunk in sample["chunks"])
        rows.append(
            {**classify(sample, expected, limit), "max_tokens": limit, "text": text, "expected": expected}
        )
    resume = [row["resume_s"] for row in rows if not math.isnan(row["resume_s"])]
    limited = [row for row in rows if row["max_tokens"] is not None and row["error"] is None]
    return {
        "litellm": result.get("litellm"),
        "streams": len(rows),
        "completed": sum(row["error"] is None for row in rows),
        "spliced": sum(row["spliced"] for row in rows),
        **{verdict: sum(row["verdict"] == verdict for row in rows) for verdict in VERDICTS},
        "limited": len(limited),
        "max_tokens_kept": sum(row["max_tokens_kept"] for row in limited),
        "resume_p50_s": common.percentile(resume, 50) if resume else math.nan,
        "resume_max_s": max(resume, default=math.nan),
        "rows": rows,
    }  # fmt: skip


def report(results: Mapping[str, Mapping[str, Mapping[str, Any]]], wall_s: float) -> dict[str, Any]:
    """Print the side-by-side table; the bench result with its goals (the plugin's side)."""
    columns = ("settings", "profile", "streams", "completed", "spliced", "exact", "duplicated", "missing",
               "broken", "max_tokens kept", "resume p50 s", "resume max s")  # fmt: skip
    rows, metrics, notes, goals = [], {}, [], []
    for name, profiles in results.items():
        for profile in PROFILES:
            r = profiles[profile]
            if "unavailable" in r:
                notes.append(f"{name} / {profile}: not run: {r['unavailable']}")
                continue
            rows.append((name, profile, r["streams"], r["completed"], r["spliced"], r["exact"],
                         r["duplicated"], r["missing"], r["error"], f"{r['max_tokens_kept']}/{r['limited']}",
                         r["resume_p50_s"], r["resume_max_s"]))  # fmt: skip
            for key in ("completed", "spliced", "exact", "duplicated", "missing", "error", "max_tokens_kept"):
                metrics[f"{name}_{profile}_{key}"] = float(r[key])
            metrics[f"{name}_{profile}_resume_p50_s"] = float(r["resume_p50_s"])
        plugin = profiles["plugin"]
        goals.append(common.Goal(f"{name}: plugin exact answers", plugin["exact"], ">=", plugin["streams"]))
        kept = plugin["max_tokens_kept"]
        goals.append(common.Goal(f"{name}: plugin max_tokens kept", kept, ">=", plugin["limited"]))
    title = f"mid-stream drop after {DROP_AFTER_CHUNKS} chunks: the stitched answer vs the uninterrupted one"
    common.print_rows(title, columns, rows, text_columns=2)
    print("max_tokens kept: of the finished streams with max_tokens 16 (the answer is 24 tokens)")
    for note in notes:
        print(note)
    for profile in PROFILES:
        rows_seen = (row for profiles in results.values() for row in profiles[profile].get("rows", []))
        sample = next((row for row in rows_seen if row["verdict"] != "exact"), None)
        if sample is not None:
            print(f"{profile}, a stream that is not exact (max_tokens {sample['max_tokens']}):\n"
                  f"  got      {sample['text']!r}\n  expected {sample['expected']!r}"
                  + (f"\n  error    {sample['error']}" if sample["error"] else ""))  # fmt: skip
    print(f"wall time: {wall_s:.0f} s")
    return common.result("splice", metrics, goals, {"settings": results, "notes": notes})


def run(python: str | None) -> dict[str, Any]:
    """The whole comparison, in a temporary folder (the plugin's SQLite files)."""
    import time

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-splice-") as tmp:
        results = asyncio.run(run_all(python or os.environ.get(PYTHON_ENV), Path(tmp)))
    return report(results, time.monotonic() - started)
