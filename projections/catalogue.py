"""The projections senflow runs, by the name used on the command line."""

from __future__ import annotations

from senflow.projections import audit, compliance, provision_map, register
from senflow.projections.base import Projection

PROJECTIONS: dict[str, Projection] = {
    "register": register.PROJECTION,
    "provision-map": provision_map.PROJECTION,
    "audit": audit.PROJECTION,
    "compliance": compliance.PROJECTION,
}
