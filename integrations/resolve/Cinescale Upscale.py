"""Cinescale Upscale -- DaVinci Resolve Workspace > Scripts entry.

Upscales the marked range (In/Out) of the current timeline with cinescale-post
and puts the result on the video track above the original, at the same
record frame, keeping source timecode:

1. renders the marked range to an intermediate QuickTime (ProRes 4444 XQ /
   4444 / 422 HQ, or DNxHR HQX/444 -- whatever this Resolve offers, queried at
   run time) with the documented Project render API: SetCurrentRenderFormat-
   AndCodec, SetCurrentRenderMode(1) (single clip), SetRenderSettings
   (MarkIn/MarkOut, TargetDir, CustomName), AddRenderJob, StartRendering,
   then polls IsRenderingInProgress / GetRenderJobStatus. The file carries
   the timeline timecode of the In point;
2. runs ``cinescale render INTERMEDIATE -o OUTPUT --progress json``; the
   output keeps the intermediate's QuickTime timecode (tmcd), which is what
   Resolve conforms and relinks against. What colour the intermediate holds
   comes from the project's colour management (``GetSetting``: output colour
   space, or the ACES output transform): display-referred goes in video
   mode, log/linear with ``--set colour.mode=ocio --set colour.input=...``;
   when Resolve does not say, a dialog (and the Console) says what is
   assumed (Rec.709) and that ``CINESCALE_RESOLVE_COLOUR`` sets it;
3. imports the result into a "cinescale" bin (MediaPool.ImportMedia) and
   places it with MediaPool.AppendToTimeline at the In point's record frame
   on the first free video track above the clips of the range (adding a
   track when needed), video only.

The project's render format, codec and mode are restored afterwards and the
temporary render job is removed from the queue.

"Upscale the current timeline" (``upscale_timeline``; the Scripts entry
"Cinescale Upscale Timeline") exports the whole timeline as OpenTimelineIO,
runs ``cinescale conform`` on it and imports the relinked timeline beside
the original.

Install: copy this file to Fusion/Scripts/Edit (Linux: ~/.local/share/
DaVinciResolve/Fusion/Scripts/Edit; macOS: ~/Library/Application Support/
Blackmagic Design/DaVinci Resolve/Fusion/Scripts/Edit; Windows:
%APPDATA%\\Blackmagic Design\\DaVinci Resolve\\Support\\Fusion\\Scripts\\Edit).
Settings (environment of Resolve): CINESCALE_CLI (the command; default
``cinescale`` on PATH), CINESCALE_RESOLVE_PRESET (default ``uhd-draft``),
CINESCALE_RESOLVE_DIR (intermediates and results; default: a "cinescale"
folder in the home folder). The preset must write a movie (ProRes/DNxHR):
Resolve conforms and relinks by QuickTime timecode. Python 3.7+.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time

DEFAULT_PRESET = "uhd-draft"
BIN_NAME = "cinescale"
# preferred intermediate codecs, by the description Resolve shows; the codec
# *name* to pass comes from GetRenderCodecs at run time (it differs between
# versions and platforms)
INTERMEDIATE_CODECS = (r"ProRes 4444 XQ", r"ProRes 4444(?! XQ)", r"ProRes 422 HQ", r"DNxHR 444", r"DNxHR HQX")


class CinescaleResolveError(Exception):
    """What went wrong and what to do; printed in the Console."""


def get_resolve():
    """The ``resolve`` object: the one Resolve injects into Workspace
    scripts, else the external scripting module."""
    main = sys.modules.get("__main__")
    app = getattr(main, "resolve", None) or globals().get("resolve")
    if app is not None:
        return app
    try:
        import DaVinciResolveScript as dvr  # noqa: N813
    except ImportError:
        raise CinescaleResolveError(
            "not running inside Resolve and DaVinciResolveScript is not importable: set RESOLVE_SCRIPT_API, "
            "RESOLVE_SCRIPT_LIB and PYTHONPATH ($RESOLVE_SCRIPT_API/Modules), with Preferences > System > "
            "General > External scripting using: Local") from None
    app = dvr.scriptapp("Resolve")
    if app is None:
        raise CinescaleResolveError("Resolve is not running, or external scripting is disabled in its preferences")
    return app


def cli_command():
    configured = os.environ.get("CINESCALE_CLI")
    if configured:
        return shlex.split(configured)
    found = shutil.which("cinescale")
    if found:
        return [found]
    raise CinescaleResolveError("the cinescale command was not found: install cinescale-post, or set CINESCALE_CLI "
                                "in the environment Resolve starts with")


def _safe(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "timeline"


def marked_range(timeline):
    """(first, last) record frames of the In/Out marks, inclusive.
    GetMarkInOut (Resolve 19.1+) gives offsets from the timeline's start;
    the render settings and AppendToTimeline take absolute record frames."""
    get = getattr(timeline, "GetMarkInOut", None)
    marks = get() if get else None
    video = (marks or {}).get("video") or {}
    if "in" not in video or "out" not in video:
        raise CinescaleResolveError("mark In and Out on the timeline (keys I and O) around the shot to upscale "
                                    "(needs Resolve 19.1 or later for GetMarkInOut)")
    start = int(timeline.GetStartFrame())
    first, last = start + int(video["in"]), start + int(video["out"])
    if last < first:
        raise CinescaleResolveError(f"the Out mark ({last}) is before the In mark ({first})")
    return first, last


def choose_intermediate(project):
    formats = project.GetRenderFormats() or {}
    if "mov" not in formats.values():
        raise CinescaleResolveError(f"this Resolve offers no QuickTime render format ({sorted(formats)})")
    codecs = project.GetRenderCodecs("mov") or {}
    for pattern in INTERMEDIATE_CODECS:
        for description, name in codecs.items():
            if re.search(pattern, description):
                return "mov", name
    raise CinescaleResolveError(f"no intra-frame QuickTime codec for the intermediate among {sorted(codecs)}: "
                                "Resolve Studio offers ProRes/DNxHR; set one up, or render the range by hand and run "
                                "cinescale on it")


def render_intermediate(project, timeline, first, last, folder, log, poll_s=1.0, timeout_s=6 * 3600):
    """Render [first, last] of ``timeline`` to a QuickTime file; return its path."""
    saved_fc = project.GetCurrentRenderFormatAndCodec()
    saved_mode = project.GetCurrentRenderMode()
    fmt, codec = choose_intermediate(project)
    job = None
    try:
        if not project.SetCurrentRenderFormatAndCodec(fmt, codec):
            raise CinescaleResolveError(f"Resolve refused render format {fmt} / codec {codec}")
        if not project.SetCurrentRenderMode(1):  # 1: single clip (the whole range in one file)
            raise CinescaleResolveError("Resolve refused single-clip render mode")
        name = f"{_safe(timeline.GetName())}_{first}-{last}_src"
        settings = {"SelectAllFrames": False, "MarkIn": first, "MarkOut": last, "TargetDir": folder,
                    "CustomName": name, "ExportVideo": True, "ExportAudio": False}
        if not project.SetRenderSettings(settings):
            raise CinescaleResolveError(f"Resolve refused the render settings {settings}")
        job = project.AddRenderJob()
        if not job:
            raise CinescaleResolveError("Resolve did not add the render job (is the Deliver page busy?)")
        log(f"rendering frames {first}-{last} to {folder} ({fmt}/{codec})")
        if not project.StartRendering([job], False):
            raise CinescaleResolveError("Resolve did not start rendering")
        deadline = time.monotonic() + timeout_s
        shown = -1
        while project.IsRenderingInProgress():
            status = project.GetRenderJobStatus(job) or {}
            pct = int(status.get("CompletionPercentage", 0) or 0)
            if pct // 10 != shown // 10:
                log(f"  Resolve render {pct}%")
                shown = pct
            if time.monotonic() > deadline:
                project.StopRendering()
                raise CinescaleResolveError("the Resolve render did not finish in time")
            time.sleep(poll_s)
        status = project.GetRenderJobStatus(job) or {}
        if status.get("JobStatus") != "Complete":
            raise CinescaleResolveError(f"the Resolve render ended as {status.get('JobStatus')!r}: "
                                        f"{status.get('Error', 'see the Deliver page')}")
        for info in project.GetRenderJobList() or []:
            if info.get("JobId") == job:
                path = os.path.join(info["TargetDir"], info["OutputFilename"])
                break
        else:
            path = os.path.join(folder, name + ".mov")
        if not os.path.isfile(path):
            raise CinescaleResolveError(f"the Resolve render reported success but {path} is missing")
        return path
    finally:
        if job:
            project.DeleteRenderJob(job)
        if saved_fc:
            project.SetCurrentRenderFormatAndCodec(saved_fc.get("format"), saved_fc.get("codec"))
        if saved_mode is not None:
            project.SetCurrentRenderMode(saved_mode)


# Output colour spaces of Resolve's colour management that are display-referred
# (sent in video mode: what the models were trained on). Anything else --
# a log or linear output space, or ACES with no ODT -- goes in OCIO mode.
DISPLAY_REFERRED = ("gamma 2.4", "gamma 2.2", "gamma 2.6", "srgb", "rec.709", "rec709", "rec.1886", "p3-d65",
                    "display p3", "dci-p3")


def intermediate_colour(project):
    """(CLI options, sentence for the Console) for what the intermediate holds.

    The intermediate is rendered in the project's *output* colour space.
    Resolve exposes it through ``Project.GetSetting``: ``colorSpaceOutput``
    under DaVinci colour management, ``acesODT`` under ACEScct/ACEScc.
    ``CINESCALE_RESOLVE_COLOUR`` (an OCIO colour space name) overrides; with
    none of these the script says what it assumes."""
    override = os.environ.get("CINESCALE_RESOLVE_COLOUR", "").strip()
    if override:
        return _colour_options(override, f"intermediate colour space {override!r} (CINESCALE_RESOLVE_COLOUR)")

    def setting(key):
        try:
            return str(project.GetSetting(key) or "").strip()
        except Exception:  # noqa: BLE001 - older Resolve or a key it does not know
            return ""

    science = setting("colorScienceMode").lower()
    if science.startswith("aces"):
        odt = setting("acesODT")
        if odt and odt.lower() not in ("no odt", "none"):
            return [], f"the intermediate is rendered through the ACES output transform {odt!r}: sent in video mode"
        space = "ACEScct" if "cct" in science else "ACEScc"
        return _colour_options(space, f"ACES with no output transform: the intermediate is {space}")
    output = setting("colorSpaceOutput")
    if output:
        if any(k in output.lower() for k in DISPLAY_REFERRED):
            return [], f"the intermediate is in the project's output colour space {output!r} (display-referred): " \
                       "sent in video mode"
        return _colour_options(output, f"the intermediate is in the project's output colour space {output!r}")
    return [], (ASSUMED + " which colour space it renders (no colour-managed output space in the project "
                "settings): assuming display-referred Rec.709 (video mode). If the timeline outputs log or linear, "
                "set CINESCALE_RESOLVE_COLOUR to its OCIO name (e.g. 'ARRI LogC4') and run again")


ASSUMED = "Resolve does not say"


def _ui_dispatcher(ui):
    """Resolve's UI event dispatcher: ``bmd.UIDispatcher`` (``bmd`` is injected
    into Workspace scripts like ``resolve``; else the scripting module's)."""
    bmd = getattr(sys.modules.get("__main__"), "bmd", None) or globals().get("bmd")
    if bmd is None:
        import DaVinciResolveScript as bmd  # noqa: N813
    return bmd.UIDispatcher(ui)


def tell(resolve, text):
    """Show ``text`` in a small dialog with an OK button (Fusion UIManager) and
    wait for it; returns False where no UI is available (external scripting,
    a headless render node), in which case the Console line is all there is."""
    try:
        ui = resolve.Fusion().UIManager
        disp = _ui_dispatcher(ui)
        win = disp.AddWindow({"ID": "CinescaleNote", "WindowTitle": "Cinescale", "Geometry": [200, 200, 520, 160]},
                             [ui.VGroup([ui.Label({"ID": "Note", "Text": text, "WordWrap": True}),
                                         ui.Button({"ID": "OK", "Text": "OK"})])])

        def close(ev):
            disp.ExitLoop()

        win.On.OK.Clicked = close
        win.On.CinescaleNote.Close = close
        win.Show()
        disp.RunLoop()
        win.Hide()
        return True
    except Exception:  # noqa: BLE001 - no UI here: the Console has said it
        return False


def _colour_options(space, why):
    return (["--set", "colour.mode=ocio", "--set", f"colour.input={space}"],
            f"{why}: sent in OCIO mode (colour.input={space}); the result is written back in it")


def run_cli(argv, log, env=None):
    """Run the CLI, log its progress every 10 %; return the finished event."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
    err_lines = []
    drain = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    drain.start()
    events, shown = [], -10
    for line in proc.stdout:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        events.append(ev)
        if ev.get("event") == "frame" and ev.get("pct", 0) >= shown + 10:
            shown = ev["pct"]
            log(f"  cinescale {ev['pct']:.0f}% (frame {ev['frame']}, eta {ev.get('eta_s')} s)")
        elif ev.get("event") == "warning":
            log(f"  warning: {ev.get('message')}")
    proc.wait()
    drain.join(5)
    if proc.returncode != 0:
        errors = [e["message"] for e in events if e.get("event") == "error"]
        raise CinescaleResolveError(f"cinescale exited with code {proc.returncode}: "
                                    f"{errors[-1] if errors else ''.join(err_lines[-20:])}")
    return next((e for e in reversed(events) if e.get("event") == "finished"), {})


def _bin(media_pool):
    root = media_pool.GetRootFolder()
    for folder in root.GetSubFolderList() or []:
        if folder.GetName() == BIN_NAME:
            return folder
    return media_pool.AddSubFolder(root, BIN_NAME)


def import_result(media_pool, output):
    """Import into the "cinescale" bin (a movie: Resolve conforms and relinks
    by QuickTime timecode, which the CLI carries over from the intermediate)."""
    previous = media_pool.GetCurrentFolder()
    media_pool.SetCurrentFolder(_bin(media_pool))
    try:
        items = media_pool.ImportMedia([output])
    finally:
        if previous is not None:
            media_pool.SetCurrentFolder(previous)
    if not items:
        raise CinescaleResolveError(f"Resolve could not import {output}")
    return items[0]


def _occupied(timeline, track, first, last):
    return any(item.GetStart() <= last and item.GetEnd() > first
               for item in timeline.GetItemListInTrack("video", track) or [])


def track_above(timeline, first, last):
    """The video track just above the highest one with a clip in [first,
    last] (free there by construction); added when the timeline has none."""
    count = int(timeline.GetTrackCount("video"))
    top = max([t for t in range(1, count + 1) if _occupied(timeline, t, first, last)] or [0])
    target = top + 1
    while int(timeline.GetTrackCount("video")) < target:
        if not timeline.AddTrack("video"):
            raise CinescaleResolveError("Resolve refused to add a video track")
    return target


def place(media_pool, timeline, item, first, last):
    frames = last - first + 1
    have = int(item.GetClipProperty("Frames") or 0)
    if have != frames:
        raise CinescaleResolveError(f"the upscaled clip has {have} frames, the marked range {frames}")
    track = track_above(timeline, first, last)
    placed = media_pool.AppendToTimeline([{"mediaPoolItem": item, "startFrame": 0, "endFrame": frames - 1,
                                           "mediaType": 1, "trackIndex": track, "recordFrame": first}])
    if not placed or placed[0].GetStart() != first:
        raise CinescaleResolveError(f"Resolve did not place the clip at record frame {first} on V{track}")
    return placed[0], track


def _current(resolve, preset, folder):
    """(project, timeline, preset, folder) of this run: the open ones, the settings' defaults."""
    project = resolve.GetProjectManager().GetCurrentProject()
    if project is None:
        raise CinescaleResolveError("open a project first")
    timeline = project.GetCurrentTimeline()
    if timeline is None:
        raise CinescaleResolveError("open the timeline to upscale first")
    preset = preset or os.environ.get("CINESCALE_RESOLVE_PRESET", DEFAULT_PRESET)
    folder = folder or os.environ.get("CINESCALE_RESOLVE_DIR") or os.path.join(os.path.expanduser("~"), "cinescale")
    os.makedirs(folder, exist_ok=True)
    return project, timeline, preset, folder


def upscale_marked_range(resolve, preset=None, folder=None, log=print, poll_s=1.0, env=None):
    """The whole round trip; returns what was done (for logs and tests)."""
    project, timeline, preset, folder = _current(resolve, preset, folder)
    first, last = marked_range(timeline)
    cli = cli_command()
    source = render_intermediate(project, timeline, first, last, folder, log, poll_s=poll_s)
    output = os.path.join(folder, f"{_safe(timeline.GetName())}_{first}-{last}_cinescale.mov")
    colour, said = intermediate_colour(project)
    log(f"colour: {said}")
    if said.startswith(ASSUMED):  # a guess the user must see before hours of rendering, not only in the Console
        tell(resolve, f"Cinescale: {said}.")
    log(f"upscaling {source} -> {output} (preset {preset})")
    finished = run_cli([*cli, "render", source, "-o", output, "--preset", preset, "--progress", "json", *colour],
                       log, env)
    result = (finished.get("outputs") or [output])[0]
    media_pool = project.GetMediaPool()
    item = import_result(media_pool, result)
    timeline_item, track = place(media_pool, timeline, item, first, last)
    tc = item.GetClipProperty("Start TC")
    log(f"placed {os.path.basename(result)} on V{track} at record frame {first} (source timecode {tc})")
    return {"source": source, "output": result, "track": track, "record_frame": first, "start_tc": tc,
            "timeline_item": timeline_item, "media_pool_item": item, "colour": colour}


def upscale_timeline(resolve, preset=None, folder=None, log=print, env=None):
    """Upscale the current timeline: export it as OTIO (``Timeline.Export``
    with ``resolve.EXPORT_OTIO``, Resolve 18.5+), run ``cinescale conform``
    on it (each clip's used frames, with their handles, rendered once), and
    import the relinked cut as a new timeline "<name> (cinescale)" with
    ``MediaPool.ImportTimelineFromFile``. Returns what was done."""
    project, timeline, preset, folder = _current(resolve, preset, folder)
    name = _safe(timeline.GetName())
    cut = os.path.join(folder, f"{name}.otio")
    kind = getattr(resolve, "EXPORT_OTIO", None)
    if kind is None or not timeline.Export(cut, kind):
        raise CinescaleResolveError("Resolve did not export the timeline as OpenTimelineIO (Resolve 18.5 or later "
                                    "does: File > Export > Timeline); export it by hand and run "
                                    f"`cinescale conform CUT.otio -o {folder}`")
    out = os.path.join(folder, f"{name}_conform")
    log(f"conforming {cut} -> {out} (preset {preset})")
    run_cli([*cli_command(), "conform", cut, "-o", out, "--preset", preset, "--progress", "json"], log, env)
    relinked = os.path.join(out, f"{name}.conformed.otio")
    new_name = f"{timeline.GetName()} (cinescale)"
    imported = project.GetMediaPool().ImportTimelineFromFile(relinked, {"timelineName": new_name})
    if not imported:
        raise CinescaleResolveError(f"Resolve did not import {relinked}: import it with File > Import > Timeline")
    log(f"imported {relinked} as timeline {new_name!r}")
    return {"cut": cut, "relinked": relinked, "timeline": imported}


def main(action=None):
    try:
        (action or upscale_marked_range)(get_resolve())
    except CinescaleResolveError as exc:
        print(f"Cinescale: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    main()
