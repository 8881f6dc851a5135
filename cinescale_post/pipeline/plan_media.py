"""The media halves of a plan: the source's frames, pixel aspect, alpha and
audio, and the output's path, kind and colour tags (``pipeline.plan.build``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from cinescale_post.contracts.errors import InputError, OutputError, PlanError
from cinescale_post.contracts.media import Colour, SourceInfo
from cinescale_post.media.sequence import compress_ranges, parse_pattern
from cinescale_post.pipeline.preset_schema import choice

def audio_warnings(source: SourceInfo, out_path: str, mode: str) -> list[str]:
    """Say which source audio streams the master cannot hold by packet copy
    (they become PCM); raises PlanError where no PCM fits either (MXF rates)."""
    from cinescale_post.media.audio import plan_audio, route_warning

    container = {".mov": "mov", ".mp4": "mp4", ".m4v": "mp4", ".mxf": "mxf"}.get(Path(out_path).suffix.lower())
    if container is None or source.kind != "movie":
        return []
    return [f"{source.path}: {route_warning(r)}" for r in plan_audio(source.path, container, mode)
            if r.action == "pcm"]


def input_overrides(source: SourceInfo, cfg: Mapping[str, Any], origin: str) -> SourceInfo:
    """``[input] pixel_aspect`` replaces the file's pixel aspect (plates whose
    files do not say they are anamorphic); ``[input] alpha`` says how their
    alpha is associated, or ignores it."""
    import dataclasses
    from fractions import Fraction

    import cinescale_post.media.alpha as alpha_mod

    choice(origin, "input.alpha", cfg["alpha"], alpha_mod.INPUT_MODES)
    par = cfg["pixel_aspect"]
    if par == "auto":
        return source
    try:
        if isinstance(par, bool):
            raise ValueError(par)
        value = Fraction(*map(int, par.split(":"))) if isinstance(par, str) and ":" in par else Fraction(par)
        value = value.limit_denominator(10000)
        if not Fraction(1, 10) <= value <= 10:
            raise ValueError(par)
    except (ValueError, TypeError, ZeroDivisionError):
        raise PlanError(f"preset {origin}: input.pixel_aspect = {par!r} is not a pixel aspect",
                        fix='use "auto", a number (2.0 for a 2x anamorphic squeeze, 1.8, 1.33) '
                            'or a ratio such as "16:15" (PAL 4:3), "64:45" (PAL 16:9), "10:11" (NTSC 4:3)') from None
    return dataclasses.replace(source, pixel_aspect=value)


def output_colour_and_alpha(source: SourceInfo, o: Mapping[str, Any], input_alpha: str, origin: str,
                             warnings: list[str], kind: str = "movie") -> tuple[Colour, str, str]:
    """Output colour tags (SD BT.601 -> BT.709 for HD/UHD, ``media.output_colour``)
    and the alpha decision (``media.alpha.resolve``); notes go to ``warnings``."""
    import cinescale_post.media.alpha as alpha_mod
    import cinescale_post.media.output_colour as output_colour

    choice(origin, "output.matrix", o["matrix"], output_colour.MATRIX_MODES)
    choice(origin, "output.primaries", o["primaries"], output_colour.PRIMARIES_MODES)
    choice(origin, "output.alpha", o["alpha"], alpha_mod.OUTPUT_MODES)
    colour, notes = output_colour.output_colour(source.colour, height=o["height"], matrix=o["matrix"],
                                                primaries=o["primaries"], video=kind == "movie")
    warnings += notes
    try:
        read, write, note = alpha_mod.resolve(source.alpha, input_alpha, o["codec"], o["alpha"])
    except ValueError as exc:
        raise PlanError(f"preset {origin}: output.alpha = {o['alpha']!r}: {exc}",
                        fix='use output.alpha = "auto" (premultiplied) or "drop"') from exc
    if note:
        warnings.append(f"{source.path}: {note}")
    return colour, read, write


def check_single_image(output: str, boptions: dict, origin: str) -> None:
    """A single still takes one image; a video model makes ``num_frames``
    (the driver's video-layout option, validated by ``backend.validate``).
    Refused here, before minutes of generating, not when writing."""
    n = boptions.get("num_frames", 1)
    if not isinstance(n, int) or n <= 1:
        return
    p = Path(output)
    raise PlanError(f"output {output!r} is a single still, but backend_options.num_frames = {n} (preset {origin}) "
                    f"generates {n} frames",
                    fix=f"write a frame pattern such as -o {p.with_name(p.stem + '.####' + p.suffix)} or a movie such "
                        f"as -o {p.with_suffix('.mov')}, or --set backend_options.num_frames=1 for one frame")


def resolve_output(output: str, writer, codec: str, origin: str, still_ok: bool = False) -> tuple[str, str]:
    from cinescale_post.media.codec_choice import codec_suffixes

    allowed = codec_suffixes(writer, codec)  # the codec's own (ProRes: .mov only), not the writer's union
    suffixes = ", ".join(allowed)
    if writer.per_frame and still_ok and parse_pattern(output) is None:
        if Path(output).suffix.lower() not in allowed:
            raise PlanError(f"output {output!r}: codec {codec!r} writes {suffixes}",
                            fix="change the file suffix or --set output.codec=...")
        path, kind = output, "still"
        folder = Path(output).parent
    elif writer.per_frame:
        pat = parse_pattern(output)
        if pat is None:
            raise PlanError(f"output {output!r}: codec {codec!r} writes one file per frame and needs a frame token",
                            fix=f"e.g. {Path(output).with_suffix('')}.####{writer.suffixes[0]}")
        if pat.suffix not in allowed:
            raise PlanError(f"output {output!r}: codec {codec!r} writes {suffixes}",
                            fix="change the file suffix or --set output.codec=...")
        path, kind = pat.printf, "sequence"
        folder = Path(pat.directory or ".")
    else:
        if parse_pattern(output) is not None:
            raise PlanError(f"output {output!r}: codec {codec!r} writes a movie, not a frame sequence",
                            fix="use a sequence preset (e.g. uhd-exr-draft) or a movie path such as out.mov")
        if Path(output).suffix.lower() not in allowed:
            raise PlanError(f"output {output!r}: codec {codec!r} writes {suffixes}",
                            fix=f"name the output e.g. {Path(output).with_suffix(allowed[0])}, "
                                "or choose another preset/codec")
        path, kind = output, "movie"
        folder = Path(output).parent
    probe_dir = folder.resolve()
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir() or not os.access(probe_dir, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} cannot be written ({probe_dir} is not writable)",
                          fix="choose a writable location or fix its permissions")
    return path, kind


def select_frames(source: SourceInfo, *, frames: str | None, start: int | None,
                  end: int | None, fill_missing: bool = False) -> tuple[tuple[int, ...], list[str]]:
    """Requested plate numbers, clamped to what exists (farm managers overshoot
    the last chunk). Raises for a sequence gap inside the range, unless
    ``fill_missing`` (``--missing`` black/hold/checkerboard) fills it."""
    import fileseq

    notes: list[str] = []
    have = source.frame_numbers
    if frames and (start is not None or end is not None):
        raise PlanError("give --frames or --start/--end, not both")
    if frames:
        try:
            wanted = list(fileseq.FrameSet(frames.strip().strip('"')))
        except fileseq.ParseException as exc:
            raise PlanError(f"--frames {frames!r}: not a frame range ({exc})",
                            fix="e.g. 1001-1100, 1001-1100x2, 1001,1005-1010") from exc
    elif start is not None or end is not None:
        lo = have[0] if start is None else start
        hi = have[-1] if end is None else end
        wanted = list(range(lo, hi + 1))
    else:
        wanted = list(range(have[0], have[-1] + 1)) if source.missing else list(have)
    lo, hi = have[0], have[-1]
    inside = sorted({f for f in wanted if lo <= f <= hi})
    if len(inside) < len(set(wanted)):
        notes.append(f"requested frames clamped to {lo}-{hi} (the frames that exist)")
    gaps = sorted(set(inside) & set(source.missing))
    if gaps and not fill_missing:
        present = [f for f in inside if f not in set(source.missing)]
        raise InputError(f"{source.path}: frames {compress_ranges(gaps)} are missing from the sequence",
                         fix=f"restore them, render only what exists (--frames {compress_ranges(present)}), "
                             "or fill them with --missing black|hold|checkerboard")
    if not inside:
        notes.append(f"no frames to render: {frames or f'{start}-{end}'} is outside {lo}-{hi}")
    return tuple(inside), notes
