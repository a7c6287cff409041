"""Compressed simulated time and the seeded random streams."""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

#: Default compression: one simulated hour per real minute.
DEFAULT_SPEED = 60.0


@dataclass
class SimClock:
    """Maps real elapsed time to simulated time: ``sim = start + elapsed * speed``.

    The simulated day starts at 08:00 so a short demo begins in business hours."""

    speed: float = DEFAULT_SPEED
    sim_start: datetime = field(
        default_factory=lambda: datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    )
    real_start: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be positive, not {self.speed}")

    def real_elapsed(self) -> float:
        return time.monotonic() - self.real_start

    def sim_elapsed(self) -> float:
        """Simulated seconds since the start."""
        return self.real_elapsed() * self.speed

    def sim_now(self) -> datetime:
        return self.sim_start + timedelta(seconds=self.sim_elapsed())


def rng_for(seed: int, stream: str) -> np.random.Generator:
    """An independent random stream per company, so adding one company leaves the others'
    traffic unchanged for the same seed."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


def diurnal(moment: datetime) -> float:
    """Traffic multiplier by simulated hour of day: quiet at night, peaks at 11:00 and 20:00."""
    hour = moment.hour + moment.minute / 60
    morning = math.exp(-(((hour - 11) / 3) ** 2))
    evening = 0.8 * math.exp(-(((hour - 20) / 2.5) ** 2))
    return 0.15 + morning + evening
