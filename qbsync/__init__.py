"""qbsync: keeps a moving company's books in QuickBooks Online in step with its CRM, over gRPC.

Its `v1` subpackage holds the generated public API stubs (`python -m qbsync.protogen`, `make proto`).
"""
