"""The drill result format ("litellm-failover-drill/1"): validation and the JSON file.

The drill writes its result once, at the end of a run of several minutes; a malformed result found
only when someone opens the report (or when bench/ compares two runs) would waste that run. So
every writer validates first, and every error names the exact key path
(``scenarios[2].timeline.served.p1``) and what was wrong with it.

Extra keys are allowed anywhere (later drills may add measurements); missing or ill-typed required
keys are not. Any numeric field may be ``null`` (not measured / not applicable). A skipped scenario
may also leave ``latency_ms`` and ``timeline`` null.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

SCHEMA = "litellm-failover-drill/1"
PROFILES = ("plugin", "plain")
STATUSES = ("passed", "failed", "skipped")
MARKER_KINDS = ("fault", "restore", "failover", "failback", "panic")
COUNTS = ("requests", "streams", "client_errors", "broken_streams", "resumed_streams")
SCENARIO_TIMES = ("fault_at_s", "restored_at_s", "time_to_first_standby_s", "time_to_failback_s")
RAMP_VERDICTS = ("ok", "failed", "not measured")
MAX_ERROR_SAMPLES = 5


class DrillReportError(ValueError):
    """A drill result or report file that does not match the schema; the message names the key path."""


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _fail(path: str, problem: str, value: Any = None, *, show: bool = True) -> DrillReportError:
    shown = f" (got {_short(value)})" if show else ""
    return DrillReportError(f"drill result: {path or '<top>'}: {problem}{shown}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _get(obj: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in obj:
        raise _fail(_join(path, key), "required key missing", show=False)
    return obj[key]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any, path: str, *, nullable: bool = True, minimum: float | None = None) -> None:
    if value is None and nullable:
        return
    if not _is_number(value):
        raise _fail(path, "expected a number" + (" or null" if nullable else ""), value)
    if not math.isfinite(value):
        raise _fail(path, "expected a finite number", value)
    if minimum is not None and value < minimum:
        raise _fail(path, f"expected a number >= {minimum:g}", value)


def _count(value: Any, path: str) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _fail(path, "expected a non-negative integer or null", value)


def _string(value: Any, path: str, *, nullable: bool = False, choices: tuple[str, ...] = ()) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str):
        raise _fail(path, "expected a string" + (" or null" if nullable else ""), value)
    if choices and value not in choices:
        raise _fail(path, f"expected one of {', '.join(choices)}", value)


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, "expected an object", value)
    return value


def _sequence(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _fail(path, "expected a list", value)
    return list(value)


def _json_ready(value: Any, path: str) -> None:
    """Everything must survive ``json.dumps(allow_nan=False)``; say where it would not."""
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _fail(path, "NaN and infinity cannot be written as JSON", value)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail(path, "object keys must be strings", key)
            _json_ready(item, _join(path, key))
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _json_ready(item, _join(path, i))
        return
    raise _fail(path, f"a {type(value).__name__} cannot be written as JSON", value)


def _ramp(ramp: Mapping[str, Any], path: str, ramp_ok: Any) -> None:
    """The step-aligned ramp check: its verdict agrees with ``ramp_ok`` (null when not measured)."""
    verdict = _get(ramp, "verdict", path)
    _string(verdict, _join(path, "verdict"), choices=RAMP_VERDICTS)
    if {"ok": True, "failed": False}.get(verdict) is not ramp_ok:
        raise _fail(_join(path, "verdict"), f"does not agree with ramp_ok {ramp_ok!r}", verdict)
    if not isinstance(_get(ramp, "required", path), bool):
        raise _fail(_join(path, "required"), "expected true or false", ramp["required"])
    for j, window in enumerate(_sequence(_get(ramp, "windows", path), _join(path, "windows"))):
        wpath = _join(_join(path, "windows"), j)
        window = _mapping(window, wpath)
        for key in ("start", "end", "percent"):
            _number(_get(window, key, wpath), _join(wpath, key), nullable=False)
        _count(_get(window, "n", wpath), _join(wpath, "n"))
        share = _get(window, "share", wpath)
        _number(share, _join(wpath, "share"), minimum=0)
        if share is not None and share > 1:
            raise _fail(_join(wpath, "share"), "expected a fraction between 0 and 1", share)
        for key in ("step", "measured"):
            if not isinstance(_get(window, key, wpath), bool):
                raise _fail(_join(wpath, key), "expected true or false", window[key])


def validate(result: Any) -> None:
    """Raise :class:`DrillReportError` (a ValueError) naming the first bad key path, else return."""
    top = _mapping(result, "")
    schema = _get(top, "schema", "")
    if schema != SCHEMA:
        raise _fail("schema", f"expected {SCHEMA!r}", schema)
    _string(_get(top, "profile", ""), "profile", choices=PROFILES)
    started = _get(top, "started_at", "")
    _string(started, "started_at")
    try:
        datetime.fromisoformat(started)
    except ValueError:
        raise _fail("started_at", "expected an ISO 8601 time such as 2026-11-30T08:00:00Z", started) from None
    _number(_get(top, "duration_s", ""), "duration_s", minimum=0)
    if not isinstance(_get(top, "passed", ""), bool):
        raise _fail("passed", "expected true or false", top["passed"])
    _mapping(_get(top, "config", ""), "config")
    totals = _mapping(_get(top, "totals", ""), "totals")
    for key in COUNTS:
        _count(_get(totals, key, "totals"), _join("totals", key))
    names: set[str] = set()
    for i, scenario in enumerate(_sequence(_get(top, "scenarios", ""), "scenarios")):
        path = _join("scenarios", i)
        _scenario(_mapping(scenario, path), path)
        if scenario["name"] in names:
            raise _fail(_join(path, "name"), "duplicate scenario name", scenario["name"])
        names.add(scenario["name"])
    _json_ready(top, "")


def _scenario(sc: Mapping[str, Any], path: str) -> None:
    name = _get(sc, "name", path)
    _string(name, _join(path, "name"))
    if not name.strip():
        raise _fail(_join(path, "name"), "must not be empty", name)
    _string(_get(sc, "title", path), _join(path, "title"))
    _string(_get(sc, "description", path), _join(path, "description"))
    status = _get(sc, "status", path)
    _string(status, _join(path, "status"), choices=STATUSES)
    skipped = status == "skipped"
    _string(_get(sc, "skip_reason", path), _join(path, "skip_reason"), nullable=True)
    for key in ("failures", "error_samples"):
        items = _sequence(_get(sc, key, path), _join(path, key))
        for j, item in enumerate(items):
            _string(item, _join(_join(path, key), j))
    if len(sc["error_samples"]) > MAX_ERROR_SAMPLES:
        raise _fail(
            _join(path, "error_samples"), f"at most {MAX_ERROR_SAMPLES} samples", len(sc["error_samples"])
        )
    for j, dep in enumerate(_sequence(_get(sc, "deployments", path), _join(path, "deployments"))):
        dpath = _join(_join(path, "deployments"), j)
        dep = _mapping(dep, dpath)
        _string(_get(dep, "id", dpath), _join(dpath, "id"))
        tier = _get(dep, "tier", dpath)
        if tier is not None and (not isinstance(tier, int) or isinstance(tier, bool)):
            raise _fail(_join(dpath, "tier"), "expected an integer or null", tier)
    for key in COUNTS:
        _count(_get(sc, key, path), _join(path, key))
    latency = _get(sc, "latency_ms", path)
    if not (latency is None and skipped):
        latency = _mapping(latency, _join(path, "latency_ms"))
        for key in ("p50", "p99"):
            _number(
                _get(latency, key, _join(path, "latency_ms")),
                _join(_join(path, "latency_ms"), key),
                minimum=0,
            )
    for key in SCENARIO_TIMES:
        _number(_get(sc, key, path), _join(path, key))
    for j, point in enumerate(_sequence(_get(sc, "failback_shares", path), _join(path, "failback_shares"))):
        ppath = _join(_join(path, "failback_shares"), j)
        point = _mapping(point, ppath)
        _number(_get(point, "t", ppath), _join(ppath, "t"))
        share = _get(point, "share", ppath)
        _number(share, _join(ppath, "share"), minimum=0)
        if share is not None and share > 1:
            raise _fail(_join(ppath, "share"), "expected a fraction between 0 and 1", share)
    ramp_ok = _get(sc, "ramp_ok", path)
    if ramp_ok is not None and not isinstance(ramp_ok, bool):
        raise _fail(_join(path, "ramp_ok"), "expected true, false or null", ramp_ok)
    if sc.get("ramp") is not None:  # optional: reports written before the step-aligned check lack it
        _ramp(_mapping(sc["ramp"], _join(path, "ramp")), _join(path, "ramp"), ramp_ok)
    for j, marker in enumerate(_sequence(_get(sc, "markers", path), _join(path, "markers"))):
        mpath = _join(_join(path, "markers"), j)
        marker = _mapping(marker, mpath)
        _number(_get(marker, "t", mpath), _join(mpath, "t"))
        _string(_get(marker, "label", mpath), _join(mpath, "label"))
        _string(_get(marker, "kind", mpath), _join(mpath, "kind"), choices=MARKER_KINDS)
    timeline = _get(sc, "timeline", path)
    if not (timeline is None and skipped):
        _timeline(_mapping(timeline, _join(path, "timeline")), _join(path, "timeline"))
    for j, event in enumerate(_sequence(_get(sc, "events", path), _join(path, "events"))):
        epath = _join(_join(path, "events"), j)
        event = _mapping(event, epath)
        _number(_get(event, "t", epath), _join(epath, "t"))
        _string(_get(event, "type", epath), _join(epath, "type"))
        _string(_get(event, "deployment", epath), _join(epath, "deployment"), nullable=True)
        _get(event, "detail", epath)


def _timeline(tl: Mapping[str, Any], path: str) -> None:
    bucket = _get(tl, "bucket_s", path)
    _number(bucket, _join(path, "bucket_s"), nullable=False)
    if bucket <= 0:
        raise _fail(_join(path, "bucket_s"), "expected a positive number of seconds", bucket)
    times = _sequence(_get(tl, "t", path), _join(path, "t"))
    for j, t in enumerate(times):
        _number(t, _join(_join(path, "t"), j), nullable=False)
    served = _mapping(_get(tl, "served", path), _join(path, "served"))
    series = [(_join(_join(path, "served"), dep), values) for dep, values in served.items()]
    series += [(_join(path, key), _get(tl, key, path)) for key in ("errors", "broken")]
    for spath, values in series:
        values = _sequence(values, spath)
        if len(values) != len(times):
            raise _fail(
                spath, f"expected {len(times)} values, one per {_join(path, 't')} bucket", len(values)
            )
        for j, v in enumerate(values):
            _number(v, _join(spath, j), nullable=False, minimum=0)


def dumps(result: Mapping[str, Any]) -> str:
    """Stable text: sorted keys and fixed indentation, so two runs diff cleanly."""
    return json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def write_text_atomic(path: Path, text: str) -> Path:
    """Write next to the target and rename, so a reader never sees half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 would make a report that a browser run by another user cannot open;
    # "x" mode gives the usual umask-governed permissions and still never clobbers a stranger's file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("x", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(result: Mapping[str, Any], path: Path) -> Path:
    """Validate, then write the result as JSON; returns the path written."""
    validate(result)
    return write_text_atomic(Path(path), dumps(result))


def load_json(path: Path) -> dict[str, Any]:
    """Read a drill JSON report; refuse one of another schema with an error naming file and schema."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DrillReportError(f"{path}: cannot read drill report: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DrillReportError(f"{path}: not a JSON drill report: {exc}") from exc
    if not isinstance(data, dict):
        raise DrillReportError(
            f"{path}: not a drill report: expected a JSON object, found {type(data).__name__}"
        )
    if "schema" not in data:
        raise DrillReportError(f"{path}: not a drill report: no 'schema' key (expected {SCHEMA!r})")
    if data["schema"] != SCHEMA:
        raise DrillReportError(
            f"{path}: schema {data['schema']!r} found, this version of litellm-failover reads {SCHEMA!r}"
        )
    try:
        validate(data)
    except DrillReportError as exc:
        raise DrillReportError(f"{path}: {exc}") from None
    return data
