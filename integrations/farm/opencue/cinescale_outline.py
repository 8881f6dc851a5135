#!/usr/bin/env python3
"""Submit a cinescale-post upscale to OpenCue with PyOutline.

Layers:

* ``render`` -- a Shell layer over the shot's frames, ``chunk`` frames per
  task, running
  ``cinescale render IN -o OUT --start #FRAME_START# --end #FRAME_END# --progress plain``
  (Cuebot substitutes the tokens at dispatch). Each task writes only its own
  frames and resumes when retried.
* ``render_tail`` -- only when the range is not a multiple of the chunk: the
  last, shorter chunk as its own layer. Cuebot computes ``#FRAME_END#`` of a
  chunk as start + chunk - 1 even past the layer's range (OpenCue#1129); the
  CLI clamps to the frames that exist, which is enough for a whole-plate
  job, but a job over a sub-range would render frames past its end. A tail
  layer whose chunk is exactly the remainder cannot overshoot.
* ``finalize`` -- one frame (``ShellCommand``), after every render frame
  (``depend_all``): assembles a movie's chunks, checks every frame of the job is
  there and writes the ``.otio`` hand-back:
  ``python -m cinescale_post.editorial --assemble --frames A-B OUT``.

Example::

    python cinescale_outline.py /shots/sh010/plate.mov -o /shots/sh010/up/sh010_up.####.exr \\
        --frames 1001-1100 --chunk 10 --show myshow --shot sh010 --service cinescale

``--print`` shows the layers without importing ``outline`` (no Cuebot needed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys

FRAME_START = "#FRAME_START#"
FRAME_END = "#FRAME_END#"


class SubmitError(Exception):
    """A submission that cannot work; the message says what to change."""


def parse_range(frames: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", frames)
    if not m:
        raise SubmitError(f"--frames {frames!r}: give one contiguous range such as 1001-1100 "
                          "(#FRAME_START#/#FRAME_END# cannot express steps or holes)")
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) is not None else a
    if b < a:
        raise SubmitError(f"--frames {frames!r}: the end is before the start")
    return a, b


def render_command(cinescale: list[str], input_path: str, output: str, *, preset: str | None = None, sets=(),
                   first_frame: int | None = None, extra=(), job_frames: str | None = None) -> list[str]:
    """The render layer's command (a list: PyOutline passes it as argv, so
    paths with spaces need no quoting). ``job_frames``: the whole job's
    range, so tasks split the temporal windows (each rendered once)."""
    cmd = [*cinescale, "render", input_path, "-o", output]
    if preset:
        cmd += ["--preset", preset]
    for s in sets:
        cmd += ["--set", s]
    if first_frame is not None:
        cmd += ["--first-frame", str(first_frame)]
    if job_frames:
        cmd += ["--job-frames", job_frames]
    return cmd + list(extra) + ["--start", FRAME_START, "--end", FRAME_END, "--progress", "plain"]


def finalize_command(python: str, output: str, frames: str) -> list[str]:
    return [python, "-m", "cinescale_post.editorial", "--assemble", "--frames", frames, output]


def layers(input_path: str, output: str, *, frames: str, chunk: int, cinescale: list[str], python: str,
           preset: str | None = None, sets=(), first_frame: int | None = None, extra=()) -> list[dict]:
    """Layer specs ``{"name", "kind", "range", "chunk", "command", "depends"}``
    -- pure data, so they can be checked and printed without OpenCue."""
    first, last = parse_range(frames)
    if chunk < 1:
        raise SubmitError(f"--chunk {chunk}: give 1 or more frames per task")
    for p, what in ((input_path, "input"), (output, "output")):
        if not os.path.isabs(p):
            raise SubmitError(f"the {what} {p!r} is relative; RQD hosts start in other folders: give an "
                              "absolute path on storage every host mounts")
    cmd = render_command(cinescale, input_path, output, preset=preset, sets=sets, first_frame=first_frame,
                         extra=extra, job_frames=f"{first}-{last}")
    count = last - first + 1
    full = count - count % chunk
    out = []
    if full:
        out.append({"name": "render", "kind": "Shell", "range": f"{first}-{first + full - 1}", "chunk": chunk,
                    "command": cmd, "depends": []})
    if count % chunk:
        out.append({"name": "render_tail", "kind": "Shell", "range": f"{first + full}-{last}",
                    "chunk": count % chunk, "command": cmd, "depends": []})
    out.append({"name": "finalize", "kind": "ShellCommand", "range": "1", "chunk": 1,
                "command": finalize_command(python, output, f"{first}-{last}"),
                "depends": [layer["name"] for layer in out]})
    return out


def conform_layers(report: dict, *, chunk: int, cinescale: list[str]) -> list[dict]:
    """A conform as layers, from ``cinescale conform CUT -o DIR --dry-run`` JSON:
    each shot's render layers (named after the shot) and one ``conform`` layer
    after all of them, which runs the conform again: nothing is left to render,
    each shot's movie is assembled and the cut relinked."""
    out = []
    for shot in report["shots"]:
        job = shot["render"]
        for spec in layers(job["input"], job["output"], frames=job["frames"], chunk=chunk, cinescale=cinescale,
                           python="", extra=job["args"]):
            if spec["name"] != "finalize":  # the conform layer assembles a shot's range
                out.append({**spec, "name": f"{shot['shot']}_{spec['name']}"})
    out.append({"name": "conform", "kind": "ShellCommand", "range": "1", "chunk": 1,
                "command": [*cinescale, *report["command"], "--progress", "plain"],
                "depends": [layer["name"] for layer in out]})
    return out


def build_outline(name: str, specs: list[dict], *, show: str, shot: str, user: str | None = None,
                  service: str | None = None, tags: list[str] | None = None, cores: float | None = None,
                  env: dict[str, str] | None = None):
    """A PyOutline ``Outline`` from :func:`layers` (imports ``outline`` here,
    so the module itself works without OpenCue installed)."""
    from outline import Outline
    from outline.modules.shell import Shell, ShellCommand

    ol = Outline(name, shot=shot, show=show, user=user or os.environ.get("USER", "cinescale"))
    made = {}
    for spec in specs:
        kwargs = {"command": spec["command"]}
        if spec["kind"] == "Shell":  # a ShellCommand is one frame whatever the job's range
            kwargs.update(range=spec["range"], chunk=spec["chunk"])
        if cores:
            kwargs["cores"] = cores
        if tags:
            kwargs["tags"] = tags
        layer = (Shell if spec["kind"] == "Shell" else ShellCommand)(spec["name"], **kwargs)
        if service:
            layer.set_service(service)
        for k, v in (env or {}).items():
            layer.set_env(k, v)
        for dep in spec["depends"]:
            layer.depend_all(made[dep])  # layer-on-layer: runs after every frame of dep
        ol.add_layer(layer)
        made[spec["name"]] = layer
    return ol


def launch(ol, *, pause: bool = False):
    from outline import cuerun

    # use_pycuerun=False: RQD runs the command list as is, with the frame
    # tokens substituted by Cuebot (no outline wrapper needed on the hosts)
    return cuerun.launch(ol, use_pycuerun=False, pause=pause)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?")
    ap.add_argument("-o", "--output")
    ap.add_argument("--frames", help="contiguous range, e.g. 1001-1100")
    ap.add_argument("--conform", metavar="DRYRUN.json",
                    help="launch a conform: the JSON of `cinescale conform CUT -o DIR --dry-run` (render layers "
                         "per shot, then the conform layer that relinks the cut)")
    ap.add_argument("--chunk", type=int, default=10)
    ap.add_argument("--preset")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--first-frame", type=int)
    ap.add_argument("--cinescale", default="cinescale", help="executable on the hosts (may carry arguments)")
    ap.add_argument("--python", default="python3", help="the Python with cinescale-post on the hosts")
    ap.add_argument("--name")
    ap.add_argument("--show", default=os.environ.get("CUE_JOB_SHOW", "testing"))
    ap.add_argument("--shot", default=os.environ.get("CUE_JOB_SHOT", "default"))
    ap.add_argument("--service", help="OpenCue service with the GPU requirements (e.g. cinescale)")
    ap.add_argument("--tag", dest="tags", action="append")
    ap.add_argument("--cores", type=float)
    ap.add_argument("--pause", action="store_true", help="launch paused")
    ap.add_argument("--print", dest="only_print", action="store_true", help="print the layers, do not launch")
    args = ap.parse_args(argv)
    if not args.conform and not (args.input and args.output and args.frames):
        ap.error("give INPUT, -o OUTPUT and --frames (or --conform DRYRUN.json)")
    try:
        if args.conform:
            with open(args.conform, encoding="utf-8") as fh:
                report = json.load(fh)
            specs = conform_layers(report, chunk=args.chunk, cinescale=shlex.split(args.cinescale))
            args.output = args.output or report["output"]
        else:
            specs = layers(args.input, args.output, frames=args.frames, chunk=args.chunk,
                           cinescale=shlex.split(args.cinescale), python=args.python, preset=args.preset,
                           sets=args.sets, first_frame=args.first_frame)
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.only_print:
        print(json.dumps(specs, indent=2))
        return 0
    name = args.name or f"cinescale_{os.path.basename(args.output).split('.')[0]}"
    jobs = launch(build_outline(name, specs, show=args.show, shot=args.shot, service=args.service,
                                tags=args.tags, cores=args.cores), pause=args.pause)
    print("launched", ", ".join(getattr(j, "name", lambda: str(j))() for j in jobs or []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
