"""Upscale the selected node's frame range with cinescale-post, from Nuke.

``render_selected()`` (the Cinescale menu command):

1. Input: a Read node of an image sequence or movie is used as is (its file
   on disk, so no re-render), and its colourspace knob tells the CLI what the
   file holds: a scene-linear or log space (ACEScg, linear, LogC, S-Log3...)
   goes with ``--set colour.mode=ocio --set colour.input=<space>``, so the
   model sees it display-referred through the invertible OCIO chain and the
   result is written back in the same space with its highlights; a
   display-referred space (sRGB, Rec.709, Gamma 2.4) goes in video mode.
   Any other node is first rendered to a half-float EXR sequence through a
   temporary Write node (``nuke.execute`` in the main thread, which shows
   Nuke's own progress dialog) in the script's working space (scene-linear,
   nothing clipped), and sent in OCIO mode the same way. The project's OCIO
   config is passed too when it is a custom file or one of OCIO's built-in
   configs, so the names mean what they mean in the script.
2. ``cinescale render IN -o OUT --frames FIRST-LAST --progress json`` runs in
   a worker thread, so Nuke stays responsive. Its JSON lines drive a
   ``nuke.ProgressTask`` (percentage, frame, ETA). Cancel sends SIGTERM: the
   CLI finishes the current frame, removes its temporaries and exits 143;
   only if it is still running after ``cancel_grace_s`` is it killed (a
   killed render is still safe: run the command again to resume).
3. On success, a Read node is created in the main thread
   (``nuke.executeInMainThread``) with the output pattern, first/last (and
   origfirst/origlast) and the colourspace the pixels were written in,
   placed next to the source node; missing frames show black.

Settings: ``CINESCALE_CLI`` (the command, e.g. ``/opt/cs/bin/cinescale`` or
``"/opt/py/bin/python -m cinescale_post"``; default: ``cinescale`` on PATH),
``CINESCALE_NUKE_DIR`` (where intermediates and results go; default:
``<script folder>/cinescale``, or the temp folder for an unsaved script),
``CINESCALE_NUKE_PRESET`` (default preset, ``uhd-exr-draft``).
"""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time

import nuke

DEFAULT_PRESET = "uhd-exr-draft"
SEQUENCE_SUFFIXES = (".exr", ".dpx", ".tif", ".tiff", ".png", ".jpg", ".jpeg")
MOVIE_SUFFIXES = (".mov", ".mp4", ".mxf", ".mkv", ".avi")
_FRAME_TOKEN = re.compile(r"(#+|%0?\d*d|@+|\$F\d*)")


class CinescaleNukeError(Exception):
    """Shown to the artist with nuke.message; says what to do."""


def cli_command() -> list[str]:
    """The cinescale command as an argv prefix."""
    configured = os.environ.get("CINESCALE_CLI")
    if configured:
        return shlex.split(configured)
    found = shutil.which("cinescale")
    if found:
        return [found]
    raise CinescaleNukeError("the cinescale command was not found. Install cinescale-post where Nuke can run it, "
                             "or set CINESCALE_CLI (e.g. '/opt/cinescale/bin/cinescale') before starting Nuke.")


def work_dir() -> str:
    configured = os.environ.get("CINESCALE_NUKE_DIR")
    if configured:
        return configured
    try:
        script = nuke.scriptName()  # raises RuntimeError for an unsaved script
    except RuntimeError:
        return os.path.join(tempfile.gettempdir(), "cinescale")
    return os.path.join(os.path.dirname(script), "cinescale")


def display_colorspace() -> str:
    """The project's colourspace for 8-bit (display-referred) files, which is
    what the models expect; exists in both Nuke's own and OCIO configs."""
    root = nuke.root()
    try:
        value = root["int8Lut"].value()
    except (NameError, KeyError, TypeError):
        value = ""
    return value or "sRGB"


# Display-referred spaces (Nuke's own names and the OCIO configs'), sent in
# video mode: the model was trained on such pictures, no conversion needed.
DISPLAY_REFERRED = {
    "srgb", "rec709", "gamma1.8", "gamma2.2", "gamma2.4", "srgb encoded rec.709 (srgb)", "srgb_texture", "srgb_tx",
    "utility - srgb - texture", "output - srgb", "output - rec.709", "rec.1886 rec.709 - display", "srgb - display",
    "gamma 2.4 encoded rec.709", "gamma 2.2 encoded rec.709", "camera rec.709", "rec709_display",
    "utility - rec.709 - display", "color_picking", "matte_paint", "texture_paint",
}


def working_colorspace() -> str:
    """The script's scene-linear working space (Nuke: ``linear``; ACES: ``ACEScg``)."""
    value = _knob(nuke.root(), "workingSpaceLUT", "") or ""
    return value or "linear"


def ocio_config_arg() -> str | None:
    """The script's OCIO config as the CLI's ``colour.config``, or None for
    Nuke's own colour management (the CLI's pinned config is used)."""
    root = nuke.root()
    if (_knob(root, "colorManagement", "") or "").lower() != "ocio":
        return None
    config = _knob(root, "OCIO_config", "") or ""
    if config == "custom":
        return _knob(root, "customOCIOConfigPath", "") or None
    if config.startswith("fn-nuke_"):  # Nuke's copies of OCIO's built-in configs
        return "ocio://" + config[len("fn-nuke_"):]
    return None


def resolve_default(colorspace: str, path: str) -> str:
    """Nuke's ``default (X)`` is X; a bare ``default`` is what Nuke assumes by
    file type: float formats linear, the rest display-referred."""
    cs = (colorspace or "default").strip()
    if cs.lower().startswith("default (") and cs.endswith(")"):
        return cs[9:-1]
    if cs.lower() == "default":
        return "linear" if os.path.splitext(path)[1].lower() in (".exr", ".hdr") else "sRGB"
    return cs


def colour_args(colorspace: str, path: str) -> list[str]:
    """``--set`` options that say what colour ``path`` holds (empty: video mode)."""
    cs = resolve_default(colorspace, path)
    if cs.lower() in DISPLAY_REFERRED:
        return []
    args = ["--set", "colour.mode=ocio", "--set", f"colour.input={cs}"]
    config = ocio_config_arg()
    if config:
        args += ["--set", f"colour.config={config}"]
    return args


def _knob(node, name, default=None):
    try:
        return node[name].value()
    except (NameError, KeyError):
        return default


def _direct_input(node) -> tuple[str, str] | None:
    """(file, colourspace) when ``node`` is a Read whose file can go to the
    CLI untouched: a sequence with a frame token or a movie, no frame offset."""
    if node.Class() != "Read":
        return None
    path = _knob(node, "file") or ""
    suffix = os.path.splitext(path)[1].lower()
    is_seq = suffix in SEQUENCE_SUFFIXES and _FRAME_TOKEN.search(os.path.basename(path))
    if not (is_seq or suffix in MOVIE_SUFFIXES):
        return None
    if (_knob(node, "frame") or "").strip():
        return None  # a retimed Read: pre-render what the script shows instead
    return path, _knob(node, "colorspace") or "default"


def prerender(node, first: int, last: int, pattern: str, colorspace: str) -> str:
    """Render ``node`` to a half EXR sequence with a temporary Write node
    (main thread). Returns ``pattern``."""
    os.makedirs(os.path.dirname(pattern), exist_ok=True)
    write = nuke.nodes.Write()
    try:
        write.setInput(0, node)
        write["file"].setValue(pattern)
        write["file_type"].setValue("exr")  # the EXR knobs exist once the type is set
        write["channels"].setValue("rgb")
        write["datatype"].setValue("16 bit half")
        write["compression"].setValue("Zip (1 scanline)")
        write["metadata"].setValue("all metadata")
        write["create_directories"].setValue(True)
        write["colorspace"].setValue(colorspace)
        nuke.execute(write, first, last, 1)  # shows Nuke's progress; raises RuntimeError if cancelled
    finally:
        nuke.delete(write)
    return pattern


class UpscaleJob:
    """One CLI run in a worker thread, reported through a ProgressTask."""

    def __init__(self, argv: list[str], *, first: int, last: int, output: str, colorspace: str, source_node=None,
                 label: str = "", env: dict | None = None, cancel_grace_s: float = 30.0):
        self.argv = argv
        self.first, self.last = first, last
        self.output = output
        self.colorspace = colorspace
        self.source_node = source_node
        self.label = label or os.path.basename(output)
        self.env = env
        self.cancel_grace_s = cancel_grace_s
        self.status = "pending"  # -> running -> finished | cancelled | failed
        self.returncode: int | None = None
        self.events: list[dict] = []
        self.read_node = None
        self.error = ""
        self._stderr: collections.deque = collections.deque(maxlen=40)
        self._thread = threading.Thread(target=self._run, name=f"cinescale {self.label}", daemon=True)

    def start(self) -> "UpscaleJob":
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> str:
        self._thread.join(timeout)
        return self.status

    # -------------------------------------------------------------- worker thread

    def _run(self) -> None:
        task = nuke.ProgressTask(f"Cinescale: {self.label}")
        task.setMessage("starting")
        self.status = "running"
        try:
            self._watch(task)
        except Exception as exc:  # noqa: BLE001 - a worker thread must report, never die silently
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            del task  # closes the progress bar

    def _watch(self, task) -> None:
        try:
            # POSIX: terminate() sends SIGTERM, which the CLI turns into a clean stop (exit 143).
            # Windows: terminate() ends the process at once; the render still resumes next time.
            proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    bufsize=1, env=self.env)
        except OSError as exc:
            self._fail(f"could not start {self.argv[0]}: {exc}. Set CINESCALE_CLI to the cinescale command.")
            return
        lines: queue.Queue = queue.Queue()
        readers = [threading.Thread(target=self._pump, args=(proc.stdout, lines.put), daemon=True),
                   threading.Thread(target=self._pump, args=(proc.stderr, self._stderr.append), daemon=True)]
        for t in readers:
            t.start()
        cancelled_at = None
        while True:
            self._drain(lines, task)
            if proc.poll() is not None:
                break
            if cancelled_at is None and task.isCancelled():
                cancelled_at = time.monotonic()
                task.setMessage("cancelling: finishing the current frame")
                proc.terminate()  # SIGTERM: the CLI stops between frames, cleans up, exits 143
            elif cancelled_at is not None and time.monotonic() - cancelled_at > self.cancel_grace_s:
                proc.kill()  # still safe: published frames are complete, the rest resumes next time
            time.sleep(0.05)
        for t in readers:
            t.join(5)
        self._drain(lines, task)
        self.returncode = proc.returncode
        if cancelled_at is not None:
            self.status = "cancelled"
        elif proc.returncode == 0:
            self.status = "finished"
            task.setProgress(100)
            nuke.executeInMainThread(self._create_read)
        else:
            err = [e["message"] for e in self.events if e.get("event") == "error"]
            detail = err[-1] if err else "\n".join(self._stderr) or "no message"
            self._fail(f"cinescale exited with code {proc.returncode}:\n{detail}")

    @staticmethod
    def _pump(stream, put) -> None:
        for line in stream:
            put(line.rstrip("\n"))
        stream.close()

    def _drain(self, lines: queue.Queue, task) -> None:
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                return
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not protocol (the CLI writes only JSON on stdout; be lenient anyway)
            self.events.append(event)
            kind = event.get("event")
            if kind == "start":
                task.setMessage(f"{event.get('done', 0)}/{event.get('total', 0)} frames done")
            elif kind == "frame":
                task.setProgress(int(event.get("pct") or 0))
                eta = event.get("eta_s")
                eta_text = f", {int(eta)} s left" if eta is not None else ""
                task.setMessage(f"frame {event.get('frame')} ({event.get('done')}/{event.get('total')}){eta_text}")
            elif kind == "warning":
                task.setMessage(str(event.get("message", ""))[:200])

    def _fail(self, message: str) -> None:
        self.status = "failed"
        self.error = message
        nuke.executeInMainThread(nuke.message, args=(f"Cinescale: {self.label}\n\n{message}",))

    # -------------------------------------------------------------- main thread

    def _create_read(self):
        read = nuke.nodes.Read()
        read["file"].setValue(self.output)
        for knob, value in (("origfirst", self.first), ("origlast", self.last), ("first", self.first),
                            ("last", self.last)):
            read[knob].setValue(value)
        read["colorspace"].setValue(self.colorspace)  # what the pixels were written in
        read["on_error"].setValue("black")
        read["label"].setValue("cinescale")
        src = self.source_node
        if src is not None:
            read.setXYpos(src.xpos() + 120, src.ypos())
        self.read_node = read
        return read


def build_argv(input_path: str, output: str, *, first: int, last: int, preset: str,
               first_frame: int | None = None, extra: list[str] | None = None) -> list[str]:
    argv = [*cli_command(), "render", input_path, "-o", output, "--preset", preset,
            "--frames", f"{first}-{last}", "--progress", "json"]
    if first_frame is not None:
        argv += ["--first-frame", str(first_frame)]
    return argv + list(extra or [])


def render_node(node, *, preset: str | None = None, output: str | None = None, colorspace: str | None = None,
                first: int | None = None, last: int | None = None, extra: list[str] | None = None,
                env: dict | None = None) -> UpscaleJob:
    """Upscale ``node`` over ``first``..``last`` (default: the node's range).
    Call from the main thread; returns the started job."""
    first = node.firstFrame() if first is None else first
    last = node.lastFrame() if last is None else last
    preset = preset or os.environ.get("CINESCALE_NUKE_PRESET", DEFAULT_PRESET)
    folder = os.path.join(work_dir(), node.name())
    output = output or os.path.join(folder, f"{node.name()}_cinescale.####.exr")
    direct = _direct_input(node)
    first_frame = None
    if direct:
        input_path, cs = direct
        if os.path.splitext(input_path)[1].lower() in MOVIE_SUFFIXES:
            first_frame = int(_knob(node, "origfirst", first))  # number movie frames like the script does
        cs = colorspace or cs
    else:
        cs = colorspace or working_colorspace()
        input_path = prerender(node, first, last, os.path.join(folder, f"{node.name()}_input.####.exr"), cs)
    # What the file holds goes to the CLI (OCIO mode for linear/log); the
    # artist's own --set options come later and win.
    argv = build_argv(input_path, output, first=first, last=last, preset=preset, first_frame=first_frame,
                      extra=colour_args(cs, input_path) + list(extra or []))
    return UpscaleJob(argv, first=first, last=last, output=output, colorspace=cs, source_node=node,
                      label=node.name(), env=env).start()


def render_selected(**kwargs) -> UpscaleJob | None:
    """Menu entry: upscale the selected node; reports problems with nuke.message."""
    try:
        try:
            node = nuke.selectedNode()
        except ValueError:  # Nuke raises ValueError when nothing is selected
            raise CinescaleNukeError("select the node to upscale first") from None
        if "preset" not in kwargs and nuke.env.get("gui"):
            preset = nuke.getInput("Cinescale preset", os.environ.get("CINESCALE_NUKE_PRESET", DEFAULT_PRESET))
            if not preset:
                return None  # the artist pressed Cancel
            kwargs["preset"] = preset
        return render_node(node, **kwargs)
    except (CinescaleNukeError, RuntimeError) as exc:
        nuke.message(f"Cinescale: {exc}")
        return None


__all__ = ["render_selected", "render_node", "UpscaleJob", "build_argv", "cli_command", "colour_args",
           "CinescaleNukeError"]
