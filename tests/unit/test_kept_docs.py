"""The kept documents' bounds and copies (``projections.kept_docs``)."""

from __future__ import annotations

import uuid

import pytest

from senflow.projections.kept_docs import KeptDocs
from senflow.projections.tables import Current

pytestmark = pytest.mark.unit


def _current(version: int) -> Current:
    return Current(version, {"v": version}, version * 10, "trust-1", "100000")


def test_the_least_recently_used_go_first_when_the_bytes_run_out() -> None:
    kept = KeptDocs(max_bytes=300)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    kept.put(a, _current(1), 100)
    kept.put(b, _current(1), 100)
    kept.take([a])  # a is used again: b is now the oldest
    kept.put(c, _current(1), 150)
    assert set(kept.take([a, b, c])) == {a, c} and kept.bytes == 250


def test_a_document_bigger_than_the_bound_is_not_kept_and_drops_its_old_copy() -> None:
    kept = KeptDocs(max_bytes=100)
    a = uuid.uuid4()
    kept.put(a, _current(1), 50)
    kept.put(a, _current(2), 500)
    assert kept.take([a]) == {} and kept.bytes == 0


def test_what_is_taken_is_a_copy() -> None:
    kept = KeptDocs()
    a = uuid.uuid4()
    kept.put(a, _current(1), 10)
    copy = kept.take([a])[a]
    copy.version, copy.doc = 2, {"v": 2}
    again = kept.take([a])[a]
    assert again.version == 1 and again.doc == {"v": 1}
