"""Adapters: the thin edge between the core ports and Azure SDKs (same code in both hosts)."""
