"""The documents a consumer last wrote, kept so that its next batch need not read them back.

Reading a pupil's document before each write was a round trip and a parse per
batch, and the largest part of a light load's work: the audit trail or the
provision map of a pupil runs to tens of KB. Kept documents are safe because a
pupil's document at version N is the fold of the same N immutable events
whoever computes it, and a write only replaces an older version
(``tables.apply_events``):

- if another writer has moved the row past the kept version meanwhile, the
  next write of this pupil changes nothing, and a later event finds a version
  gap and reads the missing events from the store;
- a kept document is only ever one this process read or wrote successfully,
  so it is never ahead of what the table held at that moment;
- a rebuild swaps in another table, perhaps folded by newer code: each write
  names the table the kept documents came from (``table``, its oid) and does
  nothing if the table is another, and then they are all forgotten.

Bounded by the size of the documents' JSON, least recently used first out (as
Python objects they take about four times that).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from uuid import UUID

from senflow.projections.tables import Current

DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class KeptDocs:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.table: int | None = None  # the oid of the docs table they came from
        self._docs: OrderedDict[UUID, tuple[Current, int]] = OrderedDict()

    def clear(self, table: int | None) -> None:
        """Forget every document: they came from another table than ``table``."""
        self._docs.clear()
        self.bytes = 0
        self.table = table

    def __len__(self) -> int:
        return len(self._docs)

    def take(self, stream_ids: Iterable[UUID]) -> dict[UUID, Current]:
        """Copies of the kept documents of these pupils (a copy may be advanced freely:
        projections never change a document in place)."""
        out: dict[UUID, Current] = {}
        for sid in stream_ids:
            entry = self._docs.get(sid)
            if entry is not None:
                self._docs.move_to_end(sid)
                c = entry[0]
                out[sid] = Current(c.version, c.doc, c.position, c.trust_id, c.school_urn)
        return out

    def put(self, stream_id: UUID, current: Current, size: int) -> None:
        """Keep a document the table has just given or taken; ``size`` is its JSON's length."""
        old = self._docs.pop(stream_id, None)
        if old is not None:
            self.bytes -= old[1]
        if size > self.max_bytes:
            return
        self._docs[stream_id] = (current, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, dropped) = self._docs.popitem(last=False)
            self.bytes -= dropped
