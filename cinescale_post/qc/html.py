"""A static HTML page for a QC run, written next to the render.

One self-contained ``index.html`` (inline CSS, no scripts, no network):
summary, what to re-render, the plots, the contact sheet and comparison
sheets, the chunk/seam/frame tables, and links to the JSON report and the
render's manifest. All links are relative, so the folder can be copied or
served as it is. Every value from the report is HTML-escaped (paths may hold
any character).
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

import cinescale_post.qc.report as report_mod

_CSS = """
body{background:#181818;color:#e8e8e8;font:14px/1.4 system-ui,sans-serif;margin:24px;max-width:1200px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #444}
a{color:#7ab8ff}pre{background:#222;padding:8px;overflow-x:auto}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
td,th{border:1px solid #3a3a3a;padding:2px 8px;text-align:right}th{background:#262626}
tr.flag td{background:#4a1f1f}.ok{color:#7ad67a}.bad{color:#ff7a7a}
figure{margin:12px 0}figcaption{color:#aaa}img{max-width:100%;image-rendering:pixelated}
"""


def _table(rows: list[dict], columns: list[str], flagged=lambda r: bool(r.get("flags"))) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            if isinstance(v, list):
                v = ", ".join(map(str, v))
            cells.append(f"<td>{escape('' if v is None else str(v))}</td>")
        body.append(f"<tr{' class=flag' if flagged(r) else ''}>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _rel(target: str | os.PathLike, folder: Path) -> str:
    return escape(os.path.relpath(os.path.abspath(target), os.path.abspath(folder)).replace(os.sep, "/"),
                  quote=True)


def render_html(report: dict, folder: str | os.PathLike, images: list[tuple[str, str]],
                json_name: str = "report.json") -> str:
    """The page as a string. ``images``: (caption, file path) in display order."""
    folder = Path(folder)
    s = report["summary"]
    setup = report["setup"]
    flagged = s["flagged_frames"] + s["flagged_chunks"] + s["flagged_seams"]
    status = (f"<span class=bad>{s['flagged_frames']} frames, {s['flagged_chunks']} chunks and "
              f"{s['flagged_seams']} seams flagged</span>" if flagged else "<span class=ok>nothing flagged</span>")
    links = [f'<a href="{escape(json_name, quote=True)}">QC report (JSON)</a>']
    if setup.get("manifest"):
        links.append(f'<a href="{_rel(setup["manifest"], folder)}">render manifest</a>')
    cmd = report_mod.rerender_command(report)
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>QC {escape(os.path.basename(setup['output']))}</title><style>{_CSS}</style></head><body>",
        f"<h1>QC of {escape(setup['output'])}</h1>",
        f"<p>source {escape(setup['source'])}<br>{status}<br>{' &middot; '.join(links)}</p>",
        "<h2>What to re-render</h2>",
        (f"<pre id=rerender>{escape(cmd)}</pre><p>Frames and seams come back with the same pixels under the "
         "same plan (seeds follow frame numbers): change a setting first (a temporal-consistency option, more "
         "window overlap, another seed) and render them with it.</p>")
        if cmd else "<p id=rerender>Nothing.</p>",
        "<h2>Summary</h2>",
        _table([{k: v for k, v in s.items()}], list(s), flagged=lambda r: False),
        "<h2>Plots and sheets</h2>",
    ]
    for caption, path in images:
        src = _rel(path, folder)
        parts.append(f'<figure><a href="{src}"><img src="{src}" alt="{escape(caption, quote=True)}"></a>'
                     f"<figcaption>{escape(caption)}</figcaption></figure>")
    parts += [
        "<h2>Chunks</h2>",
        _table(report["chunks"], ["id", "frames", "flicker_mean", "flicker_max", "seam_before", "drift_mean",
                                  "drift_p95", "detail_gain", "flagged_frames", "flags"]),
        "<h2>Seams at chunk boundaries</h2>",
        _table(report["seams"], ["before", "after", "flicker", "score", "ratio", "flagged"],
               flagged=lambda r: r["flagged"]) if report["seams"] else "<p>No chunk boundary in the measured range.</p>",
        "<h2>Frames</h2>",
        "<details open><summary>per-frame table</summary>",
        _table(report["frames"], ["frame", "flicker", "flicker_in", "warp_error", "warp_error_source",
                                  "drift_mean", "drift_p95", "detail_gain", "flags"]),
        "</details>",
        "<h2>How the numbers are made</h2><ul>",
        *[f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in report["metrics"].items()],
        "</ul>",
        f"<p>thresholds: {escape(', '.join(f'{k} {v}' for k, v in report['thresholds'].items()))}</p>",
        f"<p>cinescale-post {escape(report['tool']['cinescale-post'])}, {escape(report['created'])}</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_html(report: dict, folder: str | os.PathLike, images: list[tuple[str, str]],
               json_name: str = "report.json") -> str:
    """Write ``folder/index.html`` atomically; returns its path."""
    from cinescale_post.orchestrator.manifest import atomic_write_text

    path = Path(folder) / "index.html"
    atomic_write_text(path, render_html(report, folder, images, json_name))
    return str(path)
