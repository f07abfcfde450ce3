"""How a database URL becomes an async engine, and how its errors are shown.

The writer, the migration runner, the read queries and the CLI all open the same databases, and
each needs the same things done the same way: a friendly URL (``postgresql://`` as LiteLLM's own
``DATABASE_URL`` spells it) turned into an async driver, PostgreSQL server settings such as a
schema carried in the URL (asyncpg has no ``options`` parameter of its own), the SQLite file's
directory, and error messages that never show a password.

PostgreSQL schema: put ``?options=-csearch_path%3Dmyschema`` (libpq's spelling) or the shorter
``?search_path=myschema`` on the URL. Both are removed from the URL and sent as asyncpg
``server_settings``, so every connection, the migrations' included, works inside that schema.
The schema must exist; the tables and the migration version table are created in it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

APPLICATION_NAME = "litellm-failover"
_CONNECT_TIMEOUT_S = 10.0  # asyncpg waits 60 s by default; a writer retrying should learn sooner
_ASYNC_DRIVERS = {"postgresql": "asyncpg", "sqlite": "aiosqlite"}
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*:)[^@\s]+@")
_CLASS_PREFIX = re.compile(r"^<class '[\w.]+'>:\s*")
_STRICT_JSON = functools.partial(json.dumps, allow_nan=False)
"""JSON columns are written without NaN/Infinity: PostgreSQL's ``jsonb`` refuses them and other
readers of the tables would choke on them. ``store.rows`` replaces them first; a value that
still holds one fails to bind and is rejected alone, never written."""


class StoreError(Exception):
    """A store problem with a message that is already safe to show (no credentials)."""


def parse_url(url: str | URL) -> URL:
    """Validate the URL and pick the async driver, so ``postgresql://...`` works as users expect.

    Only SQLite and PostgreSQL are supported: the writer's upserts use their dialects' insert
    constructs. A sync driver (``postgresql+psycopg2``) is refused with a message that says why.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        raise StoreError(f"invalid database URL: {redact(str(url))}") from None
    backend = "postgresql" if parsed.get_backend_name() in ("postgres", "postgresql") else None
    backend = backend or parsed.get_backend_name()
    if backend not in _ASYNC_DRIVERS:
        raise StoreError(
            f"unsupported database {parsed.get_backend_name()!r} in {redact_url(parsed)}: "
            "use sqlite+aiosqlite:///path or postgresql+asyncpg://..."
        )
    driver = parsed.get_driver_name() if "+" in parsed.drivername else ""
    default_driver = _ASYNC_DRIVERS[backend]
    if driver and driver != default_driver:
        raise StoreError(
            f"database driver {driver!r} is not async: use {backend}+{default_driver}:// "
            f"(got {redact_url(parsed)})"
        )
    return parsed.set(drivername=f"{backend}+{driver or default_driver}")


def redact_url(url: str | URL) -> str:
    """The URL as it may appear in logs, stats and errors: password replaced by ``***``."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return redact(str(url))
    return parsed.render_as_string(hide_password=True)


def redact(text: str, url: str | URL | None = None) -> str:
    """Scrub credentials from free text: the URL's password in any spelling, and any ``user:pw@``."""
    password = None
    if url is not None:
        try:
            password = (make_url(url) if isinstance(url, str) else url).password
        except ArgumentError:
            password = None
    if password:
        for spelling in {password, quote(password, safe=""), quote_plus(password)}:
            text = text.replace(spelling, "***")
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


def describe_error(exc: BaseException, url: str | URL | None = None) -> str:
    """One line naming the error, without SQL, parameters or credentials.

    SQLAlchemy's own messages append the statement, its parameters and a link; an operator reading
    ``last_error`` or a CLI message needs the driver's reason, not a page of SQL.
    """
    if isinstance(exc, StoreError):
        return redact(str(exc), url)
    inner: BaseException = exc
    if isinstance(exc, (DBAPIError, StatementError)) and exc.orig is not None:
        inner = exc.orig
    lines = str(inner).strip().splitlines()
    message = _CLASS_PREFIX.sub("", lines[0].strip()) if lines else ""
    name = type(inner).__name__
    if type(inner).__module__.startswith("sqlalchemy") and inner.__cause__ is not None:
        name = type(inner.__cause__).__name__  # the driver's class (asyncpg's), not the adapter's
    text = f"{name}: {message}" if message else name
    if len(text) > 300:
        text = text[:297] + "..."
    return redact(text, url)


def is_missing_table_error(exc: BaseException) -> bool:
    """Whether the schema is not there yet, so the CLI can suggest ``db upgrade``."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def sqlite_path(url: URL) -> Path | None:
    """The SQLite file of a URL, or None for in-memory and ``file:`` URI databases."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("uri"):
        return None
    return Path(database)


def ensure_sqlite_directory(url: URL) -> None:
    """Create the SQLite file's directory: SQLite creates the file, never its directory."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def ensure_sqlite_file(url: URL) -> None:
    """Create the SQLite file's directory (SQLite never does) and the file itself, readable and
    writable by its owner only (0600).

    The file holds conversations and upstream error text: SQLite would create it with the
    process's umask (usually world-readable). Its ``-journal``, ``-wal`` and ``-shm`` files take
    the database file's mode (SQLite's own rule), so they follow. An existing file keeps its
    mode: an operator who chose one (a group that backs it up) is not overruled.
    """
    path = sqlite_path(url)
    if path is None:
        return
    ensure_sqlite_directory(url)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass


def require_sqlite_file(url: URL) -> None:
    """Fail clearly instead of letting a reader create an empty database at a mistyped path."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        # No advice here: the CLI knows whether this was the default path or one it was given.
        raise StoreError(f"database file not found: {path}")


def _server_settings(query: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """Split libpq-style ``options``/``search_path`` out of the query into asyncpg server settings."""
    rest = dict(query)
    settings: dict[str, str] = {}
    options = rest.pop("options", None)
    if options is not None:
        tokens = shlex.split(options if isinstance(options, str) else " ".join(options))
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if token == "-c" and index + 1 < len(tokens):
                index += 1
                token = tokens[index]
            elif token.startswith("-c"):
                token = token[2:]
            elif token.startswith("--"):
                token = token[2:]
            key, sep, value = token.partition("=")
            if not sep or not key:
                raise StoreError(f"unsupported PostgreSQL options value {options!r}: use -ckey=value")
            settings[key.replace("-", "_")] = value
            index += 1
    search_path = rest.pop("search_path", None)
    if search_path is not None:
        settings["search_path"] = search_path if isinstance(search_path, str) else ",".join(search_path)
    return settings, rest


def create_engine(url: str | URL, *, create_directory: bool = True) -> AsyncEngine:
    """An async engine for the store; no I/O happens here (the first connection is lazy).

    ``create_directory`` makes the SQLite file's parent directory; readers pass False and call
    ``require_sqlite_file`` instead, so a typo never leaves an empty database behind.
    """
    parsed = parse_url(url)
    kwargs: dict[str, Any] = {"json_serializer": _STRICT_JSON}
    if parsed.get_backend_name() == "postgresql":
        settings, rest = _server_settings(dict(parsed.query))
        settings.setdefault("application_name", APPLICATION_NAME)
        timeout = rest.pop("connect_timeout", None) or rest.pop("timeout", None)
        connect_args = {
            "server_settings": settings,
            "timeout": float(timeout) if timeout else _CONNECT_TIMEOUT_S,
        }
        parsed = parsed.set(query=rest)
        # A restarted server leaves dead pooled connections: test them before use.
        kwargs.update(connect_args=connect_args, pool_pre_ping=True, pool_size=2, max_overflow=4)
        return create_async_engine(parsed, **kwargs)
    if create_directory:
        ensure_sqlite_directory(parsed)
    engine = create_async_engine(parsed, **kwargs)
    _make_sqlite_transactional(engine)
    return engine


def _make_sqlite_transactional(engine: AsyncEngine) -> None:
    """Let SQLAlchemy, not Python's sqlite3 module, decide where transactions start.

    By default sqlite3 runs DDL outside any transaction, so a migration that fails halfway leaves
    tables behind without a version row, and the next upgrade fails on them forever. This is the
    recipe from SQLAlchemy's aiosqlite documentation: driver autocommit off, an explicit BEGIN.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


@asynccontextmanager
async def reading_engine(url: str | URL) -> AsyncIterator[AsyncEngine]:
    """A short-lived engine for a reader (the CLI, a script), disposed of on exit.

    Reads are rare and human-driven and must not hold connections on a database the proxy also
    uses. A SQLite file that does not exist is an error here rather than a new empty database.
    """
    parsed = parse_url(url)
    require_sqlite_file(parsed)
    engine = create_engine(parsed, create_directory=False)
    try:
        yield engine
    finally:
        await engine.dispose()
