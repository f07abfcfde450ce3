"""Failover drills: scenarios against fake vLLM servers through a real proxy, and their report.

Also the drill-only tools the demo, the tests and the benches share: ``loadgen`` (a bounded mixed
load that records who served each request) and ``proxy_process`` (a real LiteLLM proxy as a child
process). None of this is imported by the plugin itself.
"""
