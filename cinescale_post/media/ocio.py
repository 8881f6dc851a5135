"""OpenColorIO colour management: what the model sees vs what the plate is.

Diffusion models are trained on display-referred, sRGB-like images in
[0, 1], and every real backend clamps to that range before its VAE. Camera
log and scene-linear EXR plates are not that (reference/MEDIA_IO.md section
6): an ACEScg highlight of 16.0 fed straight in comes back as 1.0. With
``[colour] mode = "ocio"`` a frame takes this chain, and nothing clips:

1. ``input -> working`` with the pinned OCIO config (exact matrices and log
   curves): the plate in a scene-linear space with the model's primaries
   (``Linear Rec.709 (sRGB)``).
2. **shaper** (``srgb-shoulder``): per channel, the sRGB curve up to
   ``knee`` (linear 0.8 by default) and above it a rational shoulder that
   meets it with the same slope and tends to 1.0 as linear goes to infinity.
   Mid-grey (0.18) reaches the model as 0.46, as in any sRGB picture. Both
   pieces have closed-form inverses (float64 here). The model is given the
   plate clipped to its range, ``[0, inverse(highlight_blend[1])]`` (linear
   ~2.37 by default): above that the inverse is too steep for a model's
   error to mean anything.
3. the backend renders the display-referred copy (it may clamp: nothing the
   chain needs is in what it clamps).
4. inverse shaper on the model's output (clipped to the same range).
5. **carry and blend**, at the output size: ``out = plate + m * (model -
   in_range)``, with ``plate`` the working-space plate and ``in_range`` the
   copy the model was given, both enlarged conventionally (bilinear: no
   overshoot, so a flat highlight keeps its value). What the model cannot
   represent (``plate - in_range``: highlights, negatives, colours outside
   the working gamut) is thus carried around it and added back, and only
   the model's *change* is applied. ``m`` is 1 where the plate is in the
   model's range and falls to 0, smoothly (smoothstep), across
   ``highlight_blend`` (display codes of the brightest channel, default
   0.97..0.99, linear ~1.2..2.37) and across ``negative_blend`` (the darkest
   channel, 0..-0.02 linear): a 16.0 highlight or a -0.5 pixel comes back as
   the plate had it, mid-grey carries the model's change, and there is no
   seam at the range boundary. With no model in between the chain is exact
   to float32 rounding (benchmarks/bench_ocio.py).
6. ``working -> output`` (``output`` defaults to ``input``) with the same
   config.

The chain is written into the plan (``colour.chain``) and so into the
manifest; EXR output carries the output space's chromaticities and its OCIO
name in ``colorspace``.

The config is pinned by its full versioned URI: the ``ocio://default`` and
``-latest`` aliases move between OCIO releases (ACES 1.3 in 2.2, ACES 2.1 in
2.6). ``config = "$OCIO"`` uses the studio's ``$OCIO`` config instead.
Colour spaces are found by name, alias or role (``lin_ap1``,
``scene_linear``), and by the names Nuke's default config uses (``linear``,
``AlexaV3LogC``); a misspelt name gets the closest matches in the error.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field

import numpy as np

from cinescale_post.contracts.errors import PlanError

DEFAULT_CONFIG = "ocio://studio-config-v4.0.0_aces-v2.0_ocio-v2.5"
DEFAULT_WORKING = "Linear Rec.709 (sRGB)"
SHAPERS = ("srgb-shoulder",)
MODES = ("video", "ocio")
DEFAULTS = {"shaper": "srgb-shoulder", "knee": 0.8, "highlight_blend": (0.97, 0.99), "negative_blend": 0.02}
KEYS = ("mode", "config", "input", "output", "working") + tuple(DEFAULTS)

# Names Nuke's and Resolve's own (non-OCIO) colour management use, to the
# studio config's spaces. Only unambiguous ones: Nuke's "SLog3" names a curve
# without a gamut, so it is left to the error's suggestions.
HOST_NAMES = {
    "linear": "Linear Rec.709 (sRGB)",
    "srgb": "sRGB Encoded Rec.709 (sRGB)",
    "rec709": "Camera Rec.709",
    "alexav3logc": "ARRI LogC3 (EI800)",
    "arri logc4": "ARRI LogC4",
    "acescg": "ACEScg",
    "acescct": "ACEScct",
    "aces2065-1": "ACES2065-1",
    "aces": "ACES2065-1",
}

# Published primaries and white (xR, yR, xG, yG, xB, yB, xW, yW) of the
# gamuts the studio config's spaces are named after. ACES uses its own white
# (~D60), which a conversion through the config's D65 reference cannot give.
_ACES_WHITE = (0.32168, 0.33767)
_D65 = (0.3127, 0.3290)
GAMUTS = {
    "AP0": (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.0770) + _ACES_WHITE,
    "AP1": (0.713, 0.293, 0.165, 0.830, 0.128, 0.044) + _ACES_WHITE,
    "Rec.709": (0.64, 0.33, 0.30, 0.60, 0.15, 0.06) + _D65,
    "Rec.2020": (0.708, 0.292, 0.170, 0.797, 0.131, 0.046) + _D65,
    "P3-D65": (0.680, 0.320, 0.265, 0.690, 0.150, 0.060) + _D65,
    "ARRI Wide Gamut 3": (0.684, 0.313, 0.221, 0.848, 0.0861, -0.102) + _D65,
    "ARRI Wide Gamut 4": (0.7347, 0.2653, 0.1424, 0.8576, 0.0991, -0.0308) + _D65,
    "S-Gamut3.Cine": (0.766, 0.275, 0.225, 0.800, 0.089, -0.087) + _D65,
    "S-Gamut3": (0.730, 0.280, 0.140, 0.855, 0.100, -0.050) + _D65,
    "REDWideGamutRGB": (0.780308, 0.304253, 0.121595, 1.493994, 0.095612, -0.084589) + _D65,
    "V-Gamut": (0.730, 0.280, 0.165, 0.840, 0.100, -0.030) + _D65,
}
# Colour-space name fragment -> gamut, first match wins (".Cine" before the plain one).
_GAMUT_OF = (
    ("Venice", None), ("ACES2065-1", "AP0"), ("ADX", "AP0"), ("ACEScg", "AP1"), ("ACEScct", "AP1"),
    ("ACEScc", "AP1"), ("AP1", "AP1"), ("LogC3", "ARRI Wide Gamut 3"), ("Wide Gamut 3", "ARRI Wide Gamut 3"),
    ("LogC4", "ARRI Wide Gamut 4"), ("Wide Gamut 4", "ARRI Wide Gamut 4"), ("S-Gamut3.Cine", "S-Gamut3.Cine"),
    ("S-Gamut3", "S-Gamut3"), ("REDWideGamutRGB", "REDWideGamutRGB"), ("V-Gamut", "V-Gamut"),
    ("Rec.2020", "Rec.2020"), ("P3-D65", "P3-D65"), ("Rec.709", "Rec.709"), ("sRGB", "Rec.709"),
)


def load_config(uri: str):
    """An OCIO config from a pinned ``ocio://`` URI, a file, or ``$OCIO``."""
    import PyOpenColorIO as ocio

    if uri in ("$OCIO", "env"):
        path = os.environ.get("OCIO")
        if not path:
            raise PlanError('colour.config = "$OCIO" but $OCIO is not set',
                            fix=f"set $OCIO to the studio config, or give a pinned URI such as {DEFAULT_CONFIG}")
        uri = path
    if uri.startswith("ocio://") and (uri.endswith("default") or uri.endswith("-latest")):
        raise PlanError(f"colour.config = {uri!r} changes meaning between OCIO releases",
                        fix=f"pin the full versioned URI, e.g. {DEFAULT_CONFIG}")
    try:
        return ocio.Config.CreateFromFile(uri)
    except Exception as exc:  # OCIO raises its own Exception type
        names = ", ".join(f"ocio://{n[0]}" for n in ocio.BuiltinConfigRegistry().getBuiltinConfigs())
        raise PlanError(f"colour.config = {uri!r} cannot be loaded ({exc})",
                        fix=f"give a config file path or one of the built-in URIs: {names}") from exc


def _all_names(config) -> dict[str, str]:
    """Every name a colour space answers to (lower case) -> its canonical name."""
    out: dict[str, str] = {}
    for cs in config.getColorSpaces():
        out[cs.getName().lower()] = cs.getName()
        for alias in cs.getAliases():
            out.setdefault(alias.lower(), cs.getName())
    return out


def resolve_space(config, name: str, *, what: str, uri: str) -> str:
    """The canonical name of colour space ``name`` (a name, alias, role, or a
    host's own name such as Nuke's ``default (linear)``); PlanError naming
    ``what`` and the closest matches otherwise."""
    raw = str(name or "").strip()
    if not raw:
        raise PlanError(f"colour.{what} is not set",
                        fix=f"name the plate's colour space, e.g. --set colour.{what}=ACEScg "
                            "(any colour space name, alias or role of the config)")
    candidates = [raw]
    low = raw.lower()
    if low.startswith("default (") and low.endswith(")"):  # Nuke: "default (linear)"
        candidates.append(raw[9:-1])
    for cand in list(candidates):
        if cand.lower() in HOST_NAMES:
            candidates.append(HOST_NAMES[cand.lower()])
        if "/" in cand:  # a menu path such as "Utility/Linear Rec.709 (sRGB)"
            candidates.append(cand.rsplit("/", 1)[1])
    names = _all_names(config)
    for cand in candidates:
        canon = config.getCanonicalName(cand)
        if canon:
            return canon
        if cand.lower() in names:
            return names[cand.lower()]
    close = difflib.get_close_matches(low, list(names), n=4, cutoff=0.5)
    suggestions = list(dict.fromkeys(names[c] for c in close))
    hint = (f"did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions
            else "names include ACEScg, ACEScct, ACES2065-1, ARRI LogC3 (EI800), ARRI LogC4, "
                 "S-Log3 S-Gamut3.Cine, Log3G10 REDWideGamutRGB, Linear Rec.709 (sRGB), sRGB Encoded Rec.709 (sRGB)")
    raise PlanError(f"colour.{what} = {raw!r} is not a colour space of {uri}", fix=hint)


def chromaticities(config, name: str) -> tuple[float, ...] | None:
    """EXR ``chromaticities`` (xR, yR, xG, yG, xB, yB, xW, yW) of colour
    space ``name``: the published primaries of the gamut it is named after
    (AP0/AP1 with the ACES white for ACES spaces); for another scene-linear
    space, derived through the config from its conversion to Linear
    Rec.709; None when neither applies (a log space of an unlisted gamut)."""
    for fragment, gamut in _GAMUT_OF:
        if fragment in name:
            if gamut:
                return GAMUTS[gamut]
            break
    cs = config.getColorSpace(name)
    if cs is None or cs.getEncoding() != "scene-linear" or cs.isData():
        return None
    proc = config.getProcessor(name, DEFAULT_WORKING).getDefaultCPUProcessor()
    rgb709_to_xyz = np.array([[0.4123908, 0.35758434, 0.18048079],
                              [0.21263901, 0.71516868, 0.07219232],
                              [0.01933082, 0.11919478, 0.95053215]])
    xy: list[float] = []
    for v in ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]):
        a = np.array(v, np.float32)
        proc.applyRGB(a)
        xyz = rgb709_to_xyz @ a.astype(np.float64)
        xy += [float(xyz[0] / xyz.sum()), float(xyz[1] / xyz.sum())]
    return tuple(round(v, 5) for v in xy)


def validate(spec: dict, origin: str) -> dict:
    """Normalise the ``[colour]`` table; raise PlanError naming key and value."""
    mode = spec.get("mode", "video")
    if mode not in MODES:
        raise PlanError(f"preset {origin}: colour.mode = {mode!r} is not allowed", fix="use video or ocio")
    if mode == "video":
        return {"mode": "video"}
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        extra = (" (colour.model was replaced by colour.working + colour.shaper: the model now sees the "
                 "working space through an invertible shaper)" if "model" in unknown else "")
        raise PlanError(f"preset {origin}: colour.{unknown[0]} is not a colour key{extra}",
                        fix=f"keys of [colour] are: {', '.join(KEYS)}")
    uri = spec.get("config") or DEFAULT_CONFIG
    config = load_config(uri)
    out: dict = {"mode": "ocio", "config": uri}
    out["input"] = resolve_space(config, spec.get("input", ""), what="input", uri=uri)
    out["output"] = resolve_space(config, spec.get("output") or out["input"], what="output", uri=uri)
    out["working"] = resolve_space(config, spec.get("working") or DEFAULT_WORKING, what="working", uri=uri)
    if config.getColorSpace(out["working"]).getEncoding() != "scene-linear":
        raise PlanError(f"preset {origin}: colour.working = {out['working']!r} is not scene-linear",
                        fix=f"use a linear space with the model's primaries, e.g. {DEFAULT_WORKING!r}")
    opts = {**DEFAULTS, **{k: spec[k] for k in DEFAULTS if k in spec}}
    if opts["shaper"] not in SHAPERS:
        raise PlanError(f"preset {origin}: colour.shaper = {opts['shaper']!r} is not allowed",
                        fix=f"use one of {', '.join(SHAPERS)}")
    knee = opts["knee"]
    if isinstance(knee, bool) or not isinstance(knee, (int, float)) or not 0.1 <= knee <= 0.95:
        raise PlanError(f"preset {origin}: colour.knee = {knee!r} is out of range",
                        fix="a linear value between 0.1 and 0.95 (default 0.8)")
    hb = opts["highlight_blend"]
    shaper = Shaper(float(knee))
    if (not isinstance(hb, (list, tuple)) or len(hb) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in hb)
            or not shaper.top < hb[0] < hb[1] < 1.0):
        raise PlanError(f"preset {origin}: colour.highlight_blend = {hb!r} is not allowed",
                        fix=f"two display codes [start, end] with {shaper.top:.3f} < start < end < 1.0 "
                            "(default [0.97, 0.99])")
    nb = opts["negative_blend"]
    if isinstance(nb, bool) or not isinstance(nb, (int, float)) or not 0 < nb <= 1:
        raise PlanError(f"preset {origin}: colour.negative_blend = {nb!r} is out of range",
                        fix="a linear amount in (0, 1] (default 0.02)")
    out.update(shaper=opts["shaper"], knee=float(knee), highlight_blend=[float(hb[0]), float(hb[1])],
               negative_blend=float(nb))
    lo, hi = (float(shaper.inverse(np.float64(v))) for v in hb)
    out["chain"] = [
        f"{out['input']} -> {out['working']} (OCIO, {uri})",
        f"shaper {out['shaper']}: sRGB curve to linear {knee}, rational shoulder above; negatives to 0",
        "backend (display-referred [0, 1])",
        f"inverse shaper (model output clipped to [0, {hb[1]}])",
        f"blend with the plate enlarged bilinearly: model where in range; plate where the brightest "
        f"channel exceeds linear {lo:.3g}..{hi:.3g} or the darkest is below 0..-{nb}",
        f"{out['working']} -> {out['output']} (OCIO)",
    ]
    chroma = chromaticities(config, out["output"])
    out["chromaticities"] = list(chroma) if chroma else None
    out["output_encoding"] = config.getColorSpace(out["output"]).getEncoding()
    return out


def output_note(colour: dict, kind: str) -> str | None:
    """A plan warning when an OCIO render's output space cannot live in its
    output: a movie codec holds [0, 1], so scene-linear values above 1.0 and
    negatives would clip there."""
    if colour.get("mode") != "ocio" or kind != "movie" or colour.get("output_encoding") != "scene-linear":
        return None
    return (f"colour.output = {colour['output']!r} is scene-linear but the output is a movie, which holds "
            "[0, 1] only: values above 1.0 and negatives will clip. Write EXR (--set output.codec=exr with a "
            "#### pattern), or a log space (--set colour.output=ACEScct)")


@dataclass(frozen=True)
class Shaper:
    """The ``srgb-shoulder`` curve, [0, inf) -> [0, 1), and its exact inverse.

    ``y = srgb(x)`` for ``x <= knee``; above, ``y = 1 - a / (1 + (x - knee) / s)``
    with ``a = 1 - srgb(knee)`` and ``s = a / srgb'(knee)``: continuous with the
    same slope at the knee, monotonic, and never reaching 1.0.
    """

    knee: float = 0.8

    @property
    def top(self) -> float:
        """Display code of the knee."""
        return float(_srgb(np.float64(self.knee)))

    def _coeffs(self) -> tuple[float, float]:
        k = self.knee
        slope = 1.055 / 2.4 * k ** (1 / 2.4 - 1)
        a = 1.0 - self.top
        return a, a / slope

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Linear (>= 0) -> display code in [0, 1); any shape, float64 inside."""
        x = np.maximum(np.asarray(x, np.float64), 0.0)
        a, s = self._coeffs()
        shoulder = 1.0 - a / (1.0 + np.maximum(x - self.knee, 0.0) / s)
        return np.where(x <= self.knee, _srgb(np.minimum(x, self.knee)), shoulder)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """Display code in [0, 1) -> linear; any shape, float64."""
        y = np.clip(np.asarray(y, np.float64), 0.0, 1.0 - 1e-12)
        a, s = self._coeffs()
        top = self.top
        shoulder = self.knee + s * (a / (1.0 - np.maximum(y, top)) - 1.0)
        return np.where(y <= top, _srgb_inv(np.minimum(y, top)), shoulder)


def _srgb(x):
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(np.maximum(x, 0.0031308), 1 / 2.4) - 0.055)


def _srgb_inv(y):
    return np.where(y <= 0.04045, y / 12.92, np.power((np.maximum(y, 0.04045) + 0.055) / 1.055, 2.4))


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """0 below e0, 1 above e1, C1-smooth between (any shape)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def resize_bilinear(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float32 -> (size[1], size[0], 3), pixel centres aligned;
    bilinear never overshoots, so a carried highlight keeps its value."""
    import cv2

    h, w = rgb.shape[:2]
    if (w, h) == tuple(size):
        return np.asarray(rgb, np.float32)
    return cv2.resize(np.asarray(rgb, np.float32), tuple(size), interpolation=cv2.INTER_LINEAR)


def _is_linear(proc) -> bool:
    """True when an OCIO processor is matrices only, without offsets."""
    import PyOpenColorIO as ocio

    group = proc.getOptimizedProcessor(ocio.OPTIMIZATION_DEFAULT).createGroupTransform()
    return all(isinstance(t, ocio.MatrixTransform) and not any(t.getOffset()) for t in group)


@dataclass
class Carry:
    """What a frame's model copy lost: the plate, as read and in the working space."""

    plate: np.ndarray  # (H, W, 3) float32, source size, input space
    working: np.ndarray  # (H, W, 3) float32, source size, working space


@dataclass
class Converter:
    """The chain of the module docstring for one render (CPU, numpy + OCIO)."""

    spec: dict
    shaper: Shaper = field(init=False)

    def __post_init__(self):
        config = load_config(self.spec["config"])
        s = self.spec
        to_w = config.getProcessor(s["input"], s["working"])
        from_w = config.getProcessor(s["working"], s["output"])
        self._to_working = to_w.getDefaultCPUProcessor()
        self._from_working = from_w.getDefaultCPUProcessor()
        # Linear plates (ACEScg, ACES2065-1, linear camera gamuts) written back
        # linear: enlarge the plate itself and add the model's change through
        # the matrix, so the plate's values never take a float32 matrix round
        # trip (1e-5 absolute on a 100.0 neighbour channel).
        self._linear = _is_linear(to_w) and _is_linear(from_w)
        self._in_to_out = (None if s["input"] == s["output"] else
                           config.getProcessor(s["input"], s["output"]).getDefaultCPUProcessor())
        self.shaper = Shaper(float(s.get("knee", DEFAULTS["knee"])))
        hb = s.get("highlight_blend", DEFAULTS["highlight_blend"])
        self._hi = tuple(float(self.shaper.inverse(np.float64(v))) for v in hb)
        self._clip = float(hb[1])
        self._neg = float(s.get("negative_blend", DEFAULTS["negative_blend"]))

    @staticmethod
    def _apply(proc, rgb: np.ndarray) -> np.ndarray:
        out = np.array(rgb, dtype=np.float32, order="C", copy=True)
        proc.applyRGB(out)
        return out

    def to_working(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) float32 in the plate's space -> the working space (a copy)."""
        return self._apply(self._to_working, rgb)

    def to_model(self, rgb: np.ndarray) -> tuple[np.ndarray, Carry]:
        """(H, W, 3) plate -> ((H, W, 3) float32 display-referred in [0, 1), the carry)."""
        lin = self.to_working(rgb)
        plate = np.asarray(rgb, np.float32)
        return self.shaper.forward(self._in_range(lin)).astype(np.float32), Carry(plate, lin)

    def _in_range(self, lin: np.ndarray) -> np.ndarray:
        """The part of a working-space plate the model is given: [0, inverse(highlight_blend[1])]."""
        return np.clip(np.nan_to_num(lin, nan=0.0), 0.0, self._hi[1]).astype(np.float32)

    def to_display(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) plate -> what the model sees (for QC: the same transform)."""
        return self.to_model(rgb)[0]

    def mask(self, working: np.ndarray) -> np.ndarray:
        """(H, W, 3) working-space plate -> (H, W, 1) float32 weight of the
        model: 1 in range, 0 where it cannot represent the pixel."""
        w = np.nan_to_num(working, nan=-1e30, posinf=1e30, neginf=-1e30)
        hi = 1.0 - smoothstep(self._hi[0], self._hi[1], w.max(axis=-1))
        lo = smoothstep(-self._neg, 0.0, w.min(axis=-1))
        return (hi * lo).astype(np.float32)[..., None]

    def from_model(self, rgb: np.ndarray, carry: Carry) -> np.ndarray:
        """(h, w, 3) model output (any size) + the frame's carry -> (h, w, 3)
        float32 in the output space.

        ``plate + m * (model - in_range)``, all enlarged to (h, w): the
        model's change where it can represent the plate, the plate itself
        (values the model never saw included) elsewhere."""
        h, w = rgb.shape[:2]
        back = self.shaper.inverse(np.minimum(np.asarray(rgb, np.float64), self._clip)).astype(np.float32)
        working = resize_bilinear(carry.working, (w, h))
        change = self.mask(working) * (back - resize_bilinear(self._in_range(carry.working), (w, h)))
        if self._linear:
            plate = resize_bilinear(carry.plate, (w, h))
            if self._in_to_out is not None:
                plate = self._apply(self._in_to_out, plate)
            return plate + self._apply(self._from_working, change)
        if self._in_to_out is None:  # a log plate written back in its own encoding
            # plate + (f(working + change) - f(working)): where the model has no
            # say (change 0) the plate's own code values, not a float32 trip.
            plate = resize_bilinear(carry.plate, (w, h))
            return plate + (self._apply(self._from_working, working + change)
                            - self._apply(self._from_working, working))
        return self._apply(self._from_working, working + change)

    def round_trip(self, rgb: np.ndarray) -> np.ndarray:
        """plate -> model copy -> back, with no model in between (for tests
        and benchmarks: the chain alone)."""
        shown, carry = self.to_model(rgb)
        return self.from_model(shown, carry)
