"""Configuration from the environment (SENFLOW_*)."""

from __future__ import annotations

import sys

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from senflow.projections.kept_docs import DEFAULT_MAX_BYTES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SENFLOW_", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/senflow"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    bus_prefix: str = "senflow"  # exchange and queue names start with this
    partitions: int = 2  # queues per consumer service (pupils by crc32 of their id)
    scheduler_every: float = 3600.0  # seconds between scheduler ticks
    metrics_port: int | None = None  # Prometheus endpoint of this process, if set
    log_level: str = "INFO"
    log_json: bool = True
    # Tuning of the projection consumers and the relays; the defaults are the measured
    # ones (docs/benchmarks.md), and most deployments never change them.
    consumer_prefetch: int = Field(16, ge=1)  # pages in flight per partition queue
    consumer_linger: float = Field(0.1, ge=0)  # seconds between a busy consumer's writes
    consumer_busy_rate: float = Field(1000.0, gt=0)  # events/s from which a consumer lingers
    consumer_kept_bytes: int = Field(DEFAULT_MAX_BYTES, ge=0)  # documents kept (JSON); 0: none
    relay_checkpoint_every: float = Field(0.2, gt=0)  # seconds between checkpoint writes


def from_environment() -> Settings:
    """The settings, or exit with status 2 naming each bad variable and its rule."""
    try:
        return Settings()
    except ValidationError as exc:
        for e in exc.errors():
            name = "SENFLOW_" + "_".join(str(part) for part in e["loc"]).upper()
            sys.stderr.write(f"{name}: {e['msg']} (got {e.get('input')!r})\n")
        raise SystemExit(2) from None
