"""``cinescale conform``: render what an editor's cut uses, and relink the cut.

1. The cut is read with its OTIO adapter (``editorial.cut``); every clip's
   media is found (``target_url``, or a reel/clip name in ``--search-path``);
   all missing media are listed in one error before anything renders.
2. The frames each clip uses (retimes, transitions, ``handles``) are merged
   per source and per-shot settings (``editorial.shots``); each merged range
   is one render, with the timeline's edit points inside it as window cuts.
3. Every shot is planned before the first renders (a bad preset or setting
   stops the conform with nothing rendered), then rendered through the usual
   orchestrator (``render_many``: in turn, or with ``--executor ray`` in
   parallel on one pool of workers, each loading the model once; resume: a
   second run renders only what is missing), movies assembled per shot with
   the source's timecode at the shot's first frame.
4. The cut is written again, in its own format and as ``.otio``: every clip
   keeps its record range and points at its render, whose available range
   is the shot's (source range + handles, in the source's timecode).
   ``<cut>.conform.json`` lists the shots, their clips, frames, cuts and renders.
"""

from __future__ import annotations

import json
import os
import time
from fractions import Fraction
from pathlib import Path

from cinescale_post.contracts.errors import InputError
from cinescale_post.editorial.cut import read_cut, write_cut
from cinescale_post.editorial.shots import Shot, clip_uses, media_finder, merge, missing_error, video_clips
from cinescale_post.media.timecode import timecode_frames
from cinescale_post.orchestrator.progress import NullSink, Sink
from cinescale_post.orchestrator.render_many import ShotProgress, run_many


def conform(cut, out_dir, *, preset: str, host, handles: int = 0, search_paths=(), rate: Fraction | None = None,
            overrides: tuple[str, ...] = (), model: str | None = None, seed: int | None = None,
            device: str | None = None, executor: str = "local", executor_options: dict | None = None,
            overwrite: bool = False, sink: Sink | None = None, dry_run: bool = False, card=None) -> dict:
    """Conform ``cut`` into ``out_dir``; returns a JSON-ready report (the
    shots; with ``dry_run`` their frames and estimates, nothing rendered)."""
    import cinescale_post.media.probe as probe_mod

    sink = sink or NullSink()
    timeline = read_cut(cut, rate)
    uses, missing = clip_uses(timeline, handles=handles, find_media=media_finder(cut, search_paths))
    if missing:
        raise missing_error(missing, search_paths)
    if not uses:
        raise InputError(f"{cut}: the cut has no video clips with media", fix="export the timeline with its clips")
    sources = {u.media: probe_mod.probe(u.media, host=host) for u in uses}
    spans = {m: _media_span(s) for m, s in sources.items()}
    outside = [u for u in uses if u.shown_last < spans[u.media][0] or u.shown_first > spans[u.media][1]]
    if outside:
        listed = "\n  ".join(f"clip {u.clip!r}: source frames {u.shown_first}-{u.shown_last}, the media has "
                             f"{spans[u.media][0]}-{spans[u.media][1]} ({u.media})" for u in outside)
        raise InputError(f"{len(outside)} clip(s) use frames their media does not have:\n  {listed}",
                         fix="relink them to the right media in the editor (source timecode must match)")
    shots = merge(uses, spans.__getitem__)
    out_dir = Path(out_dir)
    planned = [(shot, *_plan(shot, sources[shot.media], out_dir, preset=preset, host=host, overrides=overrides,
                             model=model, seed=seed, device=device)) for shot in shots]
    again = ["conform", str(cut), "-o", str(out_dir), "--preset", preset, "--handles", str(handles)]
    for flag, values in (("--search-path", search_paths), ("--set", overrides)):
        for v in values:
            again += [flag, str(v)]
    for flag, value in (("--rate", rate), ("--model", model), ("--seed", seed), ("--device", device)):
        if value is not None:
            again += [flag, str(value)]
    # "command": this conform again, the farm's last job (assembles and relinks what the shots' jobs rendered)
    report = {"cut": str(cut), "output": str(out_dir), "command": again,
              "shots": [_describe(*row, card) for row in planned]}
    if dry_run:
        return report
    out_dir.mkdir(parents=True, exist_ok=True)
    total = sum(len(p.frames) for _, p, _ in planned)
    progress = ShotProgress(sink, total, str(out_dir))
    t0 = time.monotonic()
    # with --executor ray the shots render in parallel on one pool of workers, one model load each
    sinks = [progress.shot(shot.name) for shot, _, _ in planned]
    summaries = run_many([(plan, s) for (_, plan, _), s in zip(planned, sinks)], host, executor=executor,
                         executor_options=executor_options, overwrite=overwrite)
    report["model_loads"] = sum(s.model_loads for s in summaries)  # local: one per shot; ray: one per worker
    renders = {shot.name: _assemble(plan, s.rendered) for (shot, plan, _), s in zip(planned, sinks)}
    relinked = relink(timeline, uses, shots, {s.name: (renders[s.name], p) for s, p, _ in planned})
    stem = Path(cut).stem
    written = [write_cut(relinked, out_dir / f"{stem}.conformed{Path(cut).suffix.lower()}")]
    if Path(cut).suffix.lower() != ".otio":
        written.append(write_cut(relinked, out_dir / f"{stem}.conformed.otio"))
    report["timelines"] = written
    for row in report["shots"]:
        row["rendered"] = renders[row["shot"]]
    _write_json(out_dir / f"{stem}.conform.json", report)  # the conform's manifest: its shots and their cuts
    sink.emit("finished", status="finished", done=total, total=total, seconds=round(time.monotonic() - t0, 2),
              outputs=[renders[s.name] for s in shots] + written)
    return report


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def _media_span(source) -> tuple[int, int]:
    """(first, last) media frames of ``source``: its timecode, else 0, on."""
    start = timecode_frames(source.timecode, source.rate) if source.timecode else 0
    return start, start + source.frame_count - 1


def _plate(shot_frame: int, source) -> int:
    return source.first_frame + shot_frame - _media_span(source)[0]


def _plan(shot: Shot, source, out_dir: Path, *, preset, host, overrides, model, seed, device):
    import cinescale_post.pipeline.plan as plan_mod
    import cinescale_post.pipeline.presets as presets_mod

    s = dict(shot.settings)
    chosen = s.get("preset", preset)
    sets = tuple(overrides) + tuple(s.get("set", ()))
    if s.get("negative_prompt"):
        sets += (f"negative_prompt={json.dumps(s['negative_prompt'])}",)
    data = presets_mod.load(chosen, host).data
    codec = dict(plan_mod.parse_override(o) for o in sets).get("output.codec") or \
        (data.get("output") or {}).get("codec", "prores_hq")
    from cinescale_post.media.codec_choice import codec_suffixes

    writer = host.writer(codec)
    suffix = codec_suffixes(writer, codec)[0]
    out = out_dir / shot.name / f"{shot.name}.####{suffix}" if writer.per_frame else out_dir / f"{shot.name}{suffix}"
    a, b = _plate(shot.first, source), _plate(shot.last, source)
    plan = plan_mod.build(chosen, host=host, input=shot.media, output=str(out), overrides=sets,
                          frames=f"{a}-{b}", model=model, seed=s.get("seed", seed), prompt=s.get("prompt"),
                          device=device, cuts=tuple(_plate(c, source) for c in shot.cuts))
    # the shot as one render job: "command" runs it whole; a farm recipe submits input, output,
    # frames and args (its tasks add --start/--end --job-frames); `conform` again then relinks
    argv = ["--preset", chosen, "--seed", str(plan.seed)]
    for item in sets:
        argv += ["--set", item]
    if plan.window.cuts:
        argv += ["--set", f"window.cuts={json.dumps(list(plan.window.cuts))}"]
    if plan.prompt:
        argv += ["--prompt", plan.prompt]
    for flag, value in (("--model", model), ("--device", device)):
        if value:
            argv += [flag, value]
    return plan, {"input": shot.media, "output": str(out), "frames": f"{a}-{b}", "args": argv,
                  "command": ["render", shot.media, "-o", str(out), "--frames", f"{a}-{b}", *argv]}


def _describe(shot: Shot, plan, job: dict, card) -> dict:
    from cinescale_post.simulate.report import estimate

    est = estimate(plan, card, None)
    return {"shot": shot.name, "render": job, "source": shot.media, "clips": list(shot.clips),
            "frames": f"{plan.frames[0]}-{plan.frames[-1]}", "frame_count": len(plan.frames),
            "source_range": [shot.first, shot.last], "cuts": list(plan.window.cuts), "preset": plan.preset,
            "output": plan.output.path,
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in shot.settings},
            "estimate": {k: est[k] for k in ("device", "seconds", "fits", "peak_gib", "reason") if k in est}}


def _assemble(plan, rendered: int) -> str:
    """The shot's movie from its chunks, when this run rendered frames of it
    or it is missing; a sequence is the frames themselves."""
    from cinescale_post.orchestrator.assembly import assemble_range
    from cinescale_post.orchestrator.manifest import Manifest

    if plan.output.kind == "movie" and (rendered or not os.path.exists(plan.output.path)):
        assemble_range(Manifest(plan.output.path), plan.source, plan.frames, plan.output.path)
    return plan.output.path


def relink(timeline, uses, shots, renders: dict):
    """A copy of ``timeline`` whose clips point at their shots' renders."""
    import copy

    import opentimelineio as otio

    new = copy.deepcopy(timeline)
    for clip, use in zip(video_clips(new), uses):
        mine = [s for s in shots if s.media == use.media and s.settings == use.settings]
        shot = min(mine, key=lambda s: 0 if s.first <= use.shown_first <= s.last
                   else min(abs(use.shown_first - s.first), abs(use.shown_first - s.last)))
        path, plan = renders[shot.name]
        rate = float(shot.rate)
        available = otio.opentime.TimeRange(otio.opentime.RationalTime(shot.first, rate),
                                            otio.opentime.RationalTime(shot.frames, rate))
        if plan.output.kind == "movie":
            ref = otio.schema.ExternalReference(target_url=Path(path).resolve().as_uri(), available_range=available)
        else:
            folder, name = os.path.split(path)
            prefix, _, rest = name.partition("%")
            ref = otio.schema.ImageSequenceReference(
                target_url_base=Path(folder).resolve().as_uri() + "/", name_prefix=prefix,
                name_suffix=rest.split("d", 1)[1], start_frame=plan.frames[0], frame_zero_padding=4, rate=rate,
                available_range=available)
        ref.name = shot.name
        clip.media_reference = ref
    return new


__all__ = ["conform", "relink"]
