"""litellm-failover: GPU-aware health checks, failover routing and an audit trail for LiteLLM."""

__version__ = "0.1.0"
