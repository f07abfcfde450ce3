"""Benchmarks for litellm-failover: side-by-side ratios measured in one run (not tests).

See ``bench/README.md``; run everything with ``python -m bench``.
"""
