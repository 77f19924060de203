"""Upcasters: bring an event stored under an older schema version up to the current one.

Stored events are never rewritten; they are upgraded as they are read. Each
upcaster takes the JSON data of one version and returns that of the next, so a
chain of small steps covers any distance. Upcasters see sealed personal values
as opaque tokens and must pass them through untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from senflow.events.catalogue import current_version

JsonData = dict[str, Any]
Upcaster = Callable[[JsonData], JsonData]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


class UnknownSchemaVersion(ValueError):
    pass


def upcast(event_type: str, schema_version: int, data: JsonData) -> JsonData:
    """Return ``data`` as the current schema version of ``event_type`` expects it."""
    target = current_version(event_type)
    if schema_version > target:
        raise UnknownSchemaVersion(
            f"{event_type} v{schema_version} is newer than this senflow knows (v{target})"
        )
    version = schema_version
    while version < target:
        step = _UPCASTERS.get((event_type, version))
        if step is None:
            raise UnknownSchemaVersion(f"no upcaster from {event_type} v{version}")
        data = step(data)
        version += 1
    return data


@upcaster("sen_support_started", from_version=1)
def _rank_need_types(data: JsonData) -> JsonData:
    """v1 kept an unranked list of need types, primary first; v2 ranks them for the census.

    A v1 list longer than two (allowed before the census rule was enforced)
    keeps the first two: the census records no more than a primary and a
    secondary need.
    """
    out = {k: v for k, v in data.items() if k != "need_types"}
    out["needs"] = [
        {"type": need, "rank": rank}
        for rank, need in enumerate(data.get("need_types", [])[:2], start=1)
    ]
    return out
