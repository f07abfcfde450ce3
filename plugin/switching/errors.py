"""``OperatorError``: an operator request that cannot be carried out as asked.

A ``ValueError`` so callers that only know the standard library (the control plane's dispatcher)
can tell a refused command from a fault of the replica. Raised before any state changes: a refused
drain, failback or shift leaves routing exactly as it was.
"""

from __future__ import annotations


class OperatorError(ValueError):
    """Bad input for drain / undrain / failover / failback / shift; nothing was changed."""
