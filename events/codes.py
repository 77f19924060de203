"""DfE codes and identifiers: SEN provision, need types, broad areas, UPN and URN.

The values are the School Census codes, so exports need no translation table.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator


class SenProvision(StrEnum):
    """School Census SEN provision. A and P (to 2014) and S (to 2018) are history only."""

    NO_SEN = "N"
    SEN_SUPPORT = "K"
    EHC_PLAN = "E"


class NeedType(StrEnum):
    """The 13 School Census SEN types of need."""

    SPLD = "SPLD"  # specific learning difficulty
    MLD = "MLD"  # moderate learning difficulty
    SLD = "SLD"  # severe learning difficulty
    PMLD = "PMLD"  # profound and multiple learning difficulty
    SEMH = "SEMH"  # social, emotional and mental health
    SLCN = "SLCN"  # speech, language and communication needs
    HI = "HI"  # hearing impairment
    VI = "VI"  # vision impairment
    MSI = "MSI"  # multi-sensory impairment
    PD = "PD"  # physical disability
    ASD = "ASD"  # autistic spectrum disorder
    OTH = "OTH"  # other difficulty or disability
    NSA = "NSA"  # SEN support but no specialist assessment of type of need


class BroadArea(StrEnum):
    """The four broad areas of need (Code of Practice 6.28-6.35)."""

    COMMUNICATION_AND_INTERACTION = "communication_and_interaction"
    COGNITION_AND_LEARNING = "cognition_and_learning"
    SEMH = "social_emotional_mental_health"
    SENSORY_AND_PHYSICAL = "sensory_and_physical"


BROAD_AREA_OF: dict[NeedType, BroadArea | None] = {
    NeedType.SLCN: BroadArea.COMMUNICATION_AND_INTERACTION,
    NeedType.ASD: BroadArea.COMMUNICATION_AND_INTERACTION,
    NeedType.SPLD: BroadArea.COGNITION_AND_LEARNING,
    NeedType.MLD: BroadArea.COGNITION_AND_LEARNING,
    NeedType.SLD: BroadArea.COGNITION_AND_LEARNING,
    NeedType.PMLD: BroadArea.COGNITION_AND_LEARNING,
    NeedType.SEMH: BroadArea.SEMH,
    NeedType.HI: BroadArea.SENSORY_AND_PHYSICAL,
    NeedType.VI: BroadArea.SENSORY_AND_PHYSICAL,
    NeedType.MSI: BroadArea.SENSORY_AND_PHYSICAL,
    NeedType.PD: BroadArea.SENSORY_AND_PHYSICAL,
    NeedType.OTH: None,
    NeedType.NSA: None,
}

# Characters 2-13 of a UPN are weighted 2..13; the sum mod 23 indexes this
# alphabet (I, O and S are left out so they cannot be misread as 1, 0 and 5).
UPN_CHECK_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"
_UPN_SHAPE = re.compile(r"^[A-Z][0-9]{11}[0-9A-Z]$")
_URN_SHAPE = re.compile(r"^[0-9]{6}$")


def _char_value(ch: str) -> int:
    # A temporary UPN ends in a letter; the DfE algorithm weights that letter by
    # its position in the check alphabet.
    if ch.isdigit():
        return int(ch)
    return UPN_CHECK_LETTERS.index(ch)


def upn_check_letter(body: str) -> str:
    """Check letter for the 12 characters that follow it."""
    total = sum(_char_value(ch) * weight for weight, ch in enumerate(body, start=2))
    return UPN_CHECK_LETTERS[total % 23]


def upn_problem(value: str) -> str | None:
    """Why `value` is not a valid UPN, or None when it is."""
    if not _UPN_SHAPE.match(value):
        return "a UPN is 13 characters: a check letter, 11 digits, then a digit or a letter"
    if value[12].isalpha() and value[12] not in UPN_CHECK_LETTERS:
        return "a temporary UPN may not end in I, O or S"
    expected = upn_check_letter(value[1:])
    if value[0] != expected:
        return f"check letter is {value[0]!r} but the digits give {expected!r}"
    return None


def is_temporary_upn(value: str) -> bool:
    return value[-1].isalpha()


def _validate_upn(value: str) -> str:
    value = value.strip().upper()
    problem = upn_problem(value)
    if problem:
        raise ValueError(f"invalid UPN: {problem}")
    return value


def _validate_urn(value: str) -> str:
    if not _URN_SHAPE.match(value):
        raise ValueError("invalid URN: a school URN is exactly six digits")
    return value


UPN = Annotated[str, AfterValidator(_validate_upn)]
URN = Annotated[str, AfterValidator(_validate_urn)]
