"""The twin's NCRONTAB reading (six fields, seconds first), as the Functions host reads schedules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from babelroom.twin.timers import Schedule


def at(h: int, m: int, s: int, day: int = 7) -> datetime:
    return datetime(2026, 12, day, h, m, s, tzinfo=UTC)  # 2026-12-07 is a Monday


def test_every_minute_at_second_zero() -> None:
    every_minute = Schedule("0 * * * * *")
    assert every_minute.matches(at(10, 5, 0))
    assert not every_minute.matches(at(10, 5, 1))


def test_steps_ranges_lists_and_weekdays() -> None:
    s = Schedule("*/15 0-10/5 9,17 * * 1-5")
    assert s.matches(at(9, 5, 30)) and s.matches(at(17, 10, 45))
    assert not s.matches(at(9, 6, 30)) and not s.matches(at(12, 5, 30)) and not s.matches(at(9, 5, 31))
    assert not s.matches(at(9, 5, 30, day=6))  # Sunday (0)
    assert Schedule("0 0 0 * * 0").matches(at(0, 0, 0, day=6))


@pytest.mark.parametrize("bad", ["* * * * *", "60 * * * * *", "*/0 * * * * *", "a * * * * *", "5-1 * * * * *"])
def test_bad_schedules_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        Schedule(bad)
