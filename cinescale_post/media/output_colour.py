"""What a master is tagged, and the one pixel conversion that can imply:
SD sources (BT.601) in HD/UHD masters.

An HD/UHD master is BT.709. A PAL/NTSC source is BT.601 (matrix BT.470BG or
SMPTE 170M, primaries EBU 3213 / SMPTE C, transfer SMPTE 170M). Decoded to
R'G'B' the matrix is gone, so writing the master with the BT.709 matrix is
exact and free; the transfer curve of BT.601 *is* BT.709's (same formula), so
it is retagged. The primaries differ slightly (SMPTE C and EBU vs BT.709):
converting them changes pixels, through linear light (BT.1886 display gamma
2.4, so what a monitor shows is preserved) and an exact 3x3 matrix.

Plan keys (``[output]``):

* ``matrix = "auto"`` (default): BT.601 sources written taller than 576 lines
  get the BT.709 matrix (and transfer tag); ``"source"`` keeps the source's.
* ``primaries = "auto"`` (default): an HD/UHD master (taller than 576 lines)
  is BT.709 throughout, as delivery specs want: SD primaries (BT.470BG, SMPTE
  170M/240M) are converted to BT.709, and an image sequence's sRGB transfer
  into a video master is tagged BT.709 (its code values are taken as video,
  unconverted, and the plan says so); an SD master keeps the source's.
  ``"bt709"`` converts SD primaries at any size; ``"source"`` keeps the
  source's primaries and transfer.
"""

from __future__ import annotations

import numpy as np

from cinescale_post.contracts.media import Colour

MATRIX_MODES = ("auto", "source")
PRIMARIES_MODES = ("auto", "source", "bt709")
SD_LINES = 576
SD_MATRICES = (5, 6)  # BT.470BG (PAL), SMPTE 170M (NTSC)
SD_PRIMARIES = (5, 6, 7)  # BT.470BG, SMPTE 170M, SMPTE 240M (same as 170M)
SD_TRC = 6  # SMPTE 170M: the BT.709 OETF under another number
SRGB_TRC = 13  # IEC 61966-2-1, what PNG/TIFF/DPX sequences are read as

# (x, y) of R, G, B and white, per AVCOL_PRI code.
_XY = {
    1: ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06), (0.3127, 0.3290)),
    5: ((0.64, 0.33), (0.29, 0.60), (0.15, 0.06), (0.3127, 0.3290)),
    6: ((0.630, 0.340), (0.310, 0.595), (0.155, 0.070), (0.3127, 0.3290)),
    7: ((0.630, 0.340), (0.310, 0.595), (0.155, 0.070), (0.3127, 0.3290)),
}
_NAMES = {1: "BT.709", 5: "BT.470BG", 6: "SMPTE 170M", 7: "SMPTE 240M"}


def output_colour(source: Colour, *, height: int, matrix: str = "auto", primaries: str = "auto",
                  video: bool = True) -> tuple[Colour, list[str]]:
    """The output's colour tags for a source tagged ``source``, and notes.
    ``video``: the master is a movie (Y'CbCr video), not an image sequence.

    Raises ValueError for an unknown mode (the plan names the key).
    """
    if matrix not in MATRIX_MODES:
        raise ValueError(f"matrix must be one of {', '.join(MATRIX_MODES)}")
    if primaries not in PRIMARIES_MODES:
        raise ValueError(f"primaries must be one of {', '.join(PRIMARIES_MODES)}")
    notes: list[str] = []
    out_m, out_p, out_t = source.matrix, source.primaries, source.trc
    hd = height > SD_LINES
    if matrix == "auto" and hd and source.matrix in SD_MATRICES:
        out_m = 1
        if out_t == SD_TRC:
            out_t = 1
        notes.append(f"SD source (BT.601 matrix) written with the BT.709 matrix for a {height}-line master "
                     "(--set output.matrix=source keeps BT.601)")
    convert = primaries == "bt709" or (primaries == "auto" and hd)
    if convert and source.primaries != 1:
        assumed = " (assumed: the source is untagged)" if source.assumed else ""
        if source.primaries in SD_PRIMARIES:
            why = "output.primaries = bt709" if primaries == "bt709" else f"a {height}-line master is BT.709"
            notes.append(f"primaries converted from {_NAMES[source.primaries]}{assumed} to BT.709 ({why}; "
                         "--set output.primaries=source keeps them)")
            out_p = 1
            if out_t == SD_TRC:
                out_t = 1
        elif primaries == "bt709":
            notes.append(f"output.primaries = bt709 converts SD primaries only; the source's primaries "
                         f"(code {source.primaries}) are kept (use [colour] mode = \"ocio\" for other gamuts)")
    if primaries == "auto" and hd and video and source.trc == SRGB_TRC:
        out_t = 1
        notes.append("the image sequence's sRGB code values are written as BT.709 video, not converted "
                     "(display-referred images taken as video; --set output.primaries=source keeps the sRGB tag)")
    return Colour(out_p, out_t, out_m, source.range, source.assumed), notes


def needs_conversion(source: Colour, output: Colour) -> bool:
    """True when pixels must change (primaries), not just tags."""
    return source.primaries != output.primaries and source.primaries in _XY and output.primaries in _XY


def _rgb_to_xyz(code: int) -> np.ndarray:
    (xr, yr), (xg, yg), (xb, yb), (xw, yw) = _XY[code]
    m = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in ((xr, yr), (xg, yg), (xb, yb))]).T
    white = np.array([xw / yw, 1.0, (1 - xw - yw) / yw])
    return m * np.linalg.solve(m, white)


def primaries_matrix(src: int, dst: int) -> np.ndarray:
    """3x3 linear-light RGB(src) -> RGB(dst) matrix (same white point: no adaptation).

    >>> np.round(primaries_matrix(1, 1), 6).tolist()[0]
    [1.0, 0.0, 0.0]
    """
    return np.linalg.solve(_rgb_to_xyz(dst), _rgb_to_xyz(src))


def _decode(x: np.ndarray, trc: int) -> np.ndarray:
    if trc == 8:  # linear
        return x
    if trc == 13:  # sRGB
        a = np.abs(x)
        return np.sign(x) * np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4)
    return np.sign(x) * np.abs(x) ** 2.4  # BT.1886 (video): what a monitor shows


def _encode(x: np.ndarray, trc: int) -> np.ndarray:
    if trc == 8:
        return x
    if trc == 13:
        a = np.abs(x)
        return np.sign(x) * np.where(a <= 0.0031308, a * 12.92, 1.055 * a ** (1 / 2.4) - 0.055)
    return np.sign(x) * np.abs(x) ** (1 / 2.4)


def convert(rgb: np.ndarray, source: Colour, output: Colour) -> np.ndarray:
    """(H, W, 3) float32 R'G'B' in the source's primaries -> the output's.

    Identity unless :func:`needs_conversion`. Over-range and negative values
    keep their sign (the curves are applied to the magnitude).
    """
    if not needs_conversion(source, output):
        return rgb
    m = primaries_matrix(source.primaries, output.primaries).astype(np.float32)
    lin = _decode(np.asarray(rgb, np.float32), source.trc)
    return _encode(lin @ m.T, output.trc if output.trc != SD_TRC else 1).astype(np.float32)
