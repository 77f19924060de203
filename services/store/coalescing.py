"""Group commit: concurrent appends share transactions, each keeping its own outcome.

The append lock makes the insert-and-commit step serial, so the store's write
rate is bounded by commits per second. The coalescer lets callers that arrive
while a transaction is in flight wait, then writes all of them in the next
transaction with ``EventStore.append_many``: every request is still checked
on its own (expected version, idempotency) and succeeds or fails alone, and
no caller hears "done" before the commit that holds its events. If the shared
transaction itself fails (a lost connection, or a unique violation caused by
another process), its requests are retried one transaction each, so one
request's trouble never becomes another's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import UUID

import structlog

from senflow.events.envelope import NewEvent
from senflow.services.store.eventstore import AppendRequest, AppendResult, EventStore, StoreError

log = structlog.get_logger(__name__)


@dataclass
class _Waiting:
    request: AppendRequest
    done: asyncio.Future[AppendResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class CoalescingAppender:
    def __init__(self, store: EventStore, max_batch: int = 256, writers: int = 2) -> None:
        self.store, self.max_batch = store, max_batch
        self._waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._writers: list[asyncio.Task[None]] = []
        self._count = writers
        self.transactions = 0
        self.requests = 0

    async def append(
        self, stream_id: UUID, events: Sequence[NewEvent], expected_version: int | None = None
    ) -> AppendResult:
        if not self._writers:
            # Two writers: while one commits, the other prepares the next batch.
            self._writers = [asyncio.create_task(self._write()) for _ in range(self._count)]
        waiting = _Waiting(AppendRequest(stream_id, events, expected_version))
        self._waiting.append(waiting)
        self._wake.set()
        return await waiting.done

    async def close(self) -> None:
        for task in self._writers:
            task.cancel()
        for task in self._writers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._writers = []

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            if not self._waiting:
                self._wake.clear()
            if not batch:
                continue
            # One stream in two requests of the same batch is fine (append_many keeps
            # them in order); the same stream in two concurrent batches is ordered by
            # the stream's row lock.
            await self._commit(batch)

    async def _commit(self, batch: list[_Waiting]) -> None:
        try:
            outcomes = await self.store.append_many([w.request for w in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            log.warning("shared_append_failed_retrying_alone", size=len(batch), error=repr(exc))
            for w in batch:
                await self._commit([w])
            return
        self.transactions += 1
        self.requests += len(batch)
        for w, outcome in zip(batch, outcomes, strict=True):
            _settle(w, outcome)


def _settle(w: _Waiting, outcome: AppendResult | StoreError | BaseException) -> None:
    if w.done.done():
        return
    if isinstance(outcome, BaseException):
        w.done.set_exception(outcome)
    else:
        w.done.set_result(outcome)
