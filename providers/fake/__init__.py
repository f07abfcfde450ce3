"""Fake servers for the demo, the drills, the benches and the tests; never part of a deployment.

``vllm.FakeVLLM`` is one fake vLLM node in process, ``process.FakeVLLMProcess`` the same node in
a subprocess a drill can SIGKILL; the other modules are their parts (faults, the chat and
Responses endpoints, telemetry, the deterministic answer text).
"""
