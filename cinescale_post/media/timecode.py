"""Timecode and source timing: where a frame sits in its source.

Timecode arithmetic goes through OpenTimelineIO's ``opentime`` (drop-frame
correct); timing comes from the source's packet table so VFR survives.
"""

from __future__ import annotations

import logging
from fractions import Fraction

from cinescale_post.contracts.media import Frame, SourceInfo

log = logging.getLogger(__name__)


def offset_timecode(tc: str, rate: Fraction, frames: int) -> str | None:
    """``tc`` advanced by ``frames`` at the nominal ``rate``, drop-frame aware.

    >>> offset_timecode("00:00:59;29", Fraction(30000, 1001), 1)
    '00:01:00;02'
    >>> offset_timecode("01:00:10:00", Fraction(24000, 1001), 5)
    '01:00:10:05'

    Returns None when SMPTE timecode does not exist at ``rate`` (VFR averages).
    """
    from opentimelineio import opentime

    r = float(rate)
    drop = ";" in tc
    try:
        t = opentime.from_timecode(tc.replace(".", ";"), r) + opentime.RationalTime(frames, r)
        return opentime.to_timecode(t, r, drop_frame=drop)
    except (ValueError, RuntimeError) as exc:  # OTIO raises ValueError for odd rates
        log.info("no timecode at rate %s: %s", rate, exc)
        return None


def timecode_frames(tc: str, rate: Fraction) -> int:
    """Frames from 00:00:00:00 to ``tc`` at ``rate`` (drop-frame aware), as OTIO's
    ``from_timecode`` counts them: the media time of a timecoded source's first frame.

    >>> timecode_frames("01:00:00:00", Fraction(24))
    86400
    """
    from opentimelineio import opentime

    return int(round(opentime.from_timecode(tc.replace(".", ";"), float(rate)).value))


def timecode_at_rate(tc: str, rate: Fraction, new_rate: Fraction) -> str | None:
    """``tc`` at ``rate`` as the timecode of the same running time at
    ``new_rate`` (deinterlacing to fields, inverse telecine); drop-frame where
    ``new_rate`` is a 29.97/59.94 rate and ``tc`` is drop-frame, else non-drop.

    >>> timecode_at_rate("10:00:00:12", Fraction(25), Fraction(50))
    '10:00:00:24'
    >>> timecode_at_rate("01:00:00:00", Fraction(30000, 1001), Fraction(24000, 1001))
    '01:00:00:00'
    """
    from opentimelineio import opentime

    drop = ";" in tc and (Fraction(new_rate) * 1001) % 30000 == 0
    try:
        t = opentime.from_timecode(tc.replace(".", ";"), float(rate))
        return opentime.to_timecode(t.rescaled_to(float(new_rate)), float(new_rate), drop_frame=drop)
    except (ValueError, RuntimeError) as exc:
        log.info("no timecode at rate %s: %s", new_rate, exc)
        return None


def start_timecode(source: SourceInfo, option: str, offset: int) -> str | None:
    """The timecode of the frame ``offset`` frames after the source's first."""
    base = source.timecode if option == "auto" else (None if option == "none" else option)
    if not base:
        return None
    return offset_timecode(base, source.rate, offset)


def source_offset(frame: Frame, source: SourceInfo) -> int:
    """Frames between the source's first frame and ``frame`` (timecode offset).

    Movies: the 0-based index. Sequences: the difference of plate numbers, so
    a gap in the source keeps later frames on their own timecode.
    """
    if source.kind == "movie" or not source.frame_numbers:
        return frame.index
    return frame.number - source.frame_numbers[0]


def source_pts(source: SourceInfo, index: int) -> int:
    """Source pts of frame ``index`` in ``source.time_base`` units.

    From the packet table when the reader filled it (exact for VFR), else the
    CFR grid ``index / rate``.
    """
    if 0 <= index < len(source.pts):
        return int(source.pts[index])
    start = int(source.pts[0]) if source.pts else 0
    return start + round(Fraction(index) / (source.rate * source.time_base))


def source_duration(source: SourceInfo, index: int) -> int:
    """Duration of frame ``index`` (next pts minus this one; last: nominal)."""
    if 0 <= index < len(source.pts) - 1:
        return int(source.pts[index + 1]) - int(source.pts[index])
    return max(1, round(1 / (source.rate * source.time_base)))
