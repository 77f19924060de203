"""`senflow serve api`: the API under uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import structlog
import uvicorn

from senflow.services.api.app import create_app
from senflow.services.api.config import ApiSettings
from senflow.services.settings import Settings

log = structlog.get_logger(__name__)


async def serve_api(settings: Settings) -> None:
    api_settings = ApiSettings(**settings.model_dump())
    config = uvicorn.Config(
        create_app(api_settings),
        host=api_settings.api_host,
        port=api_settings.api_port,
        # one JSON line per request comes from our middleware; keep uvicorn's logging out
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )
    log.info("api_starting", host=api_settings.api_host, port=api_settings.api_port)
    await uvicorn.Server(config).serve()
