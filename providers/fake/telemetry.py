"""What the fake vLLM reports about itself: Prometheus ``/metrics``, the NVML sidecar, request counts.

The plugin's GPU-aware checks read exactly these, so a ``gpu_pressure`` fault must move them the
way a saturated node would (KV cache full, a queue, memory near the limit) while it still serves.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_GPU_MEMORY_TOTAL = 80 * 1024**3
_NORMAL_GPU_RATIO = 0.6
_PRESSURE_GPU_RATIO = 0.97
_PRESSURE_KV = 0.99
_PRESSURE_WAITING = 64


@dataclass
class RequestCounts:
    """Request counts for ``/control/state``: drills assert on what actually reached a node."""

    total: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "by_endpoint": dict(self.by_endpoint), "by_status": dict(self.by_status)}


def metrics_text(model: str, mode: str | None, running: int, waiting: int) -> str:
    """Prometheus text under vLLM's names; ``gpu_cache_usage_perc`` is the deprecated alias."""
    pressure = mode == "gpu_pressure"
    waiting = _PRESSURE_WAITING if pressure else waiting
    kv = _PRESSURE_KV if pressure else min(0.05 + 0.02 * running, 0.89)
    gauges = (
        ("vllm:num_requests_running", "Number of requests in model execution batches.", running),
        ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting),
        ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", kv),
        ("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", kv),
    )
    label = _label_value(model)
    lines = []
    for metric, help_text, value in gauges:
        lines += [
            f"# HELP {metric} {help_text}",
            f"# TYPE {metric} gauge",
            f'{metric}{{model_name="{label}"}} {float(value)}',
        ]
    return "\n".join(lines) + "\n"


def dcgm_text(status: dict[str, Any]) -> str:
    """The NVML reading again under NVIDIA dcgm-exporter's names, so the fake's ``/metrics`` also
    serves ``gpu_source: dcgm`` (a node running vLLM and the exporter, on one port): the docs'
    proxy example points one deployment at an exporter and runs as pasted against fakes."""
    gauges = (
        ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "memory_used_bytes"),
        ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", None),
        ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "utilization_pct"),
        ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "temperature_c"),
        ("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", "xid_errors"),
    )
    lines = []
    for metric, help_text, key in gauges:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for gpu in status["gpus"]:
            if key is None:
                value = (gpu["memory_total_bytes"] - gpu["memory_used_bytes"]) / 1024**2
            elif key == "memory_used_bytes":
                value = gpu[key] / 1024**2
            else:
                value = gpu[key]
            name = _label_value(gpu["name"])
            lines.append(f'{metric}{{gpu="{gpu["index"]}",modelName="{name}"}} {float(value)}')
    return "\n".join(lines) + "\n"


def gpu_status(mode: str | None, running: int) -> dict[str, Any]:
    """The NVML sidecar's reading; vLLM preallocates memory, so usage is flat unless pressured."""
    pressure = mode == "gpu_pressure"
    ratio = _PRESSURE_GPU_RATIO if pressure else _NORMAL_GPU_RATIO
    used = int(ratio * _GPU_MEMORY_TOTAL)
    utilization = 99.0 if pressure else (min(95.0, 20.0 + 10.0 * running) if running else 0.0)
    gpu = {
        "index": 0,
        "name": "Fake GPU",
        "memory_used_bytes": used,
        "memory_total_bytes": _GPU_MEMORY_TOTAL,
        "used_ratio": used / _GPU_MEMORY_TOTAL,
        "utilization_pct": utilization,
        "temperature_c": 40.0 + 0.35 * utilization,
        "xid_errors": 0,
        "ecc_errors": 0,
    }
    if mode == "health_fail":
        return {
            "healthy": False,
            "reason": "injected fault health_fail",
            "read_at": time.time(),
            "gpus": [gpu],
        }
    return {"healthy": True, "reason": "", "read_at": time.time(), "gpus": [gpu]}


def _label_value(value: str) -> str:
    """Escape a Prometheus label value (backslash, double quote, newline: the text format's set)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
