"""``plan.build``: the one place that validates; returns a frozen Plan.

Everything a render needs is decided here, before any model or media work:
preset + ``--set`` overrides + CLI options + the probed source + the
registered plugins. Errors name the preset file, the key, the value and what
is allowed. After ``build`` the runtime trusts the plan.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import cinescale_post.pipeline.presets as presets_mod
from cinescale_post.contracts.errors import InputError, OutputError, PlanError, UnknownNameError, WeightsError
from cinescale_post.pipeline.geometry import SQUEEZES, Geometry, fit_geometry  # noqa: F401 - part of the plan API
from cinescale_post.contracts.media import Colour, SourceInfo
from cinescale_post.media.sequence import compress_ranges, parse_pattern

SCHEMA = 1
FITS = ("pad", "crop", "stretch")
BLENDS = ("linear", "hann")
DTYPES = ("float32", "float16", "bfloat16")

# key -> (type, default); tables are nested dicts. ``None`` type: free-form.
_SCHEMA: dict[str, Any] = {
    "schema": (int, SCHEMA),
    "description": (str, ""),
    "backend": (str, "draft"),
    "model": (str, ""),
    "device": (str, "auto"),
    "dtype": (str, "float32"),
    "seed": (int, 0),
    "prompt": (str, ""),
    "negative_prompt": (str, ""),
    "output": {
        "codec": (str, "prores_hq"),
        "width": (int, 3840),
        "height": (int, 2160),
        "fit": (str, "pad"),
        "audio": (object, True),  # true/"copy", "pcm", false/"none" (media.audio)
        "chunk": (int, 48),
        "options": (dict, {}),
        # issue 11: non-square pixels, alpha, SD -> HD colour (geometry, media.alpha, media.output_colour)
        "squeeze": (str, "desqueeze"),
        "alpha": (str, "auto"),
        "matrix": (str, "auto"),
        "primaries": (str, "source"),
    },
    "input": {
        "pixel_aspect": (object, "auto"),  # "auto" (the file's), a number, or "16:15"
        "alpha": (str, "auto"),
        "on_bad_frame": (str, "error"),  # movies: error | hold | black (media.movie_reader)
        "missing": (str, "error"),  # sequences: error | black | hold | checkerboard
    },
    "window": {
        "size": (int, 1),
        "overlap": (int, 0),
        "blend": (str, "linear"),
    },
    "backend_options": (dict, {}),
    "stages": (list, []),
    "colour": (dict, {"mode": "video"}),
}


@dataclass(frozen=True)
class OutputPlan:
    path: str  # movie file, or printf pattern for sequences
    kind: str  # "movie" | "sequence"
    codec: str
    writer: str
    options: Mapping[str, Any]
    width: int
    height: int
    fit: str
    audio: bool
    chunk: int  # frames per chunk file for movies (0: one chunk)
    colour: Colour
    geometry: Geometry | None
    audio_mode: str = "copy"  # media.audio.AUDIO_MODES; "none" when audio is False
    #: "" or the association written ("premultiplied" | "straight"), media.alpha
    alpha: str = ""
    #: how the source's alpha is read ("" when there is none or it is ignored)
    source_alpha: str = ""


@dataclass(frozen=True)
class WindowPlan:
    size: int
    overlap: int
    blend: str


@dataclass(frozen=True)
class Plan:
    preset: str
    preset_origin: str
    mode: str  # "render" | "generate"
    input: str | None
    source: SourceInfo | None
    output: OutputPlan
    backend: str
    backend_options: Mapping[str, Any]
    stages: tuple[Mapping[str, Any], ...]
    model: str | None
    device: str
    dtype: str
    seed: int
    frames: tuple[int, ...]
    handles: int
    window: WindowPlan
    prompt: str
    negative_prompt: str
    description: str = ""
    colour: Mapping[str, Any] = field(default_factory=lambda: {"mode": "video"})
    memory: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = field(default=(), compare=False)
    #: what readers do with bad / missing frames (``contracts.media.ReadPolicy`` fields).
    reading: Mapping[str, str] = field(default_factory=lambda: {"on_bad_frame": "error", "missing": "error"})

    @property
    def read_policy(self):
        from cinescale_post.contracts.media import ReadPolicy

        return ReadPolicy(**dict(self.reading))

    def to_dict(self) -> dict:
        d = {
            "schema": SCHEMA,
            "preset": self.preset,
            "preset_origin": self.preset_origin,
            "mode": self.mode,
            "input": self.input,
            "source": self.source.to_dict() if self.source else None,
            "output": {**asdict(self.output), "colour": self.output.colour.to_dict(),
                       "options": dict(self.output.options)},
            "backend": self.backend,
            "backend_options": dict(self.backend_options),
            "stages": [dict(s) for s in self.stages],
            "model": self.model,
            "device": self.device,
            "dtype": self.dtype,
            "seed": self.seed,
            "frames": compress_ranges(list(self.frames)),
            "frame_count": len(self.frames),
            "handles": self.handles,
            "window": asdict(self.window),
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "description": self.description,
            "colour": dict(self.colour),
            "reading": dict(self.reading),
            "warnings": list(self.warnings),
        }
        if self.memory:
            d["memory_estimate"] = dict(self.memory)
        return json.loads(json.dumps(d, default=str))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def digest(self) -> str:
        """Hash of everything that changes pixels (not the frame selection):
        two runs with the same digest may share one output."""
        d = self.to_dict()
        for k in ("frames", "frame_count", "warnings", "preset_origin", "description", "input"):
            d.pop(k, None)
        # Of the memory plan only the VAE tile changes pixels (tiled decode);
        # free-memory numbers and offload do not. A smaller window is in "window".
        mem = d.pop("memory_estimate", None) or {}
        d["vae_tile"] = (mem.get("choice") or {}).get("vae_tile")
        d["output"].pop("path", None)  # the same render may be moved or mounted elsewhere
        if d["source"]:
            d["source"] = {k: v for k, v in d["source"].items() if k not in ("path",)}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------ building


def parse_override(item: str) -> tuple[str, Any]:
    """``"output.width=4096"`` -> ("output.width", 4096). Values are TOML
    (numbers, booleans, quoted strings, arrays); bare words are strings."""
    if "=" not in item:
        raise PlanError(f"--set {item!r}: expected KEY=VALUE", fix="e.g. --set output.width=4096")
    key, raw = item.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def _apply_override(data: dict, key: str, value: Any, origin: str) -> None:
    parts = key.split(".")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            idx = _index(part, node, key)
            node = node[idx]
            continue
        if part not in node:
            node[part] = [] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[_index(last, node, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise PlanError(f"--set {key}: {'.'.join(parts[:-1])} is not a table in {origin}")


def _index(part: str, node: list, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise PlanError(f"--set {key}: {part!r} is not a stage index (0..{len(node) - 1})",
                        fix="stages are numbered from 0 in the order of the preset")
    return int(part)


def _check(data: dict, schema: dict, origin: str, prefix: str = "") -> dict:
    """Type-check ``data`` against ``schema`` and fill defaults."""
    out: dict = {}
    for key in data:
        if key not in schema:
            allowed = ", ".join(prefix + k for k in schema)
            raise PlanError(f"preset {origin}: unknown key {prefix + key!r}", fix=f"allowed keys: {allowed}")
    for key, spec in schema.items():
        name = prefix + key
        if isinstance(spec, dict):
            sub = data.get(key, {})
            if not isinstance(sub, dict):
                raise PlanError(f"preset {origin}: {name} must be a table, got {sub!r}")
            out[key] = _check(sub, spec, origin, name + ".")
            continue
        typ, default = spec
        if key not in data:
            out[key] = json.loads(json.dumps(default))
            continue
        value = data[key]
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise PlanError(f"preset {origin}: {name} = {value!r} must be {_typename(typ)}",
                            fix=f"write e.g. {name} = {json.dumps(default) if typ is not str else repr(default or 'name')}")
        out[key] = value
    return out


def _typename(t) -> str:
    return {int: "an integer", str: "a string", bool: "true or false", dict: "a table",
            list: "an array of tables", float: "a number", object: "a value"}[t]


def _choice(origin: str, name: str, value, allowed) -> None:
    if value not in allowed:
        raise PlanError(f"preset {origin}: {name} = {value!r} is not allowed",
                        fix=f"use one of: {', '.join(map(str, allowed))}")


def build(preset: str | None, *, host, output: str, input: str | None = None,
          overrides: tuple[str, ...] = (), first_frame: int = 1001, frames: str | None = None,
          start: int | None = None, end: int | None = None, handles: int = 0,
          model: str | None = None, seed: int | None = None, device: str | None = None,
          prompt: str | None = None, mode: str = "render", size: tuple[int, int] | None = None,
          audio: str | None = None, on_bad_frame: str | None = None, missing: str | None = None) -> Plan:
    """Resolve and validate everything; raise a CinescaleError subclass.

    ``input`` is probed through the host's readers (``mode="render"``);
    ``generate`` has no input. ``overrides`` are ``--set KEY=VALUE`` strings.
    ``audio`` (``--audio``) replaces ``output.audio``: copy, pcm or none.
    ``on_bad_frame`` / ``missing`` (``--on-bad-frame``, ``--missing``) replace
    ``input.on_bad_frame`` / ``input.missing``. ``preset=None``: generate
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
        _apply_override(data, key, value, origin)
    cfg = _check(data, _SCHEMA, origin)
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
    _choice(origin, "dtype", cfg["dtype"], DTYPES)
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
    _choice(origin, "output.fit", o["fit"], FITS)
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
    out_path, kind = _resolve_output(output, writer, o["codec"], origin, still_ok=mode == "generate")
    if ocio.output_note(colour_mgmt, kind):
        warnings.append(ocio.output_note(colour_mgmt, kind))

    # -- window
    w = cfg["window"]
    _choice(origin, "window.blend", w["blend"], BLENDS)
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
        _choice(origin, f"input.{key}", reading[key], allowed)
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
        source = _input_overrides(source, cfg["input"], origin)
        warnings += list(source.notes)
        selected, notes = select_frames(source, frames=frames, start=start, end=end,
                                        fill_missing=reading["missing"] != "error")
        warnings += notes
        _choice(origin, "output.squeeze", o["squeeze"], SQUEEZES)
        geometry, note = fit_geometry(source, o["width"], o["height"], o["fit"], o["squeeze"])
        if note:
            warnings.append(note)
        if source.colour.assumed:
            warnings.append(f"{input}: no colour matrix tag; decoded as "
                            f"{'BT.709' if source.colour.matrix == 1 else 'BT.601'}")
        colour, alpha_read, alpha_write = _output_colour_and_alpha(source, o, cfg["input"]["alpha"], origin,
                                                                   warnings)
    elif frames or start is not None or end is not None:
        raise PlanError("--frames/--start/--end apply to render, not generate")
    if gop_note and len(selected) > asked_chunk:
        warnings.append(gop_note)
    if o["audio"] != "none" and source is not None and source.audio and kind == "sequence":
        warnings.append("audio is not written to image sequences; it stays in the source")
    if o["audio"] != "none" and source is not None and source.audio and kind == "movie":
        warnings += _audio_warnings(source, out_path, o["audio"])

    # -- model and device
    model_path = _resolve_model(model or cfg["model"] or None, host, backend)
    dev = cfg["device"]
    if dev == "auto":
        dev = _auto_device(backend)
    stages, boptions = backend.validate(stages=tuple(cfg["stages"]), options=dict(cfg["backend_options"]),
                                        size=(o["width"], o["height"]), source=source)
    if mode == "generate" and kind == "still":
        _check_single_image(output, boptions, origin)
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
                window=WindowPlan(w["size"], w["overlap"], w["blend"]), prompt=cfg["prompt"],
                negative_prompt=cfg["negative_prompt"], description=cfg["description"],
                colour=colour_mgmt, warnings=tuple(warnings), reading=dict(reading))
    return _snap_chunk(_plan_memory(plan, backend))


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
            window = WindowPlan(n, min(window.overlap, n - 1), window.blend)
            notes.append(f"memory: window reduced from {plan.window.size} to {n} frames to fit "
                         f"{mem.get('usable_gib')} GiB usable (peak {mem.get('peak_gib')} GiB)")
        if mem.get("fits") is False:
            notes.append("memory: " + (mem.get("reasoning") or ["nothing fits"])[-1]
                         + "; the render will still try, backing off on out-of-memory")
    return dataclasses.replace(plan, memory=mem, window=window, warnings=tuple(notes))


def _audio_warnings(source: SourceInfo, out_path: str, mode: str) -> list[str]:
    """Say which source audio streams the master cannot hold by packet copy
    (they become PCM); raises PlanError where no PCM fits either (MXF rates)."""
    from cinescale_post.media.audio import plan_audio, route_warning

    container = {".mov": "mov", ".mp4": "mp4", ".m4v": "mp4", ".mxf": "mxf"}.get(Path(out_path).suffix.lower())
    if container is None or source.kind != "movie":
        return []
    return [f"{source.path}: {route_warning(r)}" for r in plan_audio(source.path, container, mode)
            if r.action == "pcm"]


def _input_overrides(source: SourceInfo, cfg: Mapping[str, Any], origin: str) -> SourceInfo:
    """``[input] pixel_aspect`` replaces the file's pixel aspect (plates whose
    files do not say they are anamorphic); ``[input] alpha`` says how their
    alpha is associated, or ignores it."""
    import dataclasses
    from fractions import Fraction

    import cinescale_post.media.alpha as alpha_mod

    _choice(origin, "input.alpha", cfg["alpha"], alpha_mod.INPUT_MODES)
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


def _output_colour_and_alpha(source: SourceInfo, o: Mapping[str, Any], input_alpha: str, origin: str,
                             warnings: list[str]) -> tuple[Colour, str, str]:
    """Output colour tags (SD BT.601 -> BT.709 for HD/UHD, ``media.output_colour``)
    and the alpha decision (``media.alpha.resolve``); notes go to ``warnings``."""
    import cinescale_post.media.alpha as alpha_mod
    import cinescale_post.media.output_colour as output_colour

    _choice(origin, "output.matrix", o["matrix"], output_colour.MATRIX_MODES)
    _choice(origin, "output.primaries", o["primaries"], output_colour.PRIMARIES_MODES)
    _choice(origin, "output.alpha", o["alpha"], alpha_mod.OUTPUT_MODES)
    colour, notes = output_colour.output_colour(source.colour, height=o["height"], matrix=o["matrix"],
                                                primaries=o["primaries"])
    warnings += notes
    try:
        read, write, note = alpha_mod.resolve(source.alpha, input_alpha, o["codec"], o["alpha"])
    except ValueError as exc:
        raise PlanError(f"preset {origin}: output.alpha = {o['alpha']!r}: {exc}",
                        fix='use output.alpha = "auto" (premultiplied) or "drop"') from exc
    if note:
        warnings.append(f"{source.path}: {note}")
    return colour, read, write


def _check_single_image(output: str, boptions: dict, origin: str) -> None:
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


def _resolve_output(output: str, writer, codec: str, origin: str, still_ok: bool = False) -> tuple[str, str]:
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


__all__ = ["Plan", "OutputPlan", "WindowPlan", "Geometry", "build", "select_frames", "fit_geometry",
           "parse_override", "UnknownNameError"]
