#!/usr/bin/env python3
"""Submit a cinescale-post upscale to Thinkbox Deadline 10 as two jobs.

1. **render**: a CommandLine-plugin job over the shot's frames, ``ChunkSize``
   frames per task. Each task runs
   ``cinescale render IN -o OUT --start <STARTFRAME> --end <ENDFRAME> --progress plain``;
   it writes only its own frames (EXR files, or chunk movies for a movie
   output) and resumes when Deadline requeues it, so retries are safe. A
   non-zero exit fails the task (the exit code says why: 3 input, 4 output,
   5 GPU memory, 6 weights, 75 temporary, 143 SIGTERM -- see docs/progress.md).
2. **finalize**: one task, dependent on the render job: joins a movie's chunk
   movies (packet copy, audio and timecode from the source), checks that every
   frame of the job is there and writes the editorial hand-back ``.otio``:
   ``python -m cinescale_post.editorial --assemble --frames A-B OUT``.

Standard library only, so it runs in any Python that has ``deadlinecommand``
on PATH (or pass ``--deadlinecommand``). ``--write-only DIR`` writes the four
job files without submitting, to inspect them or submit by hand::

    deadlinecommand render.job_info.job render.plugin_info.job
    deadlinecommand finalize.job_info.job finalize.plugin_info.job   # add JobDependencies=<id>

Example::

    python submit_deadline.py /shots/sh010/plate.mov -o /shots/sh010/up/sh010_up.####.exr \\
        --frames 1001-1100 --chunk 10 --preset uhd-exr-draft --pool gpu --group cinescale
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys

QUOTE = "<QUOTE>"
FRAME_TOKENS = ("<STARTFRAME>", "<ENDFRAME>")


class SubmitError(Exception):
    """A submission that cannot work; the message says what to change."""


def parse_range(frames: str) -> tuple[int, int]:
    """``"1001-1100"`` -> (1001, 1100). Deadline gives each task only its
    first and last frame, so a job must be one contiguous range: a stepped or
    split list would make a task render the frames between its ends."""
    m = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", frames)
    if not m:
        raise SubmitError(f"--frames {frames!r}: Deadline tasks only get <STARTFRAME>/<ENDFRAME>, so give one "
                          "contiguous range such as 1001-1100 (submit one job per range otherwise)")
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) is not None else a
    if b < a:
        raise SubmitError(f"--frames {frames!r}: the end is before the start")
    return a, b


def _quoted(arg: str) -> str:
    """An argument for the ``Arguments=`` line: Deadline replaces <QUOTE> by a
    double quote after reading the file (a literal quote would end the value
    in some Deadline versions' parsers)."""
    if '"' in arg or "\n" in arg:
        raise SubmitError(f"argument {arg!r} contains a double quote or newline, which a Deadline "
                          "command line cannot carry; rename the file or folder")
    if arg and not re.search(r"[\s<>]", arg):
        return arg
    return f"{QUOTE}{arg}{QUOTE}"


def render_arguments(input_path: str, output: str, *, preset: str | None, sets=(), first_frame: int | None = None,
                     extra=(), job_frames: str | None = None) -> list[str]:
    """The ``cinescale`` arguments of a render task, with Deadline's frame
    tokens. ``job_frames`` (the whole job's range) lets tasks split the
    temporal windows between them: each window is rendered by one task and
    the frames two tasks share are handed on, never rendered twice."""
    args = ["render", input_path, "-o", output]
    if preset:
        args += ["--preset", preset]
    for s in sets:
        args += ["--set", s]
    if first_frame is not None:
        args += ["--first-frame", str(first_frame)]
    args += list(extra)
    if job_frames:
        args += ["--job-frames", job_frames]
    return args + ["--start", "<STARTFRAME>", "--end", "<ENDFRAME>", "--progress", "plain"]


def job_files(input_path: str, output: str, *, frames: str, chunk: int, cinescale: list[str], python: str,
              preset: str | None = None, sets=(), first_frame: int | None = None, extra=(), name: str | None = None,
              pool: str | None = None, group: str | None = None, priority: int | None = None,
              environment: dict[str, str] | None = None) -> dict[str, tuple[dict, dict]]:
    """``{"render": (job_info, plugin_info), "finalize": (...)}`` as ordered
    key/value dicts (the finalize job still needs ``JobDependencies``)."""
    first, last = parse_range(frames)
    if chunk < 1:
        raise SubmitError(f"--chunk {chunk}: give 1 or more frames per task")
    for p, what in ((input_path, "input"), (output, "output")):
        if not os.path.isabs(p):
            raise SubmitError(f"the {what} {p!r} is relative; render nodes start in other folders: "
                              "give an absolute path on storage every node mounts")
    name = name or os.path.basename(output).split(".")[0] or "cinescale"
    out_dir, out_name = os.path.split(output)
    common = {"BatchName": name}
    for key, value in (("Pool", pool), ("Group", group), ("Priority", priority)):
        if value is not None:
            common[key] = str(value)
    for i, (k, v) in enumerate(sorted((environment or {}).items())):
        common[f"EnvironmentKeyValue{i}"] = f"{k}={v}"
    if not cinescale:
        raise SubmitError("--cinescale is empty; give the cinescale executable")
    render_job = {"Plugin": "CommandLine", "Name": f"{name} render", **common,
                  "Frames": f"{first}-{last}", "ChunkSize": str(chunk),
                  # Monitor's "View Output" opens these (#### stays for Deadline's padding)
                  "OutputDirectory0": out_dir, "OutputFilename0": out_name}
    render_args = list(cinescale[1:]) + render_arguments(input_path, output, preset=preset, sets=sets,
                                                         first_frame=first_frame, extra=extra,
                                                         job_frames=f"{first}-{last}")
    render_plugin = {"Executable": cinescale[0],
                     "Arguments": " ".join(a if a in FRAME_TOKENS else _quoted(a) for a in render_args),
                     "Shell": "default", "ShellExecute": "False", "SingleFramesOnly": "False",
                     "StartupDirectory": ""}
    finalize_job = {"Plugin": "CommandLine", "Name": f"{name} finalize", **common, "Frames": "0",
                    "ChunkSize": "1", "OutputDirectory0": out_dir, "OutputFilename0": out_name}
    finalize_args = ["-m", "cinescale_post.editorial", "--assemble", "--frames", f"{first}-{last}", output]
    finalize_plugin = {"Executable": python, "Arguments": " ".join(map(_quoted, finalize_args)),
                       "Shell": "default", "ShellExecute": "False", "SingleFramesOnly": "False",
                       "StartupDirectory": ""}
    return {"render": (render_job, render_plugin), "finalize": (finalize_job, finalize_plugin)}


def conform_job_files(report: dict, *, chunk: int, cinescale: list[str], name: str | None = None,
                      pool: str | None = None, group: str | None = None, priority: int | None = None,
                      environment: dict[str, str] | None = None) -> dict[str, tuple[dict, dict]]:
    """A conform as Deadline jobs, from ``cinescale conform CUT -o DIR --dry-run``
    JSON: one render job per shot (``render-<shot>``, chunked as any render) and
    a ``conform`` job depending on all of them that runs the conform again,
    which renders nothing left, assembles each shot's movie and relinks the cut."""
    name = name or os.path.splitext(os.path.basename(report["cut"]))[0]
    files = {}
    for shot in report["shots"]:
        job = shot["render"]
        one = job_files(job["input"], job["output"], frames=job["frames"], chunk=chunk, cinescale=cinescale,
                        python="", extra=job["args"], name=f"{name} {shot['shot']}", pool=pool, group=group,
                        priority=priority, environment=environment)
        files[f"render-{shot['shot']}"] = one["render"]
    common = {k: v for k, v in next(iter(files.values()))[0].items()
              if k in ("Pool", "Group", "Priority") or k.startswith("EnvironmentKeyValue")} if files else {}
    conform_job = {"Plugin": "CommandLine", "Name": f"{name} conform", "BatchName": name, **common,
                   "Frames": "0", "ChunkSize": "1", "OutputDirectory0": report["output"]}
    args = list(cinescale[1:]) + list(report["command"]) + ["--progress", "plain"]
    conform_plugin = {"Executable": cinescale[0], "Arguments": " ".join(map(_quoted, args)), "Shell": "default",
                      "ShellExecute": "False", "SingleFramesOnly": "False", "StartupDirectory": ""}
    files["conform"] = (conform_job, conform_plugin)
    return files


def write_info(path: str, values: dict) -> str:
    # Deadline reads job files as key=value lines; UTF-8 works for 10.1+
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for k, v in values.items():
            fh.write(f"{k}={v}\n")
    return path


def read_info(path: str) -> dict:
    """The inverse of write_info (tests, and re-submitting edited files)."""
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if line and "=" in line and not line.startswith(";"):
                k, v = line.split("=", 1)
                out[k] = v
    return out


def write_job_files(folder: str, files: dict[str, tuple[dict, dict]]) -> dict[str, tuple[str, str]]:
    os.makedirs(folder, exist_ok=True)
    return {role: (write_info(os.path.join(folder, f"{role}.job_info.job"), job),
                   write_info(os.path.join(folder, f"{role}.plugin_info.job"), plugin))
            for role, (job, plugin) in files.items()}


def _submit(deadlinecommand: str, job_info: str, plugin_info: str) -> str:
    r = subprocess.run([deadlinecommand, job_info, plugin_info], capture_output=True, text=True)
    m = re.search(r"^JobID=(\S+)", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise SubmitError(f"deadlinecommand refused {job_info}:\n{r.stdout}{r.stderr}")
    return m.group(1)


def submit(files: dict[str, tuple[dict, dict]], folder: str, deadlinecommand: str = "deadlinecommand") -> dict:
    """Submit render, then finalize depending on it; return their job ids."""
    exe = shutil.which(deadlinecommand) or deadlinecommand
    paths = write_job_files(folder, {"render": files["render"]})
    render_id = _submit(exe, *paths["render"])
    fin_job, fin_plugin = files["finalize"]
    fin_job = {**fin_job, "JobDependencies": render_id}
    paths = write_job_files(folder, {"finalize": (fin_job, fin_plugin)})
    return {"render": render_id, "finalize": _submit(exe, *paths["finalize"])}


def submit_conform(files: dict[str, tuple[dict, dict]], folder: str, deadlinecommand: str = "deadlinecommand") -> dict:
    """Submit every shot's render job, then the conform job depending on them all."""
    exe = shutil.which(deadlinecommand) or deadlinecommand
    ids = {}
    for role in [r for r in files if r != "conform"]:
        ids[role] = _submit(exe, *write_job_files(folder, {role: files[role]})[role])
    job, plugin = files["conform"]
    paths = write_job_files(folder, {"conform": ({**job, "JobDependencies": ",".join(ids.values())}, plugin)})
    ids["conform"] = _submit(exe, *paths["conform"])
    return ids


def _written(folder: str, files: dict) -> int:
    for role, (job, plugin) in write_job_files(folder, files).items():
        print(f"{role}: {job} {plugin}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", help="movie file or frame pattern, absolute, readable by every node")
    ap.add_argument("-o", "--output", help="movie file or frame pattern, absolute")
    ap.add_argument("--frames", help="contiguous range, e.g. 1001-1100")
    ap.add_argument("--conform", metavar="DRYRUN.json",
                    help="submit a conform instead: the JSON of `cinescale conform CUT -o DIR --dry-run` (one "
                         "render job per shot, then the conform job that relinks the cut)")
    ap.add_argument("--chunk", type=int, default=10, help="frames per task (default 10)")
    ap.add_argument("--preset")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--first-frame", type=int)
    ap.add_argument("--cinescale", default="cinescale",
                    help="cinescale executable on the nodes; may carry arguments, e.g. '/opt/py/bin/python -m "
                         "cinescale_post'")
    ap.add_argument("--python", default="python3", help="the Python with cinescale-post on the nodes (finalize)")
    ap.add_argument("--name")
    ap.add_argument("--pool")
    ap.add_argument("--group")
    ap.add_argument("--priority", type=int)
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="environment for the tasks")
    ap.add_argument("--write-only", metavar="DIR", help="write the job files to DIR and do not submit")
    ap.add_argument("--deadlinecommand", default="deadlinecommand")
    args = ap.parse_args(argv)
    env = dict(e.split("=", 1) for e in args.env)
    if args.conform:
        import json
        import tempfile

        with open(args.conform, encoding="utf-8") as fh:
            report = json.load(fh)
        files = conform_job_files(report, chunk=args.chunk, cinescale=shlex.split(args.cinescale), name=args.name,
                                  pool=args.pool, group=args.group, priority=args.priority, environment=env)
        if args.write_only:
            return _written(args.write_only, files)
        ids = submit_conform(files, tempfile.mkdtemp(prefix="cinescale-deadline-"), args.deadlinecommand)
        print("jobs " + ", ".join(f"{k} {v}" for k, v in ids.items()))
        return 0
    if not (args.input and args.output and args.frames):
        ap.error("give INPUT, -o OUTPUT and --frames (or --conform DRYRUN.json)")
    try:
        files = job_files(args.input, args.output, frames=args.frames, chunk=args.chunk,
                          cinescale=shlex.split(args.cinescale), python=args.python, preset=args.preset,
                          sets=args.sets, first_frame=args.first_frame, name=args.name, pool=args.pool,
                          group=args.group, priority=args.priority, environment=env)
        if args.write_only:
            return _written(args.write_only, files)
        import tempfile

        ids = submit(files, tempfile.mkdtemp(prefix="cinescale-deadline-"), args.deadlinecommand)
        print(f"render job {ids['render']}, finalize job {ids['finalize']}")
        return 0
    except SubmitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
