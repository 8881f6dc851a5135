"""``plan.build``: the one place that validates; returns a frozen Plan.

Everything a render needs is decided here, before any model or media work:
preset + ``--set`` overrides + CLI options + the probed source + the
registered plugins. Errors name the preset file, the key, the value and what
is allowed. After ``build`` the runtime trusts the plan.
"""


from __future__ import annotations

import json
import os
from pathlib import Path

import cinescale_post.pipeline.presets as presets_mod
from cinescale_post.contracts.errors import PlanError, UnknownNameError, WeightsError
from cinescale_post.contracts.media import Colour
from cinescale_post.pipeline.geometry import SQUEEZES, Geometry, fit_geometry
from cinescale_post.pipeline.plan_media import (audio_warnings, check_single_image, input_overrides,
                                                output_colour_and_alpha, resolve_output, select_frames)
from cinescale_post.pipeline.plan_types import BLENDS, DTYPES, FITS, SCHEMA, OutputPlan, Plan, WindowPlan
from cinescale_post.pipeline.preset_schema import PRESET_SCHEMA, apply_override, check_preset, choice, parse_override


def build(preset: str | None, *, host, output: str, input: str | None = None,
          overrides: tuple[str, ...] = (), first_frame: int = 1001, frames: str | None = None,
          start: int | None = None, end: int | None = None, handles: int = 0,
          model: str | None = None, seed: int | None = None, device: str | None = None,
          prompt: str | None = None, mode: str = "render", size: tuple[int, int] | None = None,
          audio: str | None = None, on_bad_frame: str | None = None, missing: str | None = None,
          cuts: tuple[int, ...] = (), matte: str | None = None) -> Plan:
    """Resolve and validate everything; raise a CinescaleError subclass.

    ``input`` is probed through the host's readers (``mode="render"``);
    ``generate`` has no input. ``overrides`` are ``--set KEY=VALUE`` strings.
    ``audio`` (``--audio``) replaces ``output.audio``: copy, pcm or none.
    ``on_bad_frame`` / ``missing`` (``--on-bad-frame``, ``--missing``) replace
    ``input.on_bad_frame`` / ``input.missing``. ``cuts``: frame numbers where
    a new shot starts (conform's edit points), beside those ``window.cuts =
    "detect"`` finds. ``matte`` (``--matte``) replaces ``matte.source``. ``preset=None``: generate
    chooses one from the model folder (``presets.for_model``), render uses
    uhd-draft.
    """
    import cinescale_post.media.probe as probe_mod
    from cinescale_post.media.codec_choice import fit_codec, single_chunk

    chosen_note = None
    if preset is None:
        preset, chosen_note = presets_mod.for_model(model, size, host) if mode == "generate" else ("uhd-draft", None)
    src = presets_mod.load(preset, host)
    origin = src.origin
    data = json.loads(json.dumps(src.data))
    for item in overrides:
        key, value = parse_override(item)
        apply_override(data, key, value, origin)
    cfg = check_preset(data, PRESET_SCHEMA, origin)
    if cfg["schema"] != SCHEMA:
        raise PlanError(f"preset {origin}: schema = {cfg['schema']} is not supported",
                        fix=f"this version reads schema = {SCHEMA}")
    warnings: list[str] = [chosen_note] if chosen_note else []
    if seed is not None:
        cfg["seed"] = seed
    if device:
        cfg["device"] = device
    if prompt is not None:
        cfg["prompt"] = prompt
    if size:
        cfg["output"]["width"], cfg["output"]["height"] = size

    # -- backend, upscaler/fusion names in stages
    backend = host.backend(cfg["backend"])
    for i, stage in enumerate(cfg["stages"]):
        if not isinstance(stage, dict):
            raise PlanError(f"preset {origin}: stages.{i} must be a table")
        if stage.get("upscaler"):
            host.upscaler(stage["upscaler"])
        if stage.get("fusion"):
            host.fusion(stage["fusion"])
    if mode == "render" and "v2v" not in backend.capabilities:
        raise PlanError(f"backend {backend.id!r} cannot refine clips (capabilities: "
                        f"{', '.join(sorted(backend.capabilities)) or 'none'})",
                        fix="use `cinescale generate`, or a preset whose backend has v2v")
    if mode == "generate" and "t2i" not in backend.capabilities and "t2v" not in backend.capabilities:
        raise PlanError(f"backend {backend.id!r} cannot generate from a prompt",
                        fix="choose a preset whose backend has t2i/t2v (`cinescale plugins`)")
    choice(origin, "dtype", cfg["dtype"], DTYPES)
    import cinescale_post.media.ocio as ocio

    colour_mgmt = ocio.validate(cfg["colour"], origin)

    # -- output codec and path
    o = cfg["output"]
    # the output's suffix picks the codec where the preset's cannot write it (media.codec_choice)
    o["codec"], o["options"], note = fit_codec(output, o["codec"], o["options"], host,
                                               explicit_keys=[parse_override(i)[0] for i in overrides])
    if note:
        warnings.append(note)
    writer = host.writer(o["codec"])
    try:
        options = writer.validate_options(o["codec"], o["options"])
    except PlanError as exc:
        raise PlanError(f"preset {origin}: output.options: {exc}") from exc
    choice(origin, "output.fit", o["fit"], FITS)
    for k in ("width", "height"):
        if not 16 <= o[k] <= 16384:
            raise PlanError(f"preset {origin}: output.{k} = {o[k]} is out of range", fix="use 16..16384")
    from cinescale_post.media.audio import audio_mode

    try:
        o["audio"] = audio_mode(audio if audio is not None else o["audio"])
    except ValueError as exc:
        where = f"--audio {audio}" if audio is not None else f"preset {origin}: output.audio = {o['audio']!r}"
        raise PlanError(f"{where} is not an audio mode",
                        fix="use copy (packet copy, PCM where the container cannot hold the codec), "
                            "pcm, or none (true/false also work in presets)") from exc
    if o["chunk"] < 0:
        raise PlanError(f"preset {origin}: output.chunk = {o['chunk']} must be >= 0", fix="0 writes one chunk")
    asked_chunk = o["chunk"]
    o["chunk"], gop_note = single_chunk(o["codec"], o["chunk"])  # H.264/H.265: one chunk (said below)
    out_path, kind = resolve_output(output, writer, o["codec"], origin, still_ok=mode == "generate")
    if ocio.output_note(colour_mgmt, kind):
        warnings.append(ocio.output_note(colour_mgmt, kind))

    # -- window
    w = cfg["window"]
    choice(origin, "window.blend", w["blend"], BLENDS)
    if w["size"] < 1 or w["overlap"] < 0 or w["overlap"] >= w["size"]:
        raise PlanError(f"preset {origin}: window.size = {w['size']}, window.overlap = {w['overlap']}",
                        fix="size >= 1 and 0 <= overlap < size")
    if not backend.frame_rule.accepts(w["size"]):
        rule = backend.frame_rule
        raise PlanError(f"preset {origin}: window.size = {w['size']} does not fit backend {backend.id!r}",
                        fix=f"use {rule.multiple}*n+{rule.offset} frames, e.g. {rule.largest_at_most(w['size'])}")
    if handles < 0:
        raise PlanError(f"--handles {handles}: must be >= 0")

    # -- input
    from cinescale_post.contracts.media import MISSING_FRAMES, ON_BAD_FRAME, ReadPolicy

    reading = {"on_bad_frame": cfg["input"]["on_bad_frame"], "missing": cfg["input"]["missing"]}
    for key, flag, value, allowed in (("on_bad_frame", "--on-bad-frame", on_bad_frame, ON_BAD_FRAME),
                                      ("missing", "--missing", missing, MISSING_FRAMES)):
        if value is not None:
            if value not in allowed:
                raise PlanError(f"{flag} {value}: not allowed", fix=f"use one of: {', '.join(allowed)}")
            reading[key] = value
        choice(origin, f"input.{key}", reading[key], allowed)
    from cinescale_post.media.fields import DEINTERLACE, FIELD_RATES, IVTC

    for key, allowed in (("deinterlace", DEINTERLACE), ("field_rate", FIELD_RATES), ("ivtc", IVTC)):
        choice(origin, f"input.{key}", cfg["input"][key], allowed)
        reading[key] = cfg["input"][key]
    source = None
    selected: tuple[int, ...] = (1001,) if mode == "generate" else ()
    geometry = None
    colour = Colour()
    alpha_read = alpha_write = ""
    if mode == "render":
        if not input:
            raise PlanError("render needs an INPUT clip or sequence")
        if os.path.abspath(input) == os.path.abspath(output):
            raise PlanError(f"output {output} is the input", fix="write to another file or folder")
        source = probe_mod.probe(input, first_frame=first_frame, host=host, policy=ReadPolicy(**reading))
        source = input_overrides(source, cfg["input"], origin)
        warnings += list(source.notes)
        selected, notes = select_frames(source, frames=frames, start=start, end=end,
                                        fill_missing=reading["missing"] != "error")
        warnings += notes
        choice(origin, "output.squeeze", o["squeeze"], SQUEEZES)
        geometry, note = fit_geometry(source, o["width"], o["height"], o["fit"], o["squeeze"])
        if note:
            warnings.append(note)
        if source.colour.assumed:
            warnings.append(f"{input}: no colour matrix tag; decoded as "
                            f"{'BT.709' if source.colour.matrix == 1 else 'BT.601'}")
        colour, alpha_read, alpha_write = output_colour_and_alpha(source, o, cfg["input"]["alpha"], origin,
                                                                   warnings, kind)
    elif frames or start is not None or end is not None:
        raise PlanError("--frames/--start/--end apply to render, not generate")
    if gop_note and len(selected) > asked_chunk:
        warnings.append(gop_note)
    if o["audio"] != "none" and source is not None and source.audio and kind == "sequence":
        warnings.append("audio is not written to image sequences; it stays in the source")
    if o["audio"] != "none" and source is not None and source.audio and kind == "movie":
        warnings += audio_warnings(source, out_path, o["audio"])

    from cinescale_post.pipeline.plan_matte import matte_plan

    matte_table = matte_plan(cfg["matte"], flag=matte, source=source, selected=selected, origin=origin, host=host,
                             reading=reading, backend=backend, warnings=warnings)
    shot_cuts = tuple(sorted(set(cuts) | set(_given_cuts(w["cuts"], origin))))
    if w["cuts"] == "detect" and source is not None and source.kind == "movie" and selected:
        shot_cuts = tuple(sorted(set(shot_cuts) | set(_detect(source, selected, w["size"], host, reading))))
        warnings.append(f"window.cuts = detect: {len(shot_cuts)} cut(s) in the source"
                        + (f" at {', '.join(map(str, shot_cuts))}" if shot_cuts else ""))

    # -- model and device
    model_path = _resolve_model(model or cfg["model"] or None, host, backend)
    dev = cfg["device"]
    if dev == "auto":
        dev = _auto_device(backend)
    stages, boptions = backend.validate(stages=tuple(cfg["stages"]), options=dict(cfg["backend_options"]),
                                        size=(o["width"], o["height"]), source=source)
    if mode == "generate" and kind == "still":
        check_single_image(output, boptions, origin)
    if cfg["dtype"] not in backend.dtypes:  # the model's dtypes, checked once, here
        raise PlanError(f"preset {origin}: dtype = {cfg['dtype']!r} is not supported by backend {backend.id!r}",
                        fix=f"use one of: {', '.join(backend.dtypes)}")
    dtype = cfg["dtype"]
    if dtype == "float16" and str(dev).split(":")[0] == "cpu":
        # CPUs have no float16 kernels for most ops (diffusers warns, torch errors or
        # crawls): compute in float32 there and say so once, in the plan.
        dtype = "float32"
        warnings.append("dtype float16 does not run on the CPU: computing in float32 "
                        "(use --device cuda for float16)")
    out = OutputPlan(path=out_path, kind=kind, codec=o["codec"], writer=writer.name, options=options,
                     width=o["width"], height=o["height"], fit=o["fit"], audio=o["audio"] != "none",
                     chunk=o["chunk"], colour=colour, geometry=geometry, audio_mode=o["audio"],
                     alpha=alpha_write, source_alpha=alpha_read)
    plan = Plan(preset=src.name, preset_origin=origin, mode=mode, input=input, source=source, output=out,
                backend=backend.id, backend_options=boptions, stages=tuple(stages), model=model_path,
                device=dev, dtype=dtype, seed=cfg["seed"], frames=selected, handles=handles,
                window=WindowPlan(w["size"], w["overlap"], w["blend"], shot_cuts), prompt=cfg["prompt"],
                negative_prompt=cfg["negative_prompt"], description=cfg["description"],
                colour=colour_mgmt, warnings=tuple(warnings), reading=dict(reading), matte=matte_table)
    return _snap_chunk(_plan_memory(plan, backend))


def _given_cuts(value, origin: str) -> tuple[int, ...]:
    """``window.cuts``: "none", "detect" (found at plan time) or frame numbers."""
    if value in ("none", "detect"):
        return ()
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    raise PlanError(f"preset {origin}: window.cuts = {value!r} is not allowed",
                    fix='use "none", "detect" (scene cuts found with PySceneDetect) or frame numbers where a '
                        "new shot starts, e.g. --set 'window.cuts=[1011, 1040]'")


def _detect(source, selected, size: int, host, reading) -> tuple[int, ...]:
    """Scene cuts (PySceneDetect) in the selected frames and the window around them."""
    import cinescale_post.media.probe as probe_mod
    from cinescale_post.contracts.media import ReadPolicy
    from cinescale_post.media.scene_cuts import detect_cuts

    nums = source.frame_numbers
    lo = max(0, nums.index(min(selected)) - size)
    hi = min(len(nums), nums.index(max(selected)) + size + 1)
    with probe_mod.open_input(source.path, first_frame=nums[0], host=host, policy=ReadPolicy(**reading),
                              planned=source) as reader:
        return detect_cuts(reader, nums[lo:hi], source.rate)


def _snap_chunk(plan: Plan) -> Plan:
    """Chunks made of whole window strides, so each window is rendered by
    one chunk and only the overlap is handed on (``orchestrator.windows``);
    the change is said in a warning."""
    import dataclasses

    from cinescale_post.pipeline.windows import snap_chunk

    if plan.mode != "render" or plan.window.size <= 1:
        return plan
    chunk, note = snap_chunk(plan.output.chunk, plan.window.size, plan.window.overlap)
    if note is None:
        return plan
    return dataclasses.replace(plan, output=dataclasses.replace(plan.output, chunk=chunk),
                               warnings=plan.warnings + (note,))


def _plan_memory(plan: Plan, backend) -> Plan:
    """Estimate device memory before any model work (when the backend can)
    and adopt the planner's choice: a smaller temporal window goes into the
    plan here; VAE tiles and offload reach the backend through
    ``plan.memory["choice"]`` at load. ``CINESCALE_FREE_MEMORY`` pins the
    free memory planned for (a farm with mixed cards should pin the
    smallest, so every task plans the same)."""
    import dataclasses

    try:
        mem = dict(backend.estimate_memory(plan))
    except Exception as exc:  # noqa: BLE001 - an estimate must never block a render
        mem = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    if not mem:  # the backend does not estimate memory
        return plan
    notes = list(plan.warnings)
    window = plan.window
    # what the preset asked for, before this machine's choice (frozen_memory.py: later tasks reuse the choice)
    mem["requested"] = {"window": [window.size, window.overlap], "chunk": plan.output.chunk}
    if mem.get("available"):
        choice = mem.get("choice") or {}
        n = choice.get("window")
        if plan.mode == "render" and backend.temporal and n and n < window.size:
            window = WindowPlan(n, min(window.overlap, n - 1), window.blend, window.cuts)
            notes.append(f"memory: window reduced from {plan.window.size} to {n} frames to fit "
                         f"{mem.get('usable_gib')} GiB usable (peak {mem.get('peak_gib')} GiB)")
        if mem.get("fits") is False:
            notes.append("memory: " + (mem.get("reasoning") or ["nothing fits"])[-1]
                         + "; the render will still try, backing off on out-of-memory")
    return dataclasses.replace(plan, memory=mem, window=window, warnings=tuple(notes))


def _resolve_model(spec: str | None, host, backend) -> str | None:
    if not spec:
        return None
    if backend.family == "classical":
        raise PlanError(f"--model {spec}: backend {backend.id!r} uses no model",
                        fix="choose a diffusion preset (`cinescale presets list`)")
    p = Path(spec).expanduser()
    if p.exists():
        return str(p.resolve())
    resolved = host.resolve_weights(spec)
    if resolved and Path(resolved).exists():
        return str(Path(resolved).resolve())
    raise WeightsError(f"model weights {spec!r} not found",
                       fix="give a local diffusers folder or a .safetensors file "
                           "(this tool never downloads weights)")


def _auto_device(backend) -> str:
    if backend.family in ("classical", "test"):
        return "cpu"
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


# the plan API: build() and the names its callers use
__all__ = ["Plan", "OutputPlan", "WindowPlan", "Geometry", "build", "select_frames", "fit_geometry",
           "parse_override", "UnknownNameError"]
