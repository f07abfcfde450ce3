"""The installed LiteLLM release, for messages (never for choosing an adapter: capabilities do)."""

from __future__ import annotations

from importlib import metadata

SUPPORTED_RANGE = ">=1.108.7,<1.111"
"""The LiteLLM releases the plugin is tested with (the oldest and the newest in CI)."""


def litellm_version() -> str:
    """``litellm.__version__`` is gone on 1.110 (its lazy module answers AttributeError), so the
    version comes from the installed distribution's metadata."""
    try:
        return metadata.version("litellm")
    except metadata.PackageNotFoundError:
        return "unknown"
