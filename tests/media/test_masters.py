"""Masters a finishing house accepts (issue 11, items 1, 2, 3, 7): colour tags
in the bitstream, non-square pixels, alpha, SD sources in HD/UHD masters.

Every output is judged by the ffmpeg binary from imageio-ffmpeg
(``ffjudge``), and by PyAV/OpenEXR where a field is only visible there.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from cinescale_post.interfaces import Colour, Frame

from . import ffjudge
from .test_writers import grey, make_clip, probe_clip, write_movie

# ----------------------------------------------------------------- 1. colour tags in the bitstream

_NAMES = {1: "bt709", 5: "bt470bg", 6: "smpte170m"}


def _prores_header_tags(path) -> tuple[int, int, int]:
    """(primaries, transfer, matrix) bytes of the first ProRes frame header."""
    with av.open(str(path)) as c:
        b = bytes(next(c.demux(c.streams.video[0])))
    assert b[4:8] == b"icpf"
    return b[22], b[23], b[24]


@pytest.mark.parametrize("codec,suffix,size,raw", [
    ("prores_hq", ".mov", (64, 48), None),
    ("prores_4444", ".mov", (64, 48), None),
    ("dnxhr_hqx", ".mov", (256, 144), "dnxhd"),
    ("h264_10", ".mp4", (64, 48), "h264"),
    ("h265_10", ".mp4", (64, 48), "hevc"),
])
@pytest.mark.parametrize("tags", [(1, 1, 1), (6, 6, 6)])
def test_frame_level_colour_tags_equal_the_streams(tmp_path, codec, suffix, size, raw, tags):
    """ffmpeg's frame fields (``-show_frames``) equal the stream's tags; for
    H.26x and DNxHR the packets are first copied into a bare elementary
    stream, so only the bitstream (VUI / frame header) can supply them."""
    info = probe_clip(make_clip(tmp_path / "s.mp4", frames=2, size=size))
    prim, trc, mat = tags
    opts = {"preset": "ultrafast"} if codec.startswith("h26") else {}
    out = write_movie(info, tmp_path / f"o{suffix}", codec, size=size, options=opts,
                      colour=Colour(prim, trc, mat, 1))
    if codec == "dnxhr_hqx":
        mat = 1  # VC-3 signals BT.709 in every frame header; the writer codes BT.709 (see movie_writer)
    want = {"color_primaries": _NAMES[prim], "color_trc": _NAMES[trc], "color_space": _NAMES[mat]}
    for fr in ffjudge.frame_info(out, frames=2):  # through the container
        assert {k: fr[k] for k in want} == want, (codec, fr)
    if raw == "dnxhd":  # DNxHR's header holds the matrix only; primaries/transfer live in 'colr'
        fr = ffjudge.frame_info(out, raw=raw, tmp=tmp_path)[0]
        assert fr["color_space"] == _NAMES[mat], fr
    elif raw:
        for fr in ffjudge.frame_info(out, raw=raw, tmp=tmp_path, frames=2):
            assert {k: fr[k] for k in want} == want, (codec, fr)
    if codec.startswith("prores"):
        assert _prores_header_tags(out) == (prim, trc, mat)
    assert ffjudge.frame_count(out) == 2
