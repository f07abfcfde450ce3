"""The limits a probe compares its readings against.

A module of its own because both sides need it and neither may import the other: the settings
build one per deployment from ``health`` and its overrides, and every adapter reads it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProbeThresholds:
    """Limits a probe compares against; all configurable per deployment."""

    max_probe_latency_s: float = 2.0
    max_gpu_memory_ratio: float = 0.95
    max_kv_cache_usage: float = 0.90
    max_queue_waiting: float = 16.0
    stale_after_s: float = 15.0
    max_body_bytes: int = 1_000_000
    gpu_read_interval_s: float = 5.0
