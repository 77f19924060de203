"""Configuration from the environment (SENFLOW_*)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


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
