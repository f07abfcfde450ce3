"""Endpoint adapters: one module per kind of endpoint, behind ``ProviderAdapter``."""
