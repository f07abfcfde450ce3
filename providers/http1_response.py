"""Reading one HTTP/1.x response off a stream, strictly: the probe client's framing.

Framing is where a keep-alive client goes wrong: read one byte too few or too many and the next
request reads the rest of this answer as its own (a stale 200 where the server now says 503). So
every framing header is read as RFC 9112 writes it and anything else is an error, which the probe
client answers by closing the connection:

- ``Content-Length``: ASCII digits, bounded, and equal in every copy of the header.
- ``Transfer-Encoding``: ``chunked`` only (a probe asks for no coding); with a ``Content-Length``
  as well, chunked wins and the connection is not kept (RFC 9112 6.3: a smuggling shape).
- Chunk sizes: hex digits only, at most ``MAX_CHUNK_SIZE_DIGITS``, and chunk extensions only in
  their grammar: no "0x", sign, padding, or ``int()``'s leniency (``"1_0"``, ``" 5"``).
- Size lines, extensions and trailers are bounded together by ``MAX_HEAD_BYTES``.
"""

from __future__ import annotations

import asyncio
import re

from litellm_failover.providers.errors import MalformedAnswer

MAX_HEAD_BYTES = 64 * 1024
"""Status line plus headers. A server sending more is not a health endpoint."""

_READ_CHUNK = 64 * 1024
MAX_CHUNK_SIZE_DIGITS = 16
"""Hex digits in a chunk size: 16 covers any size a 64-bit server can send; more is an overflow try."""

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,%d})" % MAX_CHUNK_SIZE_DIGITS
    + rb"(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*\r\n"
)
"""RFC 9112 7.1: chunk-size [ chunk-ext ] CRLF, nothing else (no "0x", sign, or padding)."""
_HEADER_NAME = re.compile(_TOKEN.decode())
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
"""ASCII digits only (``str.isdigit`` takes "²"), and few enough that the value fits any int64."""


class ProbeHttpError(Exception):
    """A transport failure of a probe read (not an HTTP status: any status is an answer)."""


class Disconnected(ProbeHttpError):
    """The server closed the connection before the answer was complete."""

    def __init__(self, started: bool) -> None:
        super().__init__("answer cut short" if started else "server closed the connection without answering")
        self.started = started


class BadResponse(ProbeHttpError):
    """Not HTTP/1.x, or framing that cannot be read."""


Framing = tuple[str, int]  # ("length", n) | ("chunked", 0) | ("close", 0) | ("none", 0)


async def read_head(reader: asyncio.StreamReader) -> tuple[int, bool, Framing]:
    """Status, whether the connection may be reused, and how the body is framed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise Disconnected(started=bool(exc.partial)) from None
    except asyncio.LimitOverrunError:
        raise BadResponse(f"status line and headers over {MAX_HEAD_BYTES} bytes") from None
    except (ConnectionResetError, BrokenPipeError):
        raise Disconnected(started=False) from None
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or not _is_status_code(code) or rest[3:4] not in ("", " "):
        raise BadResponse(f"not an HTTP/1.x answer: {lines[0][:60]!r}")
    status = int(code)
    length: int | None = None
    codings: list[str] = []
    connection_header = ""
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        # No whitespace in or around the name (RFC 9112 5.1), which also rules out obs-fold.
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise BadResponse(f"malformed header line {line[:60]!r}")
        name = name.lower()
        value = value.strip(" \t")
        if name == "content-length":
            if not _CONTENT_LENGTH.fullmatch(value):
                raise BadResponse(f"bad Content-Length {value[:40]!r}")
            if length is not None and length != int(value):
                raise BadResponse("conflicting Content-Length headers")
            length = int(value)
        elif name == "transfer-encoding":
            codings += [c.strip(" \t").lower() for c in value.split(",") if c.strip(" \t")]
            if codings != ["chunked"]:  # we ask for no coding; anything else is a guess
                raise BadResponse(f"unsupported Transfer-Encoding {value[:40]!r}")
        elif name == "connection":
            connection_header = value.lower()
    keep_alive = (version == "HTTP/1.1" and "close" not in connection_header) or (
        version == "HTTP/1.0" and "keep-alive" in connection_header
    )
    if codings and length is not None:
        # RFC 9112 6.3: Transfer-Encoding wins, and the message may be a smuggling attempt:
        # read it, then close.
        keep_alive = False
    if status < 200 or status in (204, 304):
        framing: Framing = ("none", 0)
    elif codings:
        framing = ("chunked", 0)
    elif length is not None:
        framing = ("length", length)
    else:
        framing = ("close", 0)
    return status, keep_alive, framing


async def read_body(reader: asyncio.StreamReader, framing: Framing, max_body_bytes: int) -> bytes:
    kind, length = framing
    try:
        if kind == "none":
            return b""
        if kind == "length":
            if length > max_body_bytes:
                raise MalformedAnswer(f"body over {max_body_bytes} bytes")
            return await reader.readexactly(length)
        if kind == "chunked":
            return await _read_chunked(reader, max_body_bytes)
        body = bytearray()
        while chunk := await reader.read(_READ_CHUNK):
            body += chunk
            if len(body) > max_body_bytes:
                raise MalformedAnswer(f"body over {max_body_bytes} bytes")
        return bytes(body)
    except asyncio.IncompleteReadError:
        raise Disconnected(started=True) from None
    except asyncio.LimitOverrunError:
        raise BadResponse("a chunk size or trailer line too long") from None
    except (ConnectionResetError, BrokenPipeError):
        raise Disconnected(started=True) from None


def _is_status_code(code: str) -> bool:
    return len(code) == 3 and all("0" <= c <= "9" for c in code)


async def _read_chunked(reader: asyncio.StreamReader, max_body_bytes: int) -> bytes:
    body = bytearray()
    # Size lines, extensions and trailers are not body but still cost reads: bounded together,
    # so a server cannot keep a probe busy with empty extensions or endless trailers.
    overhead_left = MAX_HEAD_BYTES
    while True:
        size_line = await reader.readuntil(b"\r\n")
        overhead_left -= len(size_line)
        match = _CHUNK_LINE.fullmatch(size_line)
        if match is None:
            shown = size_line.removesuffix(b"\r\n")[:20]
            raise BadResponse(f"bad chunk size {shown!r}")
        if overhead_left < 0:
            raise BadResponse(f"chunk framing over {MAX_HEAD_BYTES} bytes")
        size = int(match[1], 16)
        if size == 0:
            break
        if len(body) + size > max_body_bytes:
            raise MalformedAnswer(f"body over {max_body_bytes} bytes")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise BadResponse("chunk not followed by CRLF")
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers end with a blank line
        overhead_left -= len(line)
        if overhead_left < 0:
            raise BadResponse(f"chunk framing over {MAX_HEAD_BYTES} bytes")
    return bytes(body)
