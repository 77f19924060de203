"""Work split into numbered parts, built in forked worker processes that inherit its input.

Python's work of a bulk import (deciding, sealing, hashing, encoding) parallelises
by pupil, but its input is costly to send to another process: parsed commands
and events do not pickle (or pickle slowly: UUIDs). Forked workers inherit the
input instead; a task names its part by index and returns the built part (bytes
in COPY's format, cheap to send back).
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
from collections import deque
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import Any, TypeVar

T = TypeVar("T")

_build: Callable[[int], Any] | None = None  # in a worker: what it inherited


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _inherit(build: Callable[[int], Any]) -> None:
    global _build
    _build = build
    # The garbage collector would walk (and so copy, page by page) the whole heap
    # inherited from the parent; what was inherited is never garbage here.
    gc.freeze()


def _built(index: int) -> Any:
    assert _build is not None
    return _build(index)


async def built_in_workers(
    build: Callable[[int], T], parts: int, workers: int
) -> AsyncGenerator[T, None]:
    """``build(0)``, ``build(1)``, ... ``build(parts - 1)`` in order, ``workers`` at a time
    in forked processes, a few ahead of the caller (not all: built parts wait in memory)."""
    if parts <= 0:
        return
    pool = ProcessPoolExecutor(
        max(1, min(workers, parts)),
        mp_context=multiprocessing.get_context("fork"),
        initializer=_inherit,
        initargs=(build,),  # not pickled: a forked worker inherits it
    )
    try:
        upcoming = iter(range(parts))
        ahead: deque[Future[T]] = deque(
            pool.submit(_built, i) for i in islice(upcoming, max(1, workers) + 2)
        )
        while ahead:
            built = await asyncio.wrap_future(ahead.popleft())
            ahead.extend(pool.submit(_built, i) for i in islice(upcoming, 1))
            yield built
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
