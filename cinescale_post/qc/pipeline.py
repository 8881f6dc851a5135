"""One QC run: measure, tabulate, draw, and write the folder next to the render.

Layout for an output ``out/sh010.mov`` (``out/sh010.####.exr`` gives
``out/sh010.qc/``)::

    out/sh010.mov.qc/report.json     tables, flags, what to re-render
    out/sh010.mov.qc/flicker.png     drift.png, detail.png: the plots
    out/sh010.mov.qc/contact.png     thumbnails, flagged frames framed in red
    out/sh010.mov.qc/frame.1007.png  source vs render sheets of the worst frames
    out/sh010.mov.qc/index.html      the page that links all of it and the manifest
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cinescale_post.qc.analyse as analyse
import cinescale_post.qc.draw as draw
import cinescale_post.qc.report as report_mod

log = logging.getLogger(__name__)


def default_dir(output: str) -> Path:
    from cinescale_post.orchestrator.manifest import output_base

    return Path(f"{output_base(output)}.qc")


@dataclass
class QCResult:
    report: dict
    folder: str
    files: dict[str, str] = field(default_factory=dict)  # role -> path


def _make_folder(folder: Path) -> None:
    from cinescale_post.contracts.errors import OutputError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the QC folder {folder}: {exc.strerror or exc}",
                          fix="check permissions, or choose another folder with -o DIR") from exc


def worst_frames(report: dict, n: int) -> list[int]:
    """Up to ``n`` flagged frames, worst first (by how far over a threshold);
    when nothing is flagged, the frame with the most flicker (a look at the
    worst case of a clean render)."""
    t = report["thresholds"]
    frames = report["frames"]

    def severity(f):
        return max((f["flicker"] or 0) / max(t["flicker"], 1e-9), f["drift_mean"] / max(t["drift_mean"], 1e-9),
                   f["drift_p95"] / max(t["drift_p95"], 1e-9), t["detail_min"] / max(f["detail_gain"], 1e-9))

    flagged = sorted((f for f in frames if f["flags"]), key=severity, reverse=True)
    if flagged:
        return [f["frame"] for f in flagged[:n]]
    if not frames or n < 1:
        return []
    return [max(frames, key=lambda f: f["flicker"] or 0)["frame"]]


def run_qc(output: str, source: str | None = None, *, host, out_dir: str | None = None, frames: str | None = None,
           thresholds: report_mod.Thresholds | None = None, chunk: int | None = None,
           first_frame: int | None = None, fit: str = "pad", flow: str = "dis", formula: str = "de2000",
           plots: bool = True, html: bool = True, sheets: int = 2, contact: int = 12, sink=None) -> QCResult:
    """Measure ``output`` against ``source`` and write the QC folder.

    ``sink``: a progress sink (``orchestrator.progress``) for start/frame events.
    """
    t0 = time.monotonic()
    setup = analyse.resolve(output, source, chunk=chunk, first_frame=first_frame, fit=fit)
    folder = Path(out_dir) if out_dir else default_dir(output)
    _make_folder(folder)  # before the long part: an unwritable folder fails fast
    started = {}

    def on_frame(number, done, total):
        if sink is not None:
            if not started:
                sink.emit("start", total=total, done=0, output=str(folder), backend="qc")
                started["yes"] = True
            sink.emit("frame", frame=number)

    meas = analyse.measure(setup, host, frames=frames, flow=flow, formula=formula, on_frame=on_frame)
    rep = report_mod.build(meas, setup, thresholds or report_mod.Thresholds())
    res = QCResult(rep, str(folder))
    images: list[tuple[str, str]] = []
    if plots:
        from cinescale_post.qc.plots import report_plots

        for name, (img, _) in report_plots(rep).items():
            res.files[name] = draw.write_png(folder / f"{name}.png", img)
            images.append((f"{name} per frame", res.files[name]))
    if contact:
        from cinescale_post.qc.compare import contact_sheet

        flags = {f["frame"]: f["flags"] for f in rep["frames"] if f["flags"]}
        img, _ = contact_sheet(output, host=host, count=contact, first_frame=setup.first_frame, flags=flags)
        res.files["contact"] = draw.write_png(folder / "contact.png", img)
        images.append(("contact sheet of the render (flagged frames framed in red)", res.files["contact"]))
    for n in worst_frames(rep, sheets):
        from cinescale_post.qc.compare import compare_paths

        img, _ = compare_paths(setup.source, output, host=host, frames=[n], first_frame=setup.first_frame,
                               labels=("source", "render"))
        key = f"frame.{n}"
        res.files[key] = draw.write_png(folder / f"frame.{n}.png", img)
        why = next(f["flags"] for f in rep["frames"] if f["frame"] == n)
        images.append((f"frame {n}: source vs render" + (f" ({', '.join(why)})" if why else " (most flicker)"),
                       res.files[key]))
    rep["files"] = {k: os.path.relpath(v, folder) for k, v in res.files.items()}
    report_path = folder / "report.json"
    report_mod.write_json(rep, report_path)
    res.files["report"] = str(report_path)
    if html:
        from cinescale_post.qc.html import write_html

        res.files["html"] = write_html(rep, folder, images)
    if sink is not None:
        sink.emit("finished", status="finished", done=len(meas.numbers), total=len(meas.numbers), seconds=round(time.monotonic() - t0, 3),
                  outputs=[res.files.get("html") or str(report_path)], flagged=rep["rerender"]["frames"])
    return res
