"""DfE codes: UPN check letter, URN shape, need types and broad areas."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from senflow.events.codes import (
    BROAD_AREA_OF,
    UPN,
    UPN_CHECK_LETTERS,
    URN,
    BroadArea,
    NeedType,
    SenProvision,
    is_temporary_upn,
    upn_check_letter,
    upn_problem,
)

pytestmark = pytest.mark.unit

UPN_ADAPTER = TypeAdapter(UPN)
URN_ADAPTER = TypeAdapter(URN)

VALID = "B801200005001"
# Worked by hand: digits 801200005001 weighted 2..13 sum to 93; 93 mod 23 = 1 -> "B".
# Temporary UPNs end in a letter valued by its place in the check alphabet (A=0, B=1):
#   80120000500A -> 80 + 0*13 = 80, 80 mod 23 = 11 -> "M"
#   80120000500B -> 80 + 1*13 = 93, 93 mod 23 = 1  -> "B"
TEMPORARY = ["M80120000500A", "B80120000500B"]


def reference_check_letter(body: str) -> str:
    """The DfE algorithm written out independently of the code under test."""
    alphabet = "ABCDEFGHJKLMNPQRTUVWXYZ"
    total = 0
    for weight, ch in zip(range(2, 14), body, strict=True):
        total += weight * (int(ch) if ch.isdigit() else alphabet.index(ch))
    return alphabet[total % 23]


def test_check_alphabet_leaves_out_i_o_s() -> None:
    assert len(UPN_CHECK_LETTERS) == 23
    assert not set("IOS") & set(UPN_CHECK_LETTERS)


def test_valid_upn() -> None:
    assert upn_problem(VALID) is None
    assert UPN_ADAPTER.validate_python(VALID) == VALID
    assert upn_check_letter(VALID[1:]) == "B"
    assert not is_temporary_upn(VALID)


def test_upn_is_normalised_before_checking() -> None:
    assert UPN_ADAPTER.validate_python("  b801200005001 ") == VALID


@pytest.mark.parametrize("upn", TEMPORARY)
def test_temporary_upn_ending_in_a_letter(upn: str) -> None:
    assert upn_problem(upn) is None
    assert UPN_ADAPTER.validate_python(upn) == upn
    assert is_temporary_upn(upn)


@pytest.mark.parametrize(
    ("upn", "problem"),
    [
        ("C801200005001", "check letter"),  # wrong check letter
        ("A801200005001", "check letter"),
        ("B80120000500", "13 characters"),  # too short
        ("B8012000050011", "13 characters"),  # too long
        ("", "13 characters"),
        ("8801200005001", "13 characters"),  # no letter first
        ("B8012000050A1", "13 characters"),  # letter in the middle
        ("I801200005001", "check letter"),  # I, O and S are never check letters
        ("O801200005001", "check letter"),
        ("S801200005001", "check letter"),
        ("B80120000500I", "may not end in I, O or S"),
        ("B80120000500O", "may not end in I, O or S"),
        ("B80120000500S", "may not end in I, O or S"),
    ],
)
def test_invalid_upn(upn: str, problem: str) -> None:
    found = upn_problem(upn)
    assert found is not None and problem in found
    with pytest.raises(ValidationError, match="invalid UPN"):
        UPN_ADAPTER.validate_python(upn)


@given(
    digits=st.text("0123456789", min_size=11, max_size=11),
    last=st.sampled_from("0123456789" + UPN_CHECK_LETTERS),
)
def test_check_letter_matches_the_dfe_algorithm(digits: str, last: str) -> None:
    body = digits + last
    letter = upn_check_letter(body)
    assert letter == reference_check_letter(body)
    assert upn_problem(letter + body) is None


@given(
    digits=st.text("0123456789", min_size=12, max_size=12),
    position=st.integers(0, 11),
    delta=st.integers(1, 9),
)
def test_any_single_digit_error_is_caught(digits: str, position: int, delta: int) -> None:
    upn = upn_check_letter(digits) + digits
    wrong = str((int(digits[position]) + delta) % 10)
    typo = upn[: position + 1] + wrong + upn[position + 2 :]
    assert upn_problem(typo) is not None


@pytest.mark.parametrize("urn", ["123456", "000001", "999999"])
def test_urn_is_six_digits(urn: str) -> None:
    assert URN_ADAPTER.validate_python(urn) == urn


@pytest.mark.parametrize("urn", ["12345", "1234567", "12345a", " 123456", "", "１２３４５６"])
def test_invalid_urn(urn: str) -> None:
    with pytest.raises(ValidationError, match="six digits"):
        URN_ADAPTER.validate_python(urn)


def test_every_need_type_has_a_broad_area_entry() -> None:
    assert set(BROAD_AREA_OF) == set(NeedType)
    assert len(NeedType) == 13
    assert all(area is None or isinstance(area, BroadArea) for area in BROAD_AREA_OF.values())
    assert set(BROAD_AREA_OF.values()) - {None} == set(BroadArea)
    assert BROAD_AREA_OF[NeedType.NSA] is None
    assert BROAD_AREA_OF[NeedType.OTH] is None


def test_census_codes() -> None:
    assert [p.value for p in SenProvision] == ["N", "K", "E"]
    assert {n.value for n in NeedType} >= {"SPLD", "SLCN", "SEMH", "ASD", "NSA"}
