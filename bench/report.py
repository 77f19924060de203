"""``python -m bench.report [RESULTS.json ...]``: the results as Markdown, for docs/benchmarks.md.

With several files (runs of different parts), their rows are put together in
the order given; each run's header line names when and on what it ran.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LATEST = Path(__file__).parent / "results" / "latest.json"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def render(runs: list[dict[str, Any]]) -> str:
    out = []
    for run in runs:
        m = run["machine"]
        speed = m.get("python_speed", {})
        out.append(
            f"- run of {run['started']} ({run['seconds']:.0f} s{', quick' if run['quick'] else ''}"
            f"; {', '.join(run['only'] or ['all'])}): commit {m['git']}, PostgreSQL "
            f"{m['postgres']}, Python {m['python']}, {m['cpus']} cores, load average "
            f"{m.get('load_average_at_start', ['?'])[0]} at the start and "
            f"{m.get('load_average', ['?'])[0]} at the end; `json.dumps` of a small event "
            f"{speed.get('json_dumps_us', '?')} µs"
        )
    rows = [r for run in runs for r in run["results"]]
    out += ["", "| bench | case | value | unit |", "|---|---|---:|---|"]
    out += [f"| {r['bench']} | {r['case']} | {_number(r['value'])} | {r['unit']} |" for r in rows]
    out += ["", "| target | measured | met |", "|---|---:|---|"]
    out += [
        f"| {r['bench']}: {r['case']} {r['target']} | {_number(r['value'])} {r['unit']} "
        f"| {'**yes**' if r['met'] else 'no'} |"
        for r in rows
        if r["target"]
    ]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or [LATEST]
    print(render([json.loads(p.read_text()) for p in paths]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
