"""Persistence adapters for the core's `UnitOfWork` port.

`memory` is the shipped in-memory fake (product code: testers use it); `sqlalchemy` is the real thing
on SQLite or PostgreSQL, with its Alembic migrations; `module` binds either into the injector. The
same contract suite (tests/integration/persistence) runs against all of them.
"""
