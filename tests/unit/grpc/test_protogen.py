"""`python -m qbsync.protogen --check` flags stale, missing and left-over stubs."""

from __future__ import annotations

from qbsync.protogen import stale_files


def test_identical_stubs_are_not_stale() -> None:
    assert stale_files({"a_pb2.py": b"x"}, {"a_pb2.py": b"x"}) == []


def test_changed_missing_and_extra_stubs_are_all_named() -> None:
    fresh = {"a_pb2.py": b"new", "b_pb2.py": b"b"}
    committed = {"a_pb2.py": b"old", "gone_pb2.py": b"g"}
    assert stale_files(fresh, committed) == ["a_pb2.py", "b_pb2.py", "gone_pb2.py"]
