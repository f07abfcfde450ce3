"""Failover drills: scenarios against fake vLLM servers through a real proxy, and their report."""
