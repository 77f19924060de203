"""``python -m bench [--quick] [--only NAME ...] [--out DIR]``: run, print a table, write JSON."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Config, Row
from senflow.services import logging as senflow_logging

BENCHES = ("append", "import", "replay", "rebuild", "e2e")
MODULES = {"import": "bench.bulk_import"}
HERE = Path(__file__).parent


def _table(rows: list[Row]) -> str:
    head = ("bench", "case", "value", "unit", "target", "met")
    body = []
    for r in rows:
        value = f"{r.value:,.2f}" if r.value < 100 else f"{r.value:,.0f}"
        met = "" if r.met is None else ("yes" if r.met else "NO")
        body.append((r.bench, r.case, value, r.unit, r.target, met))
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]
    lines = []
    for n, line in enumerate([head, *body]):
        cells = [
            str(c).rjust(widths[i]) if i == 2 else str(c).ljust(widths[i])
            for i, c in enumerate(line)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _python_speed() -> dict[str, float]:
    """How fast this machine runs plain Python, to compare runs across machines.

    Fixed work, best of five: encoding a typical event's data with the standard
    library, and hashing it. Absolute results scale with these; ratios should not.
    """
    data = {
        "plan_id": "0b7f3c2e-6a55-4f1e-9d5c-0a1b2c3d4e5f",
        "review_date": "2026-03-20",
        "outcomes": [{"outcome_id": "O1", "text": "Reads 40 words a minute"}] * 3,
        "staff_informed": True,
    }

    def best(fn: object, n: int = 20_000) -> float:
        times = []
        for _ in range(5):
            t = time.perf_counter()
            for _ in range(n):
                fn()  # type: ignore[operator]
            times.append((time.perf_counter() - t) / n)
        return round(min(times) * 1e6, 2)

    encoded = json.dumps(data).encode()
    return {
        "json_dumps_us": best(lambda: json.dumps(data, sort_keys=True)),
        "sha256_us": best(lambda: hashlib.sha256(encoded).digest()),
    }


def _machine() -> dict[str, object]:
    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "postgres": version(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "SHOW server_version"]
        ),
        "git": version(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"]),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python_speed": _python_speed(),
    }


async def _run(names: list[str], config: Config) -> tuple[list[Row], dict[str, str]]:
    rows: list[Row] = []
    failures: dict[str, str] = {}
    for name in names:
        module = importlib.import_module(MODULES.get(name, f"bench.{name}"))
        started = time.perf_counter()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        try:
            got = await module.run(config)
        except Exception:
            failures[name] = traceback.format_exc()
            print(failures[name], file=sys.stderr, flush=True)
            continue
        print(
            f"== {name} done in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True
        )
        print(_table(got), file=sys.stderr, flush=True)
        rows += got
    return rows, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only", action="append", choices=BENCHES, help="run only this (repeatable)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    names = [n for n in BENCHES if not args.only or n in args.only]
    config = Config(quick=args.quick)
    senflow_logging.configure("WARNING", False)
    started, load_at_start = datetime.now(UTC), [round(x, 2) for x in os.getloadavg()]
    rows, failures = asyncio.run(_run(names, config))
    print(_table(rows))
    doc = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "quick": args.quick,
        "only": args.only,
        "machine": {**_machine(), "load_average_at_start": load_at_start},
        "results": [asdict(r) for r in rows],
        "failures": failures,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=2, default=str) + "\n"
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"{stamp}.json").write_text(text)
    (args.out / "latest.json").write_text(text)
    print(f"results: {args.out / 'latest.json'} (and {stamp}.json)", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
