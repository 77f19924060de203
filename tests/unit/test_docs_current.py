"""Generated documents stay in step with the code: regenerate them when this fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from senflow.events.catalogue import EVENT_TYPES
from senflow.events.schemas import catalogue_markdown, event_schema
from senflow.services.bus.contract import asyncapi_yaml
from senflow.services.bus.topology import Topology, definitions

pytestmark = pytest.mark.unit

DOCS = Path(__file__).parents[2] / "docs"


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_event_schema_file_is_current(name):
    on_disk = json.loads((DOCS / "events" / f"{name}.json").read_text())
    assert on_disk == event_schema(EVENT_TYPES[name]), "run: senflow schemas"


def test_event_catalogue_is_current():
    assert (DOCS / "events" / "README.md").read_text() == catalogue_markdown(), (
        "run: senflow schemas"
    )


def test_asyncapi_document_is_current():
    assert (DOCS / "asyncapi.yaml").read_text() == asyncapi_yaml(Topology()), (
        "run: senflow asyncapi"
    )


def test_asyncapi_lists_every_event_type_with_its_routing_key():
    text = asyncapi_yaml(Topology())
    for name in EVENT_TYPES:
        assert f"address: {name}.{{trust_id}}.{{school_urn}}" in text


def test_rabbitmq_definitions_file_is_current():
    on_disk = json.loads((DOCS.parent / "deploy" / "rabbitmq" / "definitions.json").read_text())
    assert on_disk == definitions(Topology()), "run: senflow definitions"
