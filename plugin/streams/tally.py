"""One stream part's text against its tokens: the marks ``streams.tokens`` counts a cut from.

Apart from ``streams.tokens`` so that ``streams.resume``, which keeps a tally per part, does not
import the counting (which reads parts).
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litellm.types.utils import Usage


NO_COUNT = -1  # a chunk that came without the engine's count


@dataclass(slots=True)
class Tally:
    """Where one part's text stands in the token count of the stitched answer.

    A part generates from a cut of the stitched answer: ``start`` characters that took ``base``
    tokens (0 and 0 for the first part). Every chunk with text adds a mark: the part's generated
    characters so far (a cut-off tail written again included) and the engine's running count
    then (``NO_COUNT`` where the engine sends none). Machine integers, not lists of ints: a
    proxy holds one tally per live stream, two numbers a chunk.
    """

    start: int = 0
    base: int = 0
    chars: array[int] = field(default_factory=lambda: array("q"))
    counts: array[int] = field(default_factory=lambda: array("q"))

    def chunk(self, chars: int, usage: Usage | None) -> None:
        self.chars.append((self.chars[-1] if self.chars else 0) + chars)
        count = completion_tokens(usage)
        self.counts.append(NO_COUNT if count is None else count)

    @property
    def reach(self) -> int:
        """The stitched answer's characters up to this part's last chunk."""
        return self.start + (self.chars[-1] if self.chars else 0)

    @property
    def counted(self) -> bool:
        return any(count != NO_COUNT for count in self.counts)

    def count_at(self, chars: int) -> int | None:
        """The engine's count when this part's text first reached ``chars`` (its own), or None."""
        i = bisect.bisect_left(self.chars, chars)
        found = self.counts[i] if i < len(self.chars) and self.chars[i] == chars else NO_COUNT
        return None if found == NO_COUNT else found

    def count_past(self, chars: int) -> int | None:
        """The first engine count at or past ``chars``: no fewer tokens than the text before."""
        for i in range(bisect.bisect_left(self.chars, chars), len(self.chars)):
            if self.counts[i] != NO_COUNT:
                return self.counts[i]
        return None

    def chunks_before(self, chars: int) -> int:
        """Chunks that began before ``chars``: each put at least one token there (no token spans
        a stable cut)."""
        return min(bisect.bisect_left(self.chars, chars) + 1, len(self.chars)) if chars > 0 else 0


def completion_tokens(usage: Usage | None) -> int | None:
    """A usage's completion tokens, None where it has no usable count."""
    value = getattr(usage, "completion_tokens", None) if usage is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
