"""School calendar arithmetic: school-local days, academic years and terms.

senflow uses a fixed approximation of the English school year: autumn term
1 September to 31 December, spring term 1 January to 14 April, summer term
15 April to 31 August. Real term dates vary by school and by Easter; the
approximation is only used to judge "per term" and "per year" expectations.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

SCHOOL_TZ = ZoneInfo("Europe/London")


def school_day(moment: datetime) -> date:
    """The calendar day in England on which ``moment`` fell."""
    return moment.astimezone(SCHOOL_TZ).date()


def end_of_school_day(day: date) -> datetime:
    """The first instant after ``day`` in England (exclusive bound for "as of" queries)."""
    return datetime(day.year, day.month, day.day, tzinfo=SCHOOL_TZ) + timedelta(days=1)


def academic_year_start(day: date) -> date:
    year = day.year if day.month >= 9 else day.year - 1
    return date(year, 9, 1)


def academic_year_label(day: date) -> str:
    """ "2025/26" for any day from 1 September 2025 to 31 August 2026."""
    start = academic_year_start(day).year
    return f"{start}/{(start + 1) % 100:02d}"


def term_ends(academic_year_begins: date) -> tuple[date, date, date]:
    """Last days of the autumn, spring and summer terms of that academic year."""
    y = academic_year_begins.year
    return date(y, 12, 31), date(y + 1, 4, 14), date(y + 1, 8, 31)


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def terms_completed_since(start: date, day: date) -> int:
    """Terms of ``day``'s academic year that ended before ``day`` and after ``start``."""
    year_start = academic_year_start(day)
    return sum(1 for end in term_ends(year_start) if end < day and end >= start)
