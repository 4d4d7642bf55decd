"""Traffic for the simulator: photos arriving per minute, from a built-in profile or a `minute,arrivals` CSV."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Arrivals = npt.NDArray[np.float64]


class TrafficError(ValueError):
    """A traffic file that cannot be read; the message is one line naming the file, line and what is wrong."""


@dataclass(frozen=True)
class Traffic:
    """Photos uploaded in each minute, starting at minute 0."""

    name: str
    per_minute: Arrivals
    description: str

    @property
    def total(self) -> float:
        return float(self.per_minute.sum())


def steady() -> Traffic:
    """A flat day: 30,000 photos a minute (4.5 tasks' worth at 110 photos/s)."""
    return Traffic("steady", np.full(24 * 60, 30_000.0), "24 h at 30,000 photos/min")


def daily() -> Traffic:
    """A day with a quiet early morning, a lunch bump and an evening peak of 100,000 photos a minute."""
    hours = [0, 5, 8, 12, 13, 16, 19, 20.5, 23, 24]
    rates = [6_000, 2_000, 20_000, 40_000, 35_000, 30_000, 100_000, 100_000, 12_000, 6_000]
    minutes = np.arange(24 * 60, dtype=np.float64)
    per_minute = np.interp(minutes / 60.0, hours, rates)
    return Traffic("daily", per_minute, "24 h, 2,000-100,000 photos/min, evening peak 19:00-20:30")


def burst() -> Traffic:
    """10,000 photos a minute for 4 h with 200,000 extra photos in 10 minutes after the first hour."""
    per_minute = np.full(4 * 60, 10_000.0)
    per_minute[60:70] += 20_000.0
    return Traffic("burst", per_minute, "4 h at 10,000 photos/min + 200,000 in 10 min at 01:00")


def backfill() -> Traffic:
    """4.2 million photos uploaded in 10 minutes onto an idle service, then nothing."""
    per_minute = np.zeros(3 * 60)
    per_minute[:10] = 420_000.0
    return Traffic("backfill", per_minute, "4.2 M photos in 10 min from idle")


def quiet_night() -> Traffic:
    """An evening tail, seven silent hours (the fleet must reach zero), one photo, then the morning."""
    per_minute = np.zeros(10 * 60)
    per_minute[:60] = np.linspace(5_000.0, 0.0, 60)
    per_minute[420] = 1.0
    per_minute[480:600] = np.linspace(0.0, 10_000.0, 120)
    return Traffic("quiet-night", per_minute, "tail, 7 h silent, 1 photo at 07:00, morning ramp from 08:00")


PROFILES: dict[str, Callable[[], Traffic]] = {
    "steady": steady,
    "daily": daily,
    "burst": burst,
    "backfill": backfill,
    "quiet-night": quiet_night,
}


def read_csv(path: Path) -> Traffic:
    """Read `minute,arrivals` rows (an optional header line); minutes not listed get no photos."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TrafficError(f"{path}: cannot be read ({err.strerror})") from None
    rows: dict[int, float] = {}
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if number == 1 and [cell.strip().lower() for cell in row] == ["minute", "arrivals"]:
            continue
        minute, arrivals = _parse_row(row)
        if minute is None or arrivals is None:
            raise TrafficError(
                f"{path}:{number}: bad row {','.join(row)!r}: expected minute,arrivals with a whole minute >= 0 "
                "and a number of photos >= 0"
            )
        if minute in rows:
            raise TrafficError(f"{path}:{number}: minute {minute} appears twice")
        rows[minute] = arrivals
    if not rows:
        raise TrafficError(f"{path}: no minute,arrivals rows")
    per_minute = np.zeros(max(rows) + 1)
    for minute, arrivals in rows.items():
        per_minute[minute] = arrivals
    return Traffic(path.stem, per_minute, f"{path.name}: {len(rows)} rows")


def _parse_row(row: list[str]) -> tuple[int | None, float | None]:
    if len(row) != 2:
        return None, None
    try:
        minute, arrivals = int(row[0].strip()), float(row[1].strip())
    except ValueError:
        return None, None
    if minute < 0 or not math.isfinite(arrivals) or arrivals < 0:
        return None, None
    return minute, arrivals
