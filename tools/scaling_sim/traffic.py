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


def trickle() -> Traffic:
    """15 photos spread over a day, a few close together: the case where a woken host costs most per photo."""
    per_minute = np.zeros(24 * 60)
    for minute in (35, 140, 170, 330, 500, 515, 690, 760, 905, 950, 1010, 1130, 1240, 1300, 1390):
        per_minute[minute] = 1.0
    return Traffic("trickle", per_minute, "24 h, 15 photos")


def two_bursts() -> Traffic:
    """Two short bursts onto an idle service, 90 minutes apart."""
    per_minute = np.zeros(4 * 60)
    per_minute[10:15] = 40_000.0
    per_minute[100:105] = 39_200.0
    return Traffic("two-bursts", per_minute, "396,000 photos in two 5-minute bursts 90 min apart, idle between")


PROFILES: dict[str, Callable[[], Traffic]] = {
    "steady": steady,
    "daily": daily,
    "burst": burst,
    "backfill": backfill,
    "quiet-night": quiet_night,
    "trickle": trickle,
    "two-bursts": two_bursts,
}


def random_day(seed: int) -> Traffic:
    """A seeded random day: a diurnal curve (quiet night, morning ramp, lunch, evening peak) with its scale, shape
    and timing drawn at random, some nights near silent, a few bursts, and Poisson arrivals per minute.

    Peaks range over 500-100,000 photos a minute (log-uniform), so some days never need more than one host and
    others need the whole fleet; the same seed always gives the same day.
    """
    rng = np.random.default_rng(seed)
    peak = float(np.exp(rng.uniform(np.log(500.0), np.log(100_000.0))))
    night = peak * (0.0 if rng.random() < 0.5 else rng.uniform(0.01, 0.1))
    evening = rng.uniform(18.0, 21.5)
    hours = [0.0, rng.uniform(1.5, 3.0), rng.uniform(5.0, 6.5), rng.uniform(8.0, 10.0), rng.uniform(11.5, 13.0),
             rng.uniform(14.0, 16.5), evening, evening + rng.uniform(0.5, 2.0), 23.0, 24.0]  # fmt: skip
    levels = [0.3, 0.0, 0.0, 0.4, rng.uniform(0.3, 0.7), 0.35, 1.0, 1.0, 0.35, 0.3]
    rate = np.interp(np.arange(24 * 60) / 60.0, hours, levels) * peak
    rate[(rate < night) & (np.arange(24 * 60) < 8 * 60)] = night  # the floor of a night that is not silent
    for _ in range(rng.integers(0, 4)):
        start, length = int(rng.integers(0, 23 * 60)), int(rng.integers(3, 20))
        rate[start : start + length] += float(np.exp(rng.uniform(np.log(2_000.0), np.log(60_000.0))))
    per_minute = rng.poisson(rate).astype(np.float64)
    return Traffic(
        f"random-{seed}",
        per_minute,
        f"seeded random day {seed}: peak {peak:,.0f} photos/min, {per_minute.sum():,.0f} photos",
    )


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
