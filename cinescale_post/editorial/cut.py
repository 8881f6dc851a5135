"""An editor's cut in, a relinked cut out: OpenTimelineIO and its adapter plugins.

Formats by suffix, each read and written by the adapter OTIO registers for it
(``pip install 'cinescale-post[editorial]'`` installs them): ``.otio``
(OTIO itself), ``.edl`` (CMX 3600, ``otio-cmx3600-adapter``), ``.xml`` (FCP 7
XML, what Premiere and Resolve export: ``otio-fcp-adapter``), ``.fcpxml``
(``otio-fcpx-xml-adapter``) and ``.aaf`` (``otio-aaf-adapter``). No parser of
our own: a format whose adapter is missing is a usage error naming the package.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

from cinescale_post.contracts.errors import InputError, UsageError

#: suffix -> (OTIO adapter name, the package that provides it)
FORMATS = {
    ".otio": ("otio_json", "opentimelineio"),
    ".edl": ("cmx_3600", "otio-cmx3600-adapter"),
    ".xml": ("fcp_xml", "otio-fcp-adapter"),
    ".fcpxml": ("fcpx_xml", "otio-fcpx-xml-adapter"),
    ".aaf": ("AAF", "otio-aaf-adapter"),
}
#: adapters that need the cut's frame rate (CMX 3600 stores none)
_NEEDS_RATE = {"cmx_3600"}


def adapter_for(path: str | os.PathLike) -> str:
    """The OTIO adapter that reads and writes ``path``, or a UsageError (exit 2)."""
    import opentimelineio as otio

    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: {suffix or 'no suffix'} is not an editorial format conform reads",
                         fix="export the cut as .otio, .edl (CMX 3600), .xml (FCP 7), .fcpxml or .aaf")
    name, package = FORMATS[suffix]
    if name not in {a.name for a in otio.plugins.ActiveManifest().adapters}:
        raise UsageError(f"{path}: reading {suffix} needs the OpenTimelineIO adapter {name!r}, which is not "
                         "installed", fix=f"pip install {package} (or pip install 'cinescale-post[editorial]')")
    return name


def read_cut(path: str | os.PathLike, rate: Fraction | None = None):
    """The cut as an ``otio.schema.Timeline``; ``rate``: the frame rate of an EDL."""
    import opentimelineio as otio

    name = adapter_for(path)
    if not Path(path).is_file():
        raise InputError(f"{path}: no such cut", fix="pass the path of an exported timeline")
    kwargs = {"rate": float(rate or 24)} if name in _NEEDS_RATE else {}
    try:
        result = otio.adapters.read_from_file(str(path), adapter_name=name, **kwargs)
    except Exception as exc:  # noqa: BLE001 - an adapter's parse error names no file
        raise InputError(f"{path}: the {name} adapter cannot read it ({type(exc).__name__}: {exc})",
                         fix="export the cut again from the editing application") from exc
    if isinstance(result, otio.schema.SerializableCollection):
        timelines = list(result.find_children(descended_from_type=otio.schema.Timeline))
        if not timelines:
            raise InputError(f"{path}: no timeline in it", fix="export a sequence or a timeline")
        result = timelines[0]
    return result


def write_cut(timeline, path: str | os.PathLike) -> str:
    """Write ``timeline`` with the adapter of ``path``'s suffix, atomically."""
    import opentimelineio as otio

    name = adapter_for(path)
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        otio.adapters.write_to_file(timeline, str(tmp), adapter_name=name)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return str(path)


__all__ = ["FORMATS", "adapter_for", "read_cut", "write_cut"]
