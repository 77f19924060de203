"""Choosing an inspection sample: N pupils of a school's register, at least one with an EHCP.

Ofsted case-samples a handful of pupils (about six, one with an EHC plan) and
traces each through assess-plan-do-review. :func:`choose` picks them the same
way every time for the same candidates and seed (a seeded generator over the
candidates in pupil-id order), so a sample can be reproduced and checked.
"""

from __future__ import annotations

import random
from typing import Any

Doc = dict[str, Any]


def choose(candidates: list[Doc], n: int, seed: str | int) -> list[Doc]:
    """``n`` of the candidates (each with ``pupil_id`` and ``provision``), one E first if any."""
    if n < 1:
        raise ValueError("a sample needs at least one pupil")
    pool = sorted(candidates, key=lambda c: str(c["pupil_id"]))
    rng = random.Random(f"senflow-inspection-sample:{seed}")
    chosen: list[Doc] = []
    with_plan = [c for c in pool if c["provision"] == "E"]
    if with_plan:
        chosen.append(rng.choice(with_plan))
    rest = [c for c in pool if c not in chosen]
    chosen += rng.sample(rest, min(n - len(chosen), len(rest)))
    return chosen
