"""API settings: the shared SENFLOW_* settings plus SENFLOW_API_*."""

from __future__ import annotations

from senflow.services.settings import Settings


class ApiSettings(Settings):
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_pool_size: int = 10
    # Fail fast when PostgreSQL is unreachable: the client gets a 503 and retries.
    api_db_connect_timeout: float = 3.0
    api_db_command_timeout: float = 15.0
    api_retry_after: int = 5  # seconds, in the Retry-After of a 503
    # Read-your-writes: the longest a query waits for a projection to catch up.
    api_max_consistency_wait: float = 5.0
