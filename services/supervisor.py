"""Run every senflow service as a child process under one supervisor.

``senflow supervise`` starts the relay, the public feed, the scheduler, each projection's
consumer and (when asked) the HTTP API, each as ``senflow serve <name>``
with its output in ``<logs>/<name>.log``. A child that dies is started again
after a growing pause (reset once it has run for a minute); SIGTERM or SIGINT
stops them all gracefully, in reverse order, and waits for them. Each child
gets its own Prometheus port: ``SENFLOW_METRICS_PORT`` + its index.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

CORE = ("relay", "public-feed", "scheduler", "register", "provision-map", "audit", "compliance")


@dataclass
class Child:
    name: str
    index: int
    restarts: int = 0
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, services: list[str], logs: Path, metrics_base: int | None = None) -> None:
        self.children = [Child(name, i) for i, name in enumerate(services)]
        self.logs = logs
        self.metrics_base = metrics_base
        self.stopping = asyncio.Event()

    def _env(self, child: Child) -> dict[str, str]:
        env = dict(os.environ)
        if self.metrics_base is not None:
            env["SENFLOW_METRICS_PORT"] = str(self.metrics_base + child.index)
        return env

    async def _start(self, child: Child) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        out = (self.logs / f"{child.name}.log").open("ab")
        child.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "senflow.services.cli",
            "serve",
            child.name,
            stdout=out,
            stderr=out,
            env=self._env(child),
        )
        out.close()  # the child holds its own descriptor
        log.info("service_started", service=child.name, pid=child.process.pid)

    async def _watch(self, child: Child) -> None:
        pause = 1.0
        while not self.stopping.is_set():
            started = time.monotonic()
            await self._start(child)
            assert child.process is not None
            code = await child.process.wait()
            if self.stopping.is_set():
                return
            ran = time.monotonic() - started
            pause = 1.0 if ran > 60 else min(pause * 2, 30.0)
            child.restarts += 1
            log.warning("service_died", service=child.name, code=code, restart_in=pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), pause)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        watchers = [asyncio.create_task(self._watch(c)) for c in self.children]
        await self.stopping.wait()
        await self.stop()
        await asyncio.gather(*watchers, return_exceptions=True)

    async def stop(self, grace: float = 20.0) -> None:
        for child in reversed(self.children):
            if child.process and child.process.returncode is None:
                child.process.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            if child.process and child.process.returncode is None:
                try:
                    await asyncio.wait_for(child.process.wait(), grace)
                except TimeoutError:
                    child.process.kill()
                    await child.process.wait()
            log.info("service_stopped", service=child.name)
