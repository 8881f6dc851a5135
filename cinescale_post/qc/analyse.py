"""Read a render and its source side by side and measure every frame.

What a QC run needs to know about a render comes from its manifest
(``<output>.manifest.json``, see ``orchestrator.manifest``): the source, the
first plate number of movies, the chunk grid, and the geometry that placed
the source picture in the output frame (fit/pad/crop, rotation). Without a
manifest the caller names the source, and the picture is assumed fitted with
``fit`` like ``plan.fit_geometry`` would.

Only the *picture* region of the output is measured (letterbox padding is
not the render's doing). Frames are streamed: at most the previous and the
current frame of each side are held.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np

from cinescale_post.contracts.errors import InputError, UsageError
import cinescale_post.qc.delivery as delivery
import cinescale_post.qc.metrics as m

log = logging.getLogger(__name__)


DRIFT_SCALE = 8  # colour drift compares 8x8-source-pixel averages


@dataclass(frozen=True)
class Placement:
    """How a source frame lands in the output frame (``plan.Geometry``):
    rotate by ``rotate`` degrees CCW, resize to (scale_w, scale_h), put at
    (x, y) in (width, height); negative offsets crop, positive ones pad."""

    width: int
    height: int
    scale_w: int
    scale_h: int
    x: int = 0
    y: int = 0
    rotate: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> Placement:
        return cls(*(int(d[k]) for k in ("width", "height", "scale_w", "scale_h", "x", "y")),
                   rotate=int(d.get("rotate", 0)))

    def boxes(self) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """(output box, scaled-source box), each (x0, y0, w, h): the visible picture."""
        sx0, sy0 = max(0, -self.x), max(0, -self.y)
        dx0, dy0 = max(0, self.x), max(0, self.y)
        w = min(self.scale_w - sx0, self.width - dx0)
        h = min(self.scale_h - sy0, self.height - dy0)
        return (dx0, dy0, w, h), (sx0, sy0, w, h)


def _crop(a: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, w, h = box
    return a[y0:y0 + h, x0:x0 + w]


def _canvas(picture: np.ndarray, box: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """``picture`` (h, w, 3) placed at ``box`` in a black (H, W, 3) frame of
    ``size``: what the writer was given, letterbox included."""
    out = np.zeros((size[1], size[0], 3), np.float32)
    x0, y0, w, h = box
    out[y0:y0 + h, x0:x0 + w] = picture
    return out


@dataclass
class Setup:
    """Everything a QC run resolved before reading a frame."""

    output: str
    source: str
    manifest: str | None
    first_frame: int
    chunk: int
    placement: Placement | None  # None: derive from the frame sizes with ``fit``
    fit: str = "pad"
    plan: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"output": self.output, "source": self.source, "manifest": self.manifest,
                "first_frame": self.first_frame, "chunk": self.chunk, "fit": self.fit,
                "preset": self.plan.get("preset"),
                "placement": None if self.placement is None else self.placement.__dict__}


def resolve(output: str, source: str | None = None, *, chunk: int | None = None,
            first_frame: int | None = None, fit: str = "pad") -> Setup:
    """Fill in what the manifest knows; explicit arguments win over it.

    Raises UsageError when there is neither a manifest nor ``source``.
    """
    from cinescale_post.media.sequence import parse_pattern
    from cinescale_post.orchestrator.manifest import Manifest

    man = Manifest(output)
    data = man.read()
    plan = (data or {}).get("plan") or {}
    if data and parse_pattern(output) is None and not os.path.exists(output):
        raise InputError(f"{output} does not exist, but its render manifest does (chunks not assembled yet?)",
                         fix=f"run `cinescale assemble {man.path}`, or finish the render")
    if source is None:
        if not data:
            raise UsageError(f"no render manifest at {man.path}, so the source is unknown",
                             fix="pass the source clip with --source INPUT")
        source = _manifest_source(data, man.root)
    geom = (plan.get("output") or {}).get("geometry")
    placement = Placement.from_dict(geom) if geom else None
    if first_frame is None:
        first_frame = int((plan.get("source") or {}).get("first_frame") or 1001)
    if chunk is None:
        chunk = int((plan.get("output") or {}).get("chunk") or 0)
    if chunk < 0:
        raise UsageError(f"--chunk {chunk}: must be >= 0", fix="0 means no chunk boundaries")
    if fit not in ("pad", "crop", "stretch"):
        raise UsageError(f"--fit {fit!r}: must be pad, crop or stretch", fix="use the render preset's output.fit")
    return Setup(output=output, source=source, manifest=str(man.path) if data else None, first_frame=first_frame,
                 chunk=chunk, placement=placement, fit=fit, plan=plan)


def _manifest_source(data: dict, root) -> str:
    """The render's input: the absolute path recorded at render time, else the
    plan's (maybe relative) path, tried from here and from the manifest's folder."""
    candidates = [(data.get("input") or {}).get("path"), (data.get("plan") or {}).get("input")]
    for c in [c for c in candidates if c]:
        for p in (c, os.path.join(str(root), c)):
            if os.path.exists(p) or "#" in p or "%" in p:
                return p
    raise InputError(f"the render's source {candidates[0] or candidates[1]} is gone",
                     fix="pass its new location with --source INPUT")


# ---------------------------------------------------------------- measuring


@dataclass
class Measurements:
    """Raw numbers, one entry per measured frame / per transition.

    ``transitions[i]`` joins ``numbers[i]`` and ``numbers[i + 1]``; its
    values are NaN when the two are not consecutive source frames.
    """

    numbers: list[int]
    source_numbers: tuple[int, ...]
    drift_mean: list[float] = field(default_factory=list)
    drift_p95: list[float] = field(default_factory=list)
    detail_gain: list[float] = field(default_factory=list)
    warp_out: list[float] = field(default_factory=list)
    warp_src: list[float] = field(default_factory=list)
    flicker: list[float] = field(default_factory=list)
    formula: str = "de2000"
    flow: str = "dis"
    colour_space: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    reference: str = "lanczos"  # what detail gain divides by (see qc/delivery.py)


def drift_grid(w: int, h: int) -> tuple[int, int]:
    """(width, height) at which colour drift compares a w x h source picture:
    1/DRIFT_SCALE of it, at least 16 wide (never enlarged), same aspect."""
    gw = min(w, max(16, w // DRIFT_SCALE))
    return gw, max(1, round(h * gw / w))


def _colour_space(info) -> dict:
    c = info.colour
    return {"transfer": "linear" if c.trc == 8 else "srgb", "primaries": "bt2020" if c.primaries == 9 else "bt709"}


def _ocio_display(plan: dict | None):
    """(source -> display, output -> display, note) for a render made in OCIO
    colour mode (its manifest's plan), else (None, None, {}): the display
    transform is the render's own shaper (media/ocio.py), from the plate's
    space for the source and from the output space for the render."""
    colour = (plan or {}).get("colour") or {}
    if colour.get("mode") != "ocio":
        return None, None, {}
    from cinescale_post.media.ocio import Converter

    src = Converter(dict(colour))
    out = Converter({**colour, "input": colour["output"]})
    note = {"via": f"OCIO {colour['input']} -> display (shaper {colour.get('shaper', 'srgb-shoulder')})"}
    return src.to_display, out.to_display, note


def _placement_for(setup: Setup, src_info, out_size: tuple[int, int]) -> Placement:
    if setup.placement is not None:
        p = setup.placement
        if (p.width, p.height) != out_size:
            raise InputError(f"{setup.output} has {out_size[0]}x{out_size[1]} frames but its manifest says "
                             f"{p.width}x{p.height}", fix="pass the output this manifest belongs to")
        return p
    from cinescale_post.pipeline.geometry import fit_geometry

    g, _ = fit_geometry(src_info, out_size[0], out_size[1], setup.fit)
    return Placement(g.width, g.height, g.scale_w, g.scale_h, g.x, g.y, g.rotate)


def select(requested, out_numbers, src_numbers) -> list[int]:
    """Frames both sides have, limited to ``requested`` (a frame-range string or None)."""
    both = sorted(set(out_numbers) & set(src_numbers))
    if requested:
        import fileseq

        try:
            wanted = set(fileseq.FrameSet(str(requested)))
        except fileseq.ParseException as exc:
            raise UsageError(f"--frames {requested!r}: not a frame range ({exc})",
                             fix="e.g. 1001-1100, 1001,1005-1010") from exc
        both = [n for n in both if n in wanted]
    return both


def measure(setup: Setup, host, *, frames: str | None = None, flow: str = "dis", formula: str = "de2000",
            on_frame=None) -> Measurements:
    """Stream the output and the source and compute every raw number.

    ``on_frame(number, done, total)`` is called after each frame (progress).
    Raises InputError (unreadable media, no common frames, wrong size).
    """
    from cinescale_post.media.probe import open_input
    from cinescale_post.media.sequence import compress_ranges

    with open_input(setup.output, first_frame=setup.first_frame, host=host) as out_r, \
            open_input(setup.source, first_frame=setup.first_frame, host=host) as src_r:
        oi, si = out_r.info, src_r.info
        numbers = select(frames, oi.frame_numbers, si.frame_numbers)
        if not numbers:
            raise InputError(
                f"no frame to compare: output frames {compress_ranges(list(oi.frame_numbers))}, "
                f"source frames {compress_ranges(list(si.frame_numbers))}"
                + (f", requested {frames}" if frames else ""),
                fix="check --frames, and --first-frame for movies (plate number of the first frame)")
        place = _placement_for(setup, si, (oi.width, oi.height))
        out_box, scaled_box = place.boxes()
        k = (place.rotate // 90) % 4
        sw, sh = si.display_size
        fx, fy = place.scale_w / sw, place.scale_h / sh
        # The source pixels under the visible picture (for colour drift at
        # source resolution); rounding moves the box by under a source pixel.
        bx, by = round(scaled_box[0] / fx), round(scaled_box[1] / fy)
        src_box = (bx, by, max(1, min(sw - bx, round(scaled_box[2] / fx))),
                   max(1, min(sh - by, round(scaled_box[3] / fy))))
        # Colour drift is a low-frequency matter: both sides are shrunk to
        # 1/DRIFT_SCALE of the source (area), so added or lost detail and
        # sub-pixel misregistration do not read as colour change.
        drift_size = drift_grid(src_box[2], src_box[3])
        cs = _colour_space(si)
        # OCIO renders: compare what a viewer (and the model) sees, the same
        # display transform on both sides, not a linear/log plate as video.
        disp_src, disp_out, cs_note = _ocio_display(setup.plan if setup.manifest else None)
        if disp_src is not None:
            cs = {"transfer": "srgb", "primaries": "bt709"}
        res = Measurements(numbers=numbers, source_numbers=tuple(si.frame_numbers), formula=formula, flow=flow,
                           colour_space={**cs, **cs_note},
                           sizes={"output": [oi.width, oi.height], "source": [si.width, si.height],
                                  "picture": [out_box[2], out_box[3]], "placement": place.__dict__})
        pos = {n: i for i, n in enumerate(si.frame_numbers)}
        # The reference of detail gain goes through the render's own format
        # (codec, clipping, 10-bit planes): see qc/delivery.py for why.
        chain = delivery.for_output(setup.output, oi, setup.plan if setup.manifest else None)
        res.reference = f"lanczos through {chain.label}"
        hf_out: dict[int, float] = {}
        hf_ref: dict[int, float] = {}

        def delivered(items):
            for n, full in items:
                hf_ref[n] = m.hf_energy(_crop(full, out_box))

        prev = None
        for done, (of, sf) in enumerate(zip(out_r.read(numbers), src_r.read(numbers)), 1):
            src = np.ascontiguousarray(np.rot90(sf.rgb, k)) if k else sf.rgb
            pic = _crop(of.rgb, out_box)
            ref = _crop(m.lanczos(src, (place.scale_w, place.scale_h)), scaled_box)
            small_out, small_src = m.shrink(pic, drift_size), m.shrink(_crop(src, src_box), drift_size)
            if disp_src is not None:  # shrunk in the plate's own space (a linear average), then displayed
                small_out, small_src = disp_out(small_out), disp_src(small_src)
            dmean, dp95 = m.colour_drift(small_out, small_src, formula=formula, **cs)
            res.drift_mean.append(dmean)
            res.drift_p95.append(dp95)
            hf_out[sf.number] = m.hf_energy(pic)
            delivered(chain.push(sf.number, _canvas(ref, out_box, (oi.width, oi.height))))
            if prev is not None:
                if pos[sf.number] == pos[prev[0]] + 1:
                    e_out, e_src = _transition(prev, src, pic, ref, place, scaled_box, flow)
                else:
                    e_out = e_src = float("nan")
                res.warp_out.append(e_out)
                res.warp_src.append(e_src)
                res.flicker.append(float("nan") if math.isnan(e_out) else m.added_error(e_out, e_src))
            prev = (sf.number, src, pic, ref)
            if on_frame:
                on_frame(sf.number, done, len(numbers))
        delivered(chain.flush())
        chain.close()
        res.detail_gain = [m.energy_ratio(hf_out[n], hf_ref[n]) for n in numbers if n in hf_out]
        if len(res.drift_mean) != len(numbers):
            raise InputError(f"{setup.output} or {setup.source} ended early "
                             f"({len(res.drift_mean)} of {len(numbers)} frames decoded)",
                             fix="check both with `cinescale probe`; re-render or re-export the damaged one")
    return res


def _transition(prev, src, pic, ref, place: Placement, scaled_box, flow: str) -> tuple[float, float]:
    """Warping errors of output and of upscaled source between two frames."""
    _, src0, pic0, ref0 = prev
    fwd = m.source_flow(src0, src, flow)
    bwd = m.source_flow(src, src0, flow)
    mask = m.consistency_mask(fwd, bwd)
    size = (place.scale_w, place.scale_h)
    f_up = _crop(m.resize_flow(fwd, size), scaled_box)
    mask_up = _crop(m.resize_mask(mask, size), scaled_box)
    e_out, e_src = m.warping_errors([(pic0, pic), (ref0, ref)], f_up, mask_up)
    return e_out, e_src


def chunk_of(setup: Setup, source_numbers: tuple[int, ...]):
    """``number -> chunk key`` on the render's global chunk grid
    (``orchestrator.windows.chunks``: position in the source // chunk size)."""
    pos = {n: i for i, n in enumerate(source_numbers)}
    size = setup.chunk
    return lambda n: pos[n] // size if size else 0


def load_report(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the QC report {path}: {exc}", fix="run `cinescale qc` first") from exc
