"""The real-engine continuation check: a tiny local model on llama.cpp's server (issue 12 §3)."""
