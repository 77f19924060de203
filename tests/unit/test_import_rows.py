"""Row building for bulk import: remembered moments stay exact."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from senflow.services.store import bulk, hashchain
from senflow.services.store.rows import moment_text

pytestmark = pytest.mark.unit


def test_remembered_moments_tell_the_repeated_hour_apart():
    # When the clocks go back, 01:30 happens twice: the two compare (and hash) equal
    # in their zone, so a cache keyed on the moment alone would give one for the other.
    first = datetime(2025, 10, 26, 1, 30, tzinfo=ZoneInfo("Europe/London"))
    second = first.replace(fold=1)
    assert first == second
    for moment in (first, second, first, second):
        assert moment_text(moment, moment.fold) == hashchain.ts(moment)
        assert bulk._moment(moment, moment.fold) == bulk._micros(moment)
    assert moment_text(first, 0) != moment_text(second, 1)
