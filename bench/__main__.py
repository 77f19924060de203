"""``python -m bench [--quick] [--only NAME ...] [--out DIR]``: run, print a table, write JSON."""

from __future__ import annotations

import argparse
import asyncio
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
    started = datetime.now(UTC)
    rows, failures = asyncio.run(_run(names, config))
    print(_table(rows))
    doc = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "quick": args.quick,
        "only": args.only,
        "machine": _machine(),
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
