"""A subject access export: everything senflow holds about one pupil, decrypted, in one file.

What it holds: every event of the pupil's stream with its full envelope (ids,
order, when it happened and was recorded, who recorded it, where, hash) and its
content with personal fields opened; the current state folded from them; the
read-model documents as the projection tables hold them (or a note that a
table is not built); the vault key's status (never the key); and the result of
verifying the pupil's hash chain.

Free text (concerns, views, meeting notes, reasons) can name or describe other
people: parents, staff, other pupils. The note in the file says so: deciding
what of that to redact before the file goes to the requester is a manual step
for the data protection officer. Staff appear by user id only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from senflow.events.envelope import RecordedEvent
from senflow.services.auditing.replay import state_json
from senflow.services.workflow.state import replay

Doc = dict[str, Any]
FORMAT_VERSION = 1

REDACTION_NOTE = (
    "This file holds everything senflow keeps about the pupil, with personal data decrypted. "
    "Free-text fields (concern descriptions, views, meeting summaries and actions, assessment "
    "summaries, reasons and notes) may contain personal data about other people: parents and "
    "carers, staff, other pupils. Redacting other people's personal data from free text, where "
    "disclosing it would not be lawful (UK GDPR Article 15(4); Data Protection Act 2018, "
    "Schedule 2, Part 3), is a manual step before this file is given to the requester. Staff "
    "are identified by user id only. Answer within one month of the request."
)


def sar_document(
    pupil_id: str,
    events: Sequence[RecordedEvent],
    read_models: dict[str, Doc],
    vault: Doc,
    verification: Doc,
    generated_at: datetime,
) -> Doc:
    if not events:
        raise LookupError("no such pupil")
    state = replay(events)
    return {
        "kind": "senflow.subject_access_export",
        "format_version": FORMAT_VERSION,
        "pupil_id": pupil_id,
        "generated_at": generated_at.isoformat(),
        "note_on_redaction": REDACTION_NOTE,
        "personal_data_erased": state.erased,
        "events": [e.model_dump(mode="json") for e in events],
        "current_state": state_json(state),
        "read_models": read_models,
        "vault": vault,
        "verification": verification,
    }
