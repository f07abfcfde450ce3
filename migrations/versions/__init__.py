"""Migration scripts, applied in order by revision id (0001, 0002, ...)."""
