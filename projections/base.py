"""What a projection is: a name and a pure function from (pupil's document, event) to document.

Every projection keeps one JSON document per pupil in its own PostgreSQL schema
(``senflow_<name>.docs``), next to the stream version and global position it
has applied. The document *is* the checkpoint: a message whose version is not
above the stored one is a duplicate; one more than one above it means events
are missing, and the consumer reads them from the store first. Because
``evolve`` is pure, live consumption, a rebuild and a unit test all run the
same code and must agree.

A projection may also keep a row per event (``entry``), appended to
``senflow_<name>.entries`` and never rewritten: the audit trail's entries,
which as part of the document made every write rewrite a pupil's whole
history. Readers see ``assemble(doc, entries)``.

Events reach projections from the bus with personal fields withheld, so a
document never holds a name, a date of birth or free text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from senflow.events.envelope import RecordedEvent

Doc = dict[str, Any]
Evolve = Callable[[Doc | None, RecordedEvent], Doc]
Entry = Callable[[RecordedEvent], Doc]
Assemble = Callable[[Doc, list[Doc]], Doc]


@dataclass(frozen=True)
class Projection:
    name: str  # "register", "provision_map", "audit": also the schema suffix
    evolve: Evolve
    # Extra indexes on {schema}.docs, e.g. "CREATE INDEX ON {schema}.docs ((doc->>'provision'))"
    indexes: tuple[str, ...] = ()
    # A row per event in {schema}.entries, and how readers see a document with its rows
    entry: Entry | None = None
    assemble: Assemble | None = None
    # Statements run once, when the entries table is created beside older documents
    upgrades: tuple[str, ...] = ()

    @property
    def schema(self) -> str:
        return f"senflow_{self.name}"


def fold(projection: Projection, events: list[RecordedEvent]) -> Doc | None:
    """A pupil's document from their events in order, as readers see it (with its entries)."""
    doc: Doc | None = None
    for event in events:
        doc = projection.evolve(doc, event)
    if doc is None or projection.entry is None or projection.assemble is None:
        return doc
    entries: dict[int, Doc] = {}
    for event in events:  # a version's first event, as the table keeps it
        if event.version not in entries:
            entries[event.version] = projection.entry(event)
    return projection.assemble(doc, list(entries.values()))
