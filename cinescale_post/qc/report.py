"""Per-frame and per-chunk tables, thresholds, flags, and the JSON report.

A frame is flagged for *isolated* flicker (it jumps out and back), colour
drift, or softness; a chunk for sustained flicker, drift or softness (the
median over its frames is over the threshold), or for a seam at its first frame; a seam when the transition across a
chunk boundary flickers clearly more than the transitions around it. The
report's ``rerender`` holds the ``--frames`` string of everything flagged:
flagged frames, whole chunks flagged on their own averages, and the two
frames meeting at a flagged seam.

Default thresholds (``THRESHOLDS``), all overridable with ``--threshold``:

* ``flicker = 0.02`` code values RMS (about 5/255): a brightness jump of 2 %
  of full scale on one frame is visible on a grade monitor; film grain the
  render adds consistently stays below it because it moves with the flow.
* ``seam = 0.01`` above the neighbourhood median *and* ``seam_ratio = 2``
  times it: a step half the flicker threshold is visible because it happens
  to the whole frame at once; the ratio keeps a uniformly noisy render from
  raising random seams (it is flagged for flicker anyway).
* ``drift_mean = 2.0`` and ``drift_p95 = 5.0`` CIEDE2000: about 2 is a
  just-noticeable difference side by side; 5 in the worst 5 % of pixels
  catches a local colour shift (a face, a sky) the mean hides.
* ``detail_min = 0.8``: less than 80 % of the high-frequency energy of a
  plain Lanczos upscale means the render lost detail.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from cinescale_post import __version__
from cinescale_post.contracts.errors import UsageError
import cinescale_post.qc.metrics as m

REPORT_SCHEMA = 1


@dataclass(frozen=True)
class Thresholds:
    flicker: float = 0.02
    seam: float = 0.01
    seam_ratio: float = 2.0
    seam_radius: int = 3
    drift_mean: float = 2.0
    drift_p95: float = 5.0
    detail_min: float = 0.8

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise UsageError(f"threshold {f.name} = {v!r}: must be a number >= 0")
        if self.seam_radius < 1:
            raise UsageError(f"threshold seam_radius = {self.seam_radius}: must be >= 1")

    @classmethod
    def parse(cls, items: list[str] | tuple[str, ...]) -> Thresholds:
        """``["flicker=0.03", "drift_mean=3"]`` -> Thresholds (UsageError names the bad item)."""
        names = {f.name: f.type for f in fields(cls)}
        values = {}
        for item in items:
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in names:
                raise UsageError(f"--threshold {item!r}: unknown threshold" if sep else
                                 f"--threshold {item!r}: expected NAME=VALUE",
                                 fix="names: " + ", ".join(f"{k} (default {getattr(cls(), k)})" for k in names))
            try:
                values[key] = int(raw) if key == "seam_radius" else float(raw)
            except ValueError:
                raise UsageError(f"--threshold {item!r}: {raw!r} is not a number") from None
        return cls(**values)


def _r(x: float | None, nd: int = 5):
    """JSON-friendly rounding; NaN (not comparable) becomes null."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), nd)


def _frames_str(numbers) -> str:
    from cinescale_post.media.sequence import compress_ranges

    return compress_ranges(sorted(set(numbers)))


def build(meas, setup, thresholds: Thresholds | None = None) -> dict:
    """Turn :class:`analyse.Measurements` into the report dict (JSON-ready)."""
    from cinescale_post.qc.analyse import chunk_of

    t = thresholds or Thresholds()
    nums = meas.numbers
    d = np.array(meas.flicker, np.float64)
    iso = m.isolated(d) if len(nums) > 1 else np.zeros(len(nums))
    frames = []
    for i, n in enumerate(nums):
        flags = []
        if iso[i] > t.flicker:
            flags.append("flicker")
        if meas.drift_mean[i] > t.drift_mean or meas.drift_p95[i] > t.drift_p95:
            flags.append("drift")
        if meas.detail_gain[i] < t.detail_min:
            flags.append("soft")
        frames.append({
            "frame": n,
            "flicker": _r(iso[i]),
            "flicker_in": _r(d[i - 1]) if i else None,
            "warp_error": _r(meas.warp_out[i - 1]) if i else None,
            "warp_error_source": _r(meas.warp_src[i - 1]) if i else None,
            "drift_mean": _r(meas.drift_mean[i], 3),
            "drift_p95": _r(meas.drift_p95[i], 3),
            "detail_gain": _r(meas.detail_gain[i], 4),
            "flags": flags,
        })

    key = chunk_of(setup, meas.source_numbers)
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(nums):
        groups.setdefault(key(n), []).append(i)
    keys = sorted(groups)

    # Seams: between the last measured frame of a chunk and the first of the
    # next, when they are consecutive source frames (a comparable transition).
    seams = []
    boundary_t = [groups[k][0] - 1 for k in keys[1:] if not math.isnan(d[groups[k][0] - 1])]
    scores = dict(zip(boundary_t, m.seam_scores(d, boundary_t, t.seam_radius)))
    for tb, (excess, ratio) in scores.items():
        flagged = excess > t.seam and ratio > t.seam_ratio
        seams.append({"before": nums[tb], "after": nums[tb + 1], "flicker": _r(d[tb]), "score": _r(excess),
                      "ratio": _r(ratio, 2), "flagged": bool(flagged)})
    seam_after = {s["after"]: s for s in seams}

    chunks, rerender = [], set()
    for k in keys:
        idx = groups[k]
        inner = [d[i] for i in idx[:-1] if not math.isnan(d[i])]  # transitions inside the chunk
        c = {
            "id": f"{nums[idx[0]]}-{nums[idx[-1]]}",
            "first": nums[idx[0]], "last": nums[idx[-1]], "frames": len(idx),
            "flicker_mean": _r(np.mean(inner)) if inner else None,
            "flicker_max": _r(np.max(inner)) if inner else None,
            "drift_mean": _r(np.mean([meas.drift_mean[i] for i in idx]), 3),
            "drift_p95": _r(np.max([meas.drift_p95[i] for i in idx]), 3),
            "detail_gain": _r(np.mean([meas.detail_gain[i] for i in idx]), 4),
            "flagged_frames": _frames_str(nums[i] for i in idx if frames[i]["flags"]),
            "flags": [],
        }
        # Chunk flags are for *sustained* trouble, so they use medians over
        # the chunk's frames: one bad frame is flagged on its own and must
        # not send the whole chunk back.
        if np.median(iso[idx]) > t.flicker:
            c["flags"].append("flicker")
        if (np.median([meas.drift_mean[i] for i in idx]) > t.drift_mean
                or np.median([meas.drift_p95[i] for i in idx]) > t.drift_p95):
            c["flags"].append("drift")
        if np.median([meas.detail_gain[i] for i in idx]) < t.detail_min:
            c["flags"].append("soft")
        if c["flags"]:  # sustained problems: the whole chunk goes back
            rerender.update(nums[i] for i in idx)
        s = seam_after.get(c["first"])
        c["seam_before"] = s["score"] if s else None
        if s and s["flagged"]:
            c["flags"].append("seam")
            rerender.update((s["before"], s["after"]))
        if c["flagged_frames"]:
            c["flags"].append("frames")
        chunks.append(c)
    rerender.update(f["frame"] for f in frames if f["flags"])

    return {
        "schema": REPORT_SCHEMA,
        "tool": {"cinescale-post": __version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "setup": setup.to_dict(),
        "sizes": meas.sizes,
        "metrics": {
            "flicker": "RMS warping error along the source's optical flow (" + meas.flow + "), minus the source's "
                       "own, in quadrature; code values (1.0 = full scale)",
            "seam": "flicker across a chunk boundary minus the median of the transitions within seam_radius",
            "colour_drift": ("CIEDE2000" if meas.formula == "de2000" else "CIE76")
                            + " between output and source, both shrunk (area) to 1/8 of the source size; "
                              f"{meas.colour_space.get('transfer')} transfer, "
                              f"{meas.colour_space.get('primaries')} primaries, D65"
                              + (f", after {meas.colour_space['via']}" if meas.colour_space.get("via") else ""),
            "detail_gain": "high-frequency luma energy of the output / of a Lanczos upscale of the source "
                           f"in the output's own format ({meas.reference})",
        },
        "thresholds": asdict(t),
        "frames": frames,
        "chunks": chunks,
        "seams": seams,
        "summary": _summary(frames, chunks, seams, d),
        "rerender": {"frames": _frames_str(rerender), "count": len(rerender)},
    }


def _summary(frames, chunks, seams, d) -> dict:
    valid = d[~np.isnan(d)] if len(d) else d
    return {
        "frames": len(frames),
        "chunks": len(chunks),
        "flagged_frames": sum(1 for f in frames if f["flags"]),
        "flagged_chunks": sum(1 for c in chunks if c["flags"]),
        "flagged_seams": sum(1 for s in seams if s["flagged"]),
        "flicker_mean": _r(valid.mean()) if len(valid) else None,
        "flicker_max": _r(valid.max()) if len(valid) else None,
        "drift_mean": _r(np.mean([f["drift_mean"] for f in frames]), 3) if frames else None,
        "drift_p95_max": _r(max(f["drift_p95"] for f in frames), 3) if frames else None,
        "detail_gain_mean": _r(np.mean([f["detail_gain"] for f in frames]), 4) if frames else None,
    }


def rerender_command(report: dict) -> str | None:
    """The render command line for what the report flags (None when clean)."""
    frames = report["rerender"]["frames"]
    if not frames:
        return None
    import shlex

    s = report["setup"]
    preset = f" --preset {shlex.quote(s['preset'])}" if s.get("preset") else ""
    return f"cinescale render {shlex.quote(s['source'])} -o {shlex.quote(s['output'])}{preset} --frames {frames}"


def format_summary(report: dict) -> str:
    """A few lines for people: the worst numbers and what to re-render."""
    s = report["summary"]
    de = "dE2000" if "CIEDE2000" in report["metrics"]["colour_drift"] else "dE76"
    lines = [
        (f"frames {s['frames']}, chunks {s['chunks']}: flagged {s['flagged_frames']} frames, "
         f"{s['flagged_chunks']} chunks, {s['flagged_seams']} seams"),
        f"flicker mean {s['flicker_mean']} max {s['flicker_max']} (threshold {report['thresholds']['flicker']})",
        f"colour drift mean {s['drift_mean']} p95 max {s['drift_p95_max']} {de}",
        f"detail gain mean {s['detail_gain_mean']}",
    ]
    for c in report["chunks"]:
        if c["flags"]:
            lines.append(f"  chunk {c['id']}: {', '.join(c['flags'])}"
                         + (f" (frames {c['flagged_frames']})" if c["flagged_frames"] else ""))
    for se in report["seams"]:
        if se["flagged"]:
            lines.append(f"  seam {se['before']}|{se['after']}: score {se['score']} ({se['ratio']}x neighbours)")
    if report["rerender"]["frames"]:
        lines.append(f"re-render: --frames {report['rerender']['frames']}")
    else:
        lines.append("nothing to re-render")
    return "\n".join(lines)


def write_json(report: dict, path) -> None:
    from pathlib import Path

    from cinescale_post.orchestrator.manifest import atomic_write_text

    atomic_write_text(Path(path), json.dumps(report, indent=2))
