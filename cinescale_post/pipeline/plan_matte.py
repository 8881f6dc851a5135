"""The plan's matte (``--matte``, ``[matte]``; ``media.matte``): checked once,
here, before anything renders."""

from __future__ import annotations

import os

from cinescale_post.contracts.errors import InputError, PlanError
from cinescale_post.media.matte import CHANNELS, MODES, PLATE_ALPHA
from cinescale_post.media.sequence import compress_ranges
from cinescale_post.pipeline.preset_schema import choice


def matte_plan(cfg: dict, *, flag: str | None, source, selected, origin: str, host, reading: dict,
               backend, warnings: list) -> dict:
    """``{"source", "kind", "channel", "mode", "missing"}``, or ``{}`` without a
    matte. ``flag``: ``--matte`` (replaces ``matte.source``); ``source``: the
    probed plate; ``selected``: the plate frames to render."""
    import cinescale_post.media.probe as probe_mod
    from cinescale_post.contracts.media import ReadPolicy

    given = flag or cfg["source"]
    if not given:
        return {}
    channel, mode = cfg["channel"], cfg["mode"]
    choice(origin, "matte.channel", channel, CHANNELS)
    choice(origin, "matte.mode", mode, MODES)
    if source is None:
        raise PlanError("--matte applies to render (a plate to change), not generate")
    missing: list[int] = []
    if given == PLATE_ALPHA:
        if not source.alpha:
            raise InputError(f"--matte alpha: {source.path} has no alpha channel",
                             fix="give the matte as a file: --matte roto.####.exr (or a movie)")
        kind, channel = source.kind, "A"
    else:
        path = os.path.abspath(given) if "://" not in given else given
        info = probe_mod.probe(path, first_frame=source.frame_numbers[0], host=host, policy=ReadPolicy(**reading))
        kind = info.kind
        if channel == "auto":
            channel = "A" if info.alpha else "luma"
        if channel == "A" and not info.alpha:
            raise PlanError(f"matte {path}: matte.channel = A but the file has no alpha channel",
                            fix="--set matte.channel=luma (or R), or export the matte with alpha")
        if kind != "image":
            have = set(info.frame_numbers) - set(info.missing)
            missing = sorted(set(selected) - have)
        if missing and (kind == "movie" or reading["missing"] == "error"):
            raise InputError(f"matte {path}: no matte for plate frames {compress_ranges(missing)}",
                             fix="render the matte for every frame, or --missing black (the draft there) or "
                                 "--missing hold (the matte before)" if kind == "sequence" else
                                 "give a matte movie as long as the plate (frame i of it is plate frame i)")
        if missing:
            warnings.append(f"matte {path}: frames {compress_ranges(missing)} are missing; "
                            f"--missing {reading['missing']}")
        given = path
    if mode in ("both", "detail") and not backend.takes_mattes:
        warnings.append(f"matte.mode = {mode}: backend {backend.id!r} has no detail mask; the matte "
                        "only holds the plate out" + (" (set matte.mode = holdout to say so)" if mode == "both"
                                                      else ""))
    return {"source": given, "kind": kind, "channel": channel, "mode": mode, "missing": missing}


__all__ = ["matte_plan"]
