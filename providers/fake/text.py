"""Deterministic answers shared by the fake vLLM's chat and Responses endpoints.

Failover is checked character for character: a continued or rebuilt generation must equal the
answer the first node would have given. So an answer is a fixed word sequence seeded from a hash
of the conversation's (role, text) list, the same on every node and in every Python version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_WORDS = 24

# 64 plain words: enough variety that two answers rarely look alike, short enough to read.
# fmt: off
VOCAB: tuple[str, ...] = (
    "amber", "anchor", "arrow", "aspen", "basil", "beacon", "birch", "breeze",
    "canyon", "cedar", "cinder", "clover", "comet", "coral", "cotton", "delta",
    "dune", "ember", "falcon", "fern", "fjord", "flint", "garnet", "glacier",
    "harbor", "hazel", "heron", "indigo", "island", "jasper", "juniper", "kestrel",
    "lagoon", "lantern", "lichen", "maple", "meadow", "mesa", "nectar", "nimbus",
    "oasis", "onyx", "orchid", "pebble", "pine", "prairie", "quartz", "quill",
    "raven", "reef", "river", "saffron", "sierra", "spruce", "summit", "thistle",
    "tundra", "umber", "valley", "willow", "yarrow", "zenith", "zephyr", "harvest",
)
# fmt: on


class RequestError(ValueError):
    """A request that vLLM would refuse with 400; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def content_text(content: object) -> str:
    """The text of a message's content, whether a string, OpenAI content parts or None."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n".join(texts)
    return ""


def _seed(messages: Sequence[Mapping[str, Any]]) -> bytes:
    # Only role and text count, so extra fields a client or the plugin adds (name, ids, cache
    # hints) don't change the answer between an original request and its continuation.
    canonical = [[m.get("role"), content_text(m.get("content"))] for m in messages]
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode()).digest()


def answer_pieces(messages: Sequence[Mapping[str, Any]], words: int = DEFAULT_WORDS) -> list[str]:
    """The streamed pieces of the answer: the first word alone, later ones with a leading space.

    Joining the pieces gives the full answer, so a stream cut after k chunks is a prefix of it.
    A hash per index (not a PRNG) keeps the sequence stable across Python versions.
    """
    seed = _seed(messages)
    pieces = []
    for index in range(words):
        digest = hashlib.sha256(seed + index.to_bytes(4, "big")).digest()
        word = VOCAB[int.from_bytes(digest[:4], "big") % len(VOCAB)]
        pieces.append(word if index == 0 else " " + word)
    return pieces


def expected_answer(messages: Sequence[Mapping[str, Any]], words: int = DEFAULT_WORDS) -> str:
    """The full uninterrupted answer the server gives to ``messages``."""
    return "".join(answer_pieces(messages, words))


def continuation_pieces(pieces: Sequence[str], prefix: str) -> list[str]:
    """What is left of the answer after an assistant ``prefix``, split at piece boundaries.

    If the prefix is a character prefix of the answer the rest follows exactly (a cut inside a
    word continues with the rest of that word). Otherwise the prefix came from elsewhere, and
    the answer continues after as many words as the prefix has.
    """
    answer = "".join(pieces)
    if answer.startswith(prefix):
        offset = len(prefix)
    else:
        offset = len("".join(pieces[: len(prefix.split())]))
    rest: list[str] = []
    position = 0
    for piece in pieces:
        end = position + len(piece)
        if end > offset:
            rest.append(piece[max(0, offset - position) :])
        position = end
    return rest
