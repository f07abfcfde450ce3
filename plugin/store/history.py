"""The history chain of a conversation's messages, shared by the recorder and the store writer.

Here, with nothing but ``hashlib``, so that the store (which processes such as the fake vLLM
import) does not pull in the sessions package and LiteLLM with it.
"""

from __future__ import annotations

import hashlib

ROOT_HASH = ""
"""The parent of a conversation's first message."""


def chain_hash(parent_hash: str, seq: int, role: str, text_hash: str) -> str:
    """A message's place in its history: the hash of its parent's chain hash, its position and
    itself. Two requests share a stored message only when everything before it is the same, so a
    history that diverges (an edited turn, a regenerated answer, unrelated requests under one
    session id) starts a branch of its own instead of being dropped as already stored."""
    return hashlib.sha256(
        f"{parent_hash}\n{seq}\n{role}\n{text_hash}".encode("utf-8", "surrogatepass")
    ).hexdigest()
