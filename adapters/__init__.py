"""Adapters: each implements core ports (or drives the core) with one technology."""
