"""The farm's final editorial step: ``python -m cinescale_post.editorial
[--assemble] [--frames SET] OUTPUT``. From a render's output (or its manifest)
it optionally assembles a movie's chunks, checks that every frame of the job
is there and writes the OpenTimelineIO hand-back
(:mod:`cinescale_post.orchestrator.handback` builds it)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cinescale_post.contracts.errors import CinescaleError, InputError, OutputError
from cinescale_post.orchestrator.handback import (build_timeline, frames_in_output, movie_media, otio_path,
                                                  sequence_media, shot_from_manifest, write_timeline)
from cinescale_post.orchestrator.manifest import Manifest, manifest_path, read_manifest_file
from cinescale_post.orchestrator.spelling import recorded, respell_error


def write_otio_for_output(target: str, *, frames: str | None = None, assemble: bool = False,
                          path: str | os.PathLike | None = None, host=None) -> str:
    """Farm final step: from a render's output path (or its manifest),
    optionally assemble a movie's chunks, check that ``frames`` (a frame set
    such as ``1001-1100``) are all there, and write the timeline."""
    output_path, manifest = _locate(target)
    data = manifest.read()
    if data is None:
        raise InputError(f"no manifest for {target} ({manifest.path})",
                         fix="pass the output path or <output>.manifest.json of a `cinescale render`")
    try:
        return _otio_for_output(data, output_path, manifest, frames=frames, assemble=assemble, path=path,
                                host=host)
    except CinescaleError as exc:  # name the frames as the render was asked for (tt/f.####.exr), not %04d
        raise respell_error(exc, recorded(data, output_path))


def _otio_for_output(data: dict, output_path: str, manifest: Manifest, *, frames, assemble, path, host) -> str:
    shot = shot_from_manifest(data, output_path)
    on_disk, assembled = frames_in_output(shot, manifest)
    if shot.kind == "movie" and assemble and not assembled:
        _assemble(data, manifest, output_path, host)
        on_disk, assembled = frames_in_output(shot, manifest)
    if shot.kind == "movie" and assembled:
        on_disk = set(shot.source_frames)
    if frames:
        import fileseq

        from cinescale_post.media.sequence import compress_ranges

        wanted = set(fileseq.FrameSet(frames)) & set(shot.source_frames)
        missing = sorted(wanted - on_disk)
        if missing:
            raise OutputError(f"{output_path}: frames {compress_ranges(missing)} are not rendered",
                              fix=f"render them (cinescale render ... --frames {compress_ranges(missing)}), "
                                  "then run this step again")
    if shot.kind == "sequence":
        media = sequence_media(shot, on_disk)
    elif assembled:
        media = movie_media(shot, [output_path])
    else:
        media = movie_media(shot, sorted({str(manifest.root / u.file) for u in manifest.verified_units().values()}))
    return write_timeline(build_timeline(shot, media), Path(path) if path else otio_path(output_path))


def _locate(target: str) -> tuple[str, Manifest]:
    """``target`` is a render output (movie path or frame pattern) or its
    manifest; return the output path as it lies next to the manifest (a
    render moved or mounted elsewhere still resolves) and its Manifest."""
    if target.endswith(".manifest.json"):
        output_path, _ = read_manifest_file(target)
        return output_path, Manifest(output_path)
    if not manifest_path(target).exists():
        raise InputError(f"no manifest next to {target} (looked for {manifest_path(target)})",
                         fix="pass the same -o value the render used, or its <output>.manifest.json")
    return target, Manifest(target)


def _assemble(data: dict, manifest: Manifest, output_path: str, host) -> str:
    """What ``cinescale assemble`` does, for the farm's final step."""
    from cinescale_post.pipeline.host import Host
    from cinescale_post.media.probe import probe
    from cinescale_post.orchestrator.assembly import assemble_movie

    plan = data["plan"]
    source = probe(plan["input"], first_frame=plan["source"]["first_frame"], host=host or Host())
    return assemble_movie(manifest, source, output_path, audio=plan["output"].get("audio", True))


# ------------------------------------------------------------------ command


def main(argv: list[str] | None = None) -> int:
    """``python -m cinescale_post.editorial [--assemble] [--frames SET] OUTPUT``.

    Exit codes follow the CLI contract: 0 done, 3 no manifest, 4 frames
    missing or output not writable.
    """
    ap = argparse.ArgumentParser(prog="python -m cinescale_post.editorial",
                                 description="Write the OpenTimelineIO hand-back of a render (farm final step).")
    ap.add_argument("target", help="the render's output (-o value) or its <output>.manifest.json")
    ap.add_argument("--assemble", action="store_true",
                    help="movies: join the chunk movies first (what `cinescale assemble` does)")
    ap.add_argument("--frames", help="frame set that must all be rendered, e.g. 1001-1100; exit 4 if not")
    ap.add_argument("-o", "--otio", help="where to write the timeline (default: <output base>.otio)")
    args = ap.parse_args(argv)
    try:
        print(write_otio_for_output(args.target, frames=args.frames, assemble=args.assemble, path=args.otio))
    except CinescaleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


__all__ = ["main", "write_otio_for_output"]
