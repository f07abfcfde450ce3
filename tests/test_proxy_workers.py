"""Several workers and processes: ``litellm --config c.yaml --num_workers 2``, and N processes
migrating one store at once.

Each uvicorn worker is a process that imports the config and runs the proxy's start-up, so each
has its own handler, plugin and instance id (a replica). What is checked, as an operator would:
the kill test (a primary SIGKILLed under load costs no client error) through both workers; one
migration (the others wait on the lock and find the schema at head); each worker records a state
change once (rows are per-worker facts, told apart by ``instance_id``); a fixed ``metrics.port``
is served by one worker and the others say so once; ``status --live`` lists each worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from fake_nodes import running
from test_proxy_failover import ORDER, proxy_config, sigkill_primary_under_load
from waiting import free_port, wait_until

from litellm_failover.drill.proxy_process import ProxyProcess
from litellm_failover.providers.fake.process import FakeVLLMProcess
from litellm_failover.store.migrate import current_revision, head_revision
from litellm_failover.store.queries import list_events

pytest_plugins = ["services"]

# One process of the race: waits (bounded) for the go file, then migrates, logging Alembic's steps.
RACER = """
import asyncio, logging, sys, time
from pathlib import Path
from litellm_failover.store.migrate import upgrade_database
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
logging.getLogger("alembic.runtime.migration").setLevel(logging.INFO)
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.002)
asyncio.run(upgrade_database(url))
print("migrated")
"""


def start_racer(url: str, ready: Path, go: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", RACER, url, str(ready), str(go)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


async def race(url: str, tmp_path: Path, racers: int = 4) -> list[str]:
    """Start ``racers`` processes, let them all migrate ``url`` at once; their outputs."""
    go = tmp_path / "go"
    started = [start_racer(url, tmp_path / f"ready-{n}", go) for n in range(racers)]
    try:
        ready = [tmp_path / f"ready-{n}" for n in range(racers)]
        await wait_until(lambda: all(path.exists() for path in ready), 30, "racers ready")
        go.touch()
        outputs = [await asyncio.to_thread(racer.communicate, timeout=60) for racer in started]
    finally:
        for racer in started:
            if racer.poll() is None:
                racer.kill()
    texts = [out for out, _ in outputs]
    assert [racer.returncode for racer in started] == [0] * racers, texts
    assert all(text.rstrip().endswith("migrated") for text in texts), texts
    return texts


async def test_processes_migrating_one_sqlite_file_at_once_migrate_it_once(tmp_path: Path):
    """Before the lock, 2-3 of 4 racers failed with "database is locked"."""
    url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    texts = await race(url, tmp_path)
    # Exactly one process ran the migrations; the others found the schema at head.
    assert len([text for text in texts if "Running upgrade" in text]) == 1, texts
    assert await current_revision(url) == head_revision()
    assert (tmp_path / "events.db.migrate.lock").exists()


async def test_processes_migrating_one_postgresql_schema_at_once_migrate_it_once(
    tmp_path: Path, postgres_schema_url: str
):
    texts = await race(postgres_schema_url, tmp_path)
    assert len([text for text in texts if "Running upgrade" in text]) == 1, texts
    assert await current_revision(postgres_schema_url) == head_revision()


WORKERS = 2
CLI = str(Path(sys.executable).with_name("litellm-failover"))  # a separate process, as an operator runs it


@pytest.fixture
def nodes():
    with running({name: FakeVLLMProcess(name, tokens_per_s=400) for name in ORDER}) as started:
        yield started


@pytest.mark.proxy
@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
async def test_a_two_worker_proxy_survives_a_sigkilled_primary(nodes, tmp_path: Path, server: str):
    database_url = f"sqlite+aiosqlite:///{tmp_path}/events.db"
    metrics_port = free_port()
    config = proxy_config(
        nodes,
        database_url,
        metrics={"port": metrics_port},
        control={"poll_interval_s": 0.1, "heartbeat_interval_s": 0.5},
    )
    proxy = ProxyProcess(config, tmp_path, num_workers=WORKERS, server=server)
    proxy.database_url = database_url  # type: ignore[attr-defined]
    with proxy:
        # Each worker is a replica that heartbeats: status --live lists every one.
        live: list[dict] = []
        last_answer: list[str] = [""]

        async def workers_listed() -> bool:
            out = await asyncio.to_thread(
                subprocess.run,
                [CLI, "status", "--live", "--url", database_url, "--json"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            last_answer[0] = (
                f"exit {out.returncode}\nstdout: {out.stdout[-2000:]}\nstderr: {out.stderr[-2000:]}"
            )
            if out.returncode != 0:
                return False
            live[:] = json.loads(out.stdout)["results"]
            return len(live) == WORKERS

        try:
            await wait_until(workers_listed, 60, f"status --live to list {WORKERS} workers")
        except AssertionError as exc:
            # What the operator would see, and the workers' side: enough to tell a worker that
            # never started from one that started and stopped answering.
            alive = proxy.wait_exit(0) is None
            if alive:
                await dump_worker_stacks(proxy)
            raise AssertionError(
                f"{exc}\nproxy running: {alive}\nlast status --live: {last_answer[0]}\n"
                f"proxy log:\n{proxy.log_tail(400)}"
            ) from exc
        instances = {result["instance_id"] for result in live}
        assert len(instances) == WORKERS
        for result in live:
            assert set(result["details"]["groups"]["chat"]["deployments"][0]) >= {"deployment_id", "state"}

        await sigkill_primary_under_load(proxy, nodes)

        # Every worker saw p1 go down, and recorded it once: one row per (worker, transition).
        async def each_worker_recorded_it() -> bool:
            events = await list_events(database_url, event_type="state_change", limit=1000)
            down = {e["instance_id"] for e in events if is_p1_down(e)}
            return down == instances

        await wait_until(each_worker_recorded_it, 15, "every worker's p1 unhealthy row")
        events = await list_events(database_url, event_type="state_change", limit=1000)
        assert {e["instance_id"] for e in events} <= instances
        assert Counter(e["instance_id"] for e in events if is_p1_down(e)) == dict.fromkeys(instances, 1)
        by_worker: dict[str, list[str]] = defaultdict(list)
        for e in events:
            if e["deployment_id"] == "p1":
                by_worker[e["instance_id"]].append(e["details"]["to_state"])
        for states in by_worker.values():  # a transition is a change: never the same state twice
            assert all(a != b for a, b in itertools.pairwise(states)), by_worker
        assert len({e["id"] for e in events}) == len(events)

    log = proxy.log_path.read_text(errors="replace")
    # One migration for the two workers: the schema is at head, migrated under the file lock.
    assert await current_revision(database_url) == head_revision()
    assert (tmp_path / "events.db.migrate.lock").exists()
    # The fixed metrics port: the first worker serves it, the other says so once and runs on.
    assert log.count(f"metrics.port {metrics_port} is served by another worker") == WORKERS - 1
    assert "could not start" not in log


def children_of(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (Linux ``/proc``)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:  # the field after the state: the parent's pid
                children.append(int(stat.parent.name))
    return children


async def dump_worker_stacks(proxy: ProxyProcess) -> None:
    """Make each worker write every thread's stack into the proxy's log before the test fails: a
    worker stuck (a lock held across the fork, a blocked loop) shows where. ``ProxyProcess`` runs
    the proxy with ``PYTHONFAULTHANDLER=1``, whose handler dumps the stacks on a fatal signal, from
    C, even with the loop's thread stuck. SIGSEGV, not SIGABRT: gunicorn's workers handle SIGABRT
    themselves (a Python handler, which a stuck thread never runs). The "was sent SIGSEGV" lines
    in the log are these."""
    workers = children_of(proxy.pid) if proxy.pid is not None else []
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSEGV)

    def dumped() -> bool:
        return proxy.log_path.read_text(errors="replace").count("most recent call first") >= len(workers)

    with contextlib.suppress(AssertionError):  # a worker that could not dump: the log says so
        await wait_until(dumped, 5, "the workers' stacks in the log")


def is_p1_down(event: dict) -> bool:
    return event["deployment_id"] == "p1" and event["details"]["to_state"] == "unhealthy"
