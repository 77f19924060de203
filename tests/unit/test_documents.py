"""Projection documents to JSON text and back: the fast path never changes a value."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from senflow.projections.tables import _json, _load

pytestmark = pytest.mark.unit

# Finite floats: the catalogue admits no others (measures are bounded).
documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(documents)
def test_a_document_reads_back_as_json_reads_it(doc) -> None:
    text = _json({"doc": doc})
    assert _load(text) == json.loads(text) == {"doc": doc}


def test_integers_beyond_64_bits_stay_integers() -> None:
    huge = {"cost_pence": 2**70, "sessions": -(2**64), "small": 2**62}
    loaded = _load(_json(huge))
    assert loaded == huge and all(type(v) is int for v in loaded.values())
