"""A movie's frame rate from its timestamps: constant or variable, and the exact
rate behind a coarse container clock (MKV's 1 ms, AVI's 2997/125)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def _fits(rate: Fraction | None, deltas: np.ndarray, time_base: Fraction) -> bool:
    """Every pts step within one tick of the step of ``rate``."""
    if not rate:
        return False
    step = float(1 / (rate * time_base))
    return bool(np.all(np.abs(deltas - step) <= 1.0 + 1e-9))


def rate_and_vfr(stream_rates: tuple, pts: list[int], time_base: Fraction) -> tuple[Fraction, bool]:
    """(nominal rate, is VFR) from sorted pts.

    ``stream_rates`` = (average_rate, base_rate, guessed_rate). VFR when a step
    misses ``1/average_rate`` by more than one tick -- unless all steps agree
    with each other within a tick: MOV's average rate counts the last
    frame's duration, which some writers set oddly, and that is not VFR. For
    CFR the first of (base, guessed, average) that fits every step is
    reported, so MKV's millisecond clock still yields 24000/1001.
    """
    average, base, guessed = (Fraction(r) if r else None for r in stream_rates)
    deltas = np.diff(np.asarray(pts, dtype=np.int64))
    span = Fraction(len(pts) - 1) / ((pts[-1] - pts[0]) * time_base) if len(pts) > 1 and pts[-1] > pts[0] else None
    average = average or span
    if len(deltas) == 0:
        return (base or average or guessed or Fraction(24)), False
    if not _fits(average, deltas, time_base):
        if np.ptp(deltas) > 1:  # steps really differ
            return average, True
        average = span
    for rate in (base, guessed, average):
        if _fits(rate, deltas, time_base):
            return rate, False
    return average, False


#: Rates a coarse clock is snapped to (plus the codec's own, tried first).
STANDARD_RATES = tuple(Fraction(r) for r in (
    "24000/1001", "24", "25", "30000/1001", "30", "48000/1001", "48", "50", "60000/1001", "60",
    "120000/1001", "120", "100", "96", "72", "15", "12", "12000/1001", "15000/1001", "16", "18", "20",
    "240", "240000/1001"))


def _on_grid(rate: Fraction, pts: np.ndarray, time_base: Fraction) -> bool:
    """Every (sorted) pts within one tick of a frame grid at ``rate`` (any offset):
    the timestamps are that rate, rounded to the container's clock."""
    step = float(1 / (rate * time_base))
    resid = pts - np.arange(len(pts), dtype=np.float64) * step
    return bool(np.ptp(resid) <= 1.0 + 1e-6)


def exact_rate(codec_rate: Fraction | None, stream_rate: Fraction | None, pts: list[int],
               time_base: Fraction) -> Fraction | None:
    """The exact rate of a clip whose container clock is coarse, or None.

    The clock is coarse when the container's rate is not a standard one or a
    frame is not a whole number of ticks (MKV's 1 ms: 19001/317 for 59.94;
    AVI's 2997/125 for 23.976, 1000000/66667 for 15). Then the codec's own
    timing (``codec_context.framerate``: H.264/HEVC VUI, MPEG-4 VOL) is used
    if the timestamps sit on its grid within one tick, else the standard rate
    nearest the timestamps' span that they fit. None: the clock is exact, or
    nothing fits (VFR; ``rate_and_vfr`` decides).
    """
    if stream_rate:
        ticks = 1 / (Fraction(stream_rate) * time_base)
        if Fraction(stream_rate) in STANDARD_RATES and ticks.denominator == 1:
            return None
    arr = np.asarray(pts, dtype=np.float64)
    if len(arr) < 2:
        return Fraction(codec_rate) if codec_rate and Fraction(codec_rate) in STANDARD_RATES else None
    span = Fraction(len(arr) - 1) / (Fraction(int(arr[-1] - arr[0])) * time_base) if arr[-1] > arr[0] else None
    codec = Fraction(codec_rate) if codec_rate else None
    # The codec's rate first when it is a standard one (VUI says 60000/1001);
    # a codec clock copied from the container (AVI's 2997/125) only last.
    candidates = [codec] if codec in STANDARD_RATES else []
    if span:
        candidates += sorted(STANDARD_RATES, key=lambda r: abs(r - span))
    if codec and codec not in STANDARD_RATES:
        candidates.append(codec)
    for rate in candidates:
        if rate > 0 and _on_grid(rate, arr, time_base):
            return rate
    return None
