"""qbsync's domain core: the sync rules of SPEC.md section 2, free of any technology.

Nothing in this package imports grpc, protobuf, sqlalchemy, quickbooks, injector or requests
(tests/unit/test_core_boundary.py proves it).
"""
