"""Click commands ``qc``, ``compare`` and ``contact-sheet`` for the ``cinescale`` CLI.

They parse, call the library (``pipeline``, ``compare``) and print; errors
are ``CinescaleError`` subclasses that ``cli.main`` turns into exit codes.
The CLI adds them with::

    from cinescale_post.cli.qc_commands import QC_COMMANDS
    for _command in QC_COMMANDS: cli.add_command(_command)

Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import json

import click

from cinescale_post.cli.context import PROGRESS_MODES, command_host as _host
from cinescale_post.contracts.errors import UsageError


def _frame_list(text: str) -> list[int]:
    """``--frames`` as every command reads it: 1001-1100, 1001-1100x2, 1001,1005-1010."""
    import fileseq

    try:
        return list(fileseq.FrameSet(str(text)))
    except fileseq.ParseException as exc:
        raise UsageError(f"--frames {text!r}: not a frame range ({exc})", fix="e.g. 1001-1010 or 1001,1005") from exc


def _png_path(path: str) -> str:
    if not path.lower().endswith(".png"):
        raise UsageError(f"-o {path}: sheets are written as PNG", fix="name the file *.png")
    return path


QC_EXIT_CODES = """\b
Exit codes: 0 measured (with or without flags, unless --fail-on-flags);
1 --fail-on-flags and frames, chunks or seams were flagged (the --frames
to re-render are printed on stderr); 2 usage; 3 render or source missing or
undecodable; 4 report folder not writable."""


@click.command(epilog=QC_EXIT_CODES)
@click.argument("render")
@click.option("--source", help="The render's input (default: the one its manifest names).")
@click.option("--frames", help="Frames to check, e.g. 1001-1100 or 1001,1005-1010 (default: all).")
@click.option("--first-frame", type=int, default=1001, show_default=True,
              help="Plate number of a movie's first frame (a render's manifest wins over the default).")
@click.option("--chunk", type=int, default=None,
              help="Frames per chunk, for seams (default: the manifest's; 0: no boundaries).")
@click.option("--fit", type=click.Choice(["pad", "crop", "stretch"]), default="pad", show_default=True,
              help="How the source was fitted, when there is no manifest to say it.")
@click.option("--threshold", "thresholds", multiple=True, metavar="NAME=VALUE",
              help="Override a threshold: flicker, seam, seam_ratio, seam_radius, drift_mean, drift_p95, detail_min.")
@click.option("-o", "--output", "out_dir", help="Folder to write the report to (default: <render>.qc next to it).")
@click.option("--report-dir", "report_dir", hidden=True)  # old spelling of -o, kept for a release
@click.option("--fail-on-flags", is_flag=True,
              help="Exit 1 when anything is flagged, with the --frames to re-render on stderr (farm gates).")
@click.option("--flow", type=click.Choice(["dis", "farneback"]), default="dis", show_default=True,
              help="Optical flow of the source frames.")
@click.option("--delta-e", type=click.Choice(["2000", "76"]), default="2000", show_default=True,
              help="Colour difference formula (CIEDE2000 or CIE76).")
@click.option("--sheets", type=click.IntRange(0, 12), default=2, show_default=True,
              help="Source-vs-render sheets of the worst frames.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots and sheets.")
@click.option("--no-html", is_flag=True, help="Skip index.html.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON on stdout.")
@click.option("--progress", type=click.Choice(PROGRESS_MODES), default="auto", show_default=True)
@click.pass_context
def qc(ctx, render, source, frames, first_frame, chunk, fit, thresholds, out_dir, report_dir, fail_on_flags,
       flow, delta_e, sheets, no_plots, no_html, as_json, progress):
    """Measure a render against its source: flicker, seams at chunk
    boundaries, colour drift, detail gain. Writes report.json, PNG plots and
    index.html next to the render, and prints the --frames to re-render.
    RENDER is the output (movie or frame pattern) or its <output>.manifest.json."""
    from cinescale_post.orchestrator.progress import make_sink
    from cinescale_post.qc.pipeline import run_qc
    from cinescale_post.qc.report import Thresholds, format_summary

    if out_dir and report_dir and out_dir != report_dir:
        raise UsageError(f"-o {out_dir} and --report-dir {report_dir} disagree", fix="pass -o only")
    if ctx.get_parameter_source("first_frame") == click.core.ParameterSource.DEFAULT:
        first_frame = None  # the manifest's, else the same 1001
    if render.endswith(".manifest.json"):  # the output it describes, named as the render was asked for
        from cinescale_post.orchestrator.manifest import read_manifest_file
        from cinescale_post.orchestrator.spelling import as_written

        output, data = read_manifest_file(render)
        render = as_written(data, output)
    t = Thresholds.parse(thresholds)
    sink = make_sink(progress)
    res = run_qc(render, source, host=_host(ctx), out_dir=out_dir or report_dir, frames=frames, thresholds=t,
                 chunk=chunk, first_frame=first_frame, fit=fit, flow=flow, formula="de" + delta_e,
                 plots=not no_plots, html=not no_html, sheets=0 if no_plots else sheets,
                 contact=0 if no_plots else 12, sink=sink)
    if as_json and progress != "json":
        click.echo(json.dumps(res.report, indent=2))
    elif progress != "json":
        click.echo(format_summary(res.report))
        click.echo(f"report: {res.files['report']}")
        if res.files.get("html"):
            click.echo(f"page:   {res.files['html']}")
    rerender = res.report["rerender"]
    if fail_on_flags and rerender["count"]:
        click.echo(f"qc: {rerender['count']} frames flagged in {render}; re-render --frames {rerender['frames']}",
                   err=True)
        ctx.exit(1)


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("-o", "--output", required=True, help="Sheet to write (.png).")
@click.option("--frames", "frame_set", help="Frames of the clips to compare, e.g. 1001 or 1001,1010-1012 "
                                           "(default: the middle one).")
@click.option("--frame", "frames", type=int, multiple=True, hidden=True)  # old spelling, kept for a release
@click.option("--first-frame", type=int, default=1001, show_default=True,
              help="Plate number of a movie's first frame.")
@click.option("--label", "labels", nargs=2, default=("A", "B"), show_default=True, help="Names of A and B.")
@click.option("--amplify", type=float, default=4.0, show_default=True, help="Gain of the difference panel.")
@click.option("--wipe", type=float, default=0.5, show_default=True, help="Wipe position (0: all B, 1: all A).")
@click.option("--crops", type=int, default=3, show_default=True, help="1:1 crops of the busiest regions.")
@click.option("--crop-size", type=int, default=128, show_default=True, help="Crop side in pixels.")
@click.option("--panel-width", type=int, default=480, show_default=True, help="Width of each panel.")
@click.pass_context
def compare(ctx, a, b, output, frame_set, frames, first_frame, labels, amplify, wipe, crops, crop_size,
            panel_width):
    """Compare two stills, or chosen frames of two clips: side by side, a
    wipe, the amplified difference and 1:1 crops of the busiest regions."""
    import cinescale_post.qc.draw as draw
    from cinescale_post.qc.compare import compare_paths

    _png_path(output)
    numbers = list(frames) + (_frame_list(frame_set) if frame_set else [])
    img, _ = compare_paths(a, b, host=_host(ctx), frames=numbers or None, first_frame=first_frame,
                           labels=tuple(labels), amplify=amplify, wipe=wipe, crops=crops, crop_size=crop_size,
                           panel_width=panel_width)
    click.echo(draw.write_png(output, img))


@click.command("contact-sheet")
@click.argument("render")
@click.option("-o", "--output", required=True, help="Sheet to write (.png).")
@click.option("--count", type=int, default=12, show_default=True, help="Evenly spaced frames to show.")
@click.option("--frames", help="Exact frames instead, e.g. 1001-1010x3.")
@click.option("--columns", type=int, default=4, show_default=True)
@click.option("--width", "thumb_width", type=int, default=320, show_default=True, help="Thumbnail width.")
@click.option("--first-frame", type=int, default=1001, show_default=True,
              help="Plate number of a movie's first frame.")
@click.option("--report", "report_path", help="QC report.json whose flagged frames get a red frame "
                                               "(default: <render>.qc/report.json when present).")
@click.pass_context
def contact_sheet_cmd(ctx, render, output, count, frames, columns, thumb_width, first_frame, report_path):
    """Thumbnails of a render with frame numbers (and QC flags)."""
    import os

    import cinescale_post.qc.draw as draw
    from cinescale_post.qc.analyse import load_report
    from cinescale_post.qc.compare import contact_sheet
    from cinescale_post.qc.pipeline import default_dir

    _png_path(output)
    numbers = _frame_list(frames) if frames else None
    if report_path is None and os.path.exists(default_dir(render) / "report.json"):
        report_path = str(default_dir(render) / "report.json")
    flags = {}
    if report_path:
        flags = {f["frame"]: f["flags"] for f in load_report(report_path).get("frames", []) if f.get("flags")}
    img, _ = contact_sheet(render, host=_host(ctx), count=count, frames=numbers, columns=columns,
                           thumb_width=thumb_width, first_frame=first_frame, flags=flags)
    click.echo(draw.write_png(output, img))


QC_COMMANDS = (qc, compare, contact_sheet_cmd)
