"""The run's time budget. Workbooks kills a script that outlives env `TIMEOUT` (seconds), so every
wait and every request timeout is clipped to what is left. Monotonic clock: wall-clock jumps
(NTP, the emulator's settable clock) must not stretch or shrink the run."""
from __future__ import annotations

import math
import os
import time
from typing import Callable


class Deadline:
    def __init__(self, seconds: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seconds = seconds
        self._end = None if seconds is None else clock() + float(seconds)

    @classmethod
    def from_env(cls, default: float | None = None, *, env: dict | None = None) -> "Deadline":
        """From env `TIMEOUT`; `default` (None: unlimited) when unset or not a positive number."""
        raw = (os.environ if env is None else env).get("TIMEOUT")
        try:
            seconds = float(raw) if raw not in (None, "") else None
        except ValueError:
            seconds = None
        if seconds is None or not math.isfinite(seconds) or seconds <= 0:
            seconds = default
        return cls(seconds)

    def ending_early(self, seconds: float) -> "Deadline":
        """The same deadline `seconds` sooner (same start, same clock); unlimited stays so."""
        if self._end is None:
            return self
        early = Deadline(None, clock=self._clock)
        early._seconds = max(0.0, float(self._seconds) - seconds)
        early._end = self._end - seconds
        return early

    @classmethod
    def unlimited(cls) -> "Deadline":
        return cls(None)

    @property
    def limited(self) -> bool:
        return self._end is not None

    @property
    def total(self) -> float | None:
        return self._seconds

    def remaining(self) -> float:
        """Seconds left (inf when unlimited, never negative)."""
        if self._end is None:
            return math.inf
        return max(0.0, self._end - self._clock())

    def expired(self, margin: float = 0) -> bool:
        """True when less than `margin` seconds are left."""
        return self._end is not None and self.remaining() <= margin

    def __repr__(self) -> str:
        return "Deadline(unlimited)" if self._end is None else f"Deadline({self.remaining():.1f}s left)"
