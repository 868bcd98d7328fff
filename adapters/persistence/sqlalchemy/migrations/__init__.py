"""Alembic migrations (a package only so that it ships with qbsync; Alembic loads it by path)."""
