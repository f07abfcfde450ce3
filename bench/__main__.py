"""``python -m bench``: run every bench and write ``bench/results/latest.json``."""

from __future__ import annotations

from bench.run_all import main

raise SystemExit(main())
