"""LoRA weights for diffusers transformers: safe reading, key conversion from
the original Wan module names, merge or unmerged application (ALGORITHM.md 4.6).

CineScale releases its LoRAs as ``.ckpt`` files with PEFT-style keys on the
original (DiffSynth / Wan) module names, e.g.
``blocks.0.self_attn.q.lora_A.default.weight``; the reference merges them into
the base weights as ``W <- W + 1.0 * (B @ A)`` (no alpha / rank factor).

* :func:`read_lora_file` reads ``.safetensors`` with safetensors and
  ``.ckpt``/``.pt``/``.pth`` **only** with ``torch.load(weights_only=True)``; a
  file holding anything but a flat mapping of names to tensors is refused
  (:class:`~cinescale_post.contracts.errors.WeightsError`).
* :func:`lora_format` tells the three key formats apart, and
  :func:`convert_lora_state_dict` maps each to diffusers
  ``WanTransformer3DModel`` module names. The update's factor follows the
  format's own definition:

  ==============  ===========================================  =====================
  format          keys                                         factor
  ==============  ===========================================  =====================
  ``diffsynth``   ``lora_A``/``lora_B`` on original Wan names   1 (reference; any
                  (CineScale, DiffSynth-Studio)                 ``.alpha`` is ignored)
  ``diffusers``   ``lora_A``/``lora_B`` on diffusers names      ``alpha / rank`` when
                  (PEFT / diffusers ``save_lora_weights``)      ``.alpha`` is given, else 1
  ``kohya``       ``lora_down``/``lora_up`` (+ ``.alpha``),      ``alpha / rank``; no
                  dotted or ``lora_unet_blocks_0_...`` names     alpha: 1 (alpha = rank)
  ==============  ===========================================  =====================

  Tensors that are not LoRA weights (training metadata, text-encoder LoRAs
  ``lora_te*``, DoRA scales, ...) are ignored with a warning naming them.
* :func:`apply_lora` merges (reference, scale 1.0) or hooks the low-rank
  branch in unmerged; either way it returns a removable handle that restores
  the model bit-exactly.

Example::

    >>> wan_to_diffusers_name("blocks.3.self_attn.o")
    'blocks.3.attn1.to_out.0'
    >>> kohya_to_dotted("lora_unet_blocks_3_cross_attn_k_img")
    'blocks.3.cross_attn.k_img'
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from cinescale_post.contracts.errors import WeightsError
from cinescale_post.ops.handles import Handle, torch_hooks

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth")
SAFE_SUFFIXES = (".safetensors",)
PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "transformer.", "model.",
            "pipe.dit.", "dit.")

# original Wan / DiffSynth module name -> diffusers WanTransformer3DModel name
_RENAMES: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"^blocks\.(\d+)\.self_attn\.q$", r"blocks.\1.attn1.to_q"),
    (r"^blocks\.(\d+)\.self_attn\.k$", r"blocks.\1.attn1.to_k"),
    (r"^blocks\.(\d+)\.self_attn\.v$", r"blocks.\1.attn1.to_v"),
    (r"^blocks\.(\d+)\.self_attn\.o$", r"blocks.\1.attn1.to_out.0"),
    (r"^blocks\.(\d+)\.cross_attn\.q$", r"blocks.\1.attn2.to_q"),
    (r"^blocks\.(\d+)\.cross_attn\.k$", r"blocks.\1.attn2.to_k"),
    (r"^blocks\.(\d+)\.cross_attn\.v$", r"blocks.\1.attn2.to_v"),
    (r"^blocks\.(\d+)\.cross_attn\.o$", r"blocks.\1.attn2.to_out.0"),
    (r"^blocks\.(\d+)\.cross_attn\.k_img$", r"blocks.\1.attn2.add_k_proj"),
    (r"^blocks\.(\d+)\.cross_attn\.v_img$", r"blocks.\1.attn2.add_v_proj"),
    (r"^blocks\.(\d+)\.ffn\.0$", r"blocks.\1.ffn.net.0.proj"),
    (r"^blocks\.(\d+)\.ffn\.2$", r"blocks.\1.ffn.net.2"),
    (r"^text_embedding\.0$", r"condition_embedder.text_embedder.linear_1"),
    (r"^text_embedding\.2$", r"condition_embedder.text_embedder.linear_2"),
    (r"^time_embedding\.0$", r"condition_embedder.time_embedder.linear_1"),
    (r"^time_embedding\.2$", r"condition_embedder.time_embedder.linear_2"),
    (r"^time_projection\.1$", r"condition_embedder.time_proj"),
    (r"^head\.head$", r"proj_out"),
    (r"^img_emb\.proj\.1$", r"condition_embedder.image_embedder.ff.net.0.proj"),
    (r"^img_emb\.proj\.3$", r"condition_embedder.image_embedder.ff.net.2"),
))
_LORA_KEY = re.compile(r"^(?P<mod>.+?)\.(?P<kind>lora_A|lora_B|lora_down|lora_up)(?:\.(?P<adapter>[^.]+))?\.weight$")
_ALPHA_KEY = re.compile(r"^(?P<mod>.+)\.alpha$")
FORMATS = ("diffsynth", "diffusers", "kohya")
# kohya / musubi-tuner flatten module names with underscores: the Wan parts that
# themselves hold an underscore (or a digit) are restored from this list.
_KOHYA_PARTS = re.compile(r"^(?:blocks_(?P<block>\d+)_)?(?P<rest>.+)$")
_KOHYA_TAILS = (
    ("self_attn_k_img", "self_attn.k_img"), ("self_attn_v_img", "self_attn.v_img"),
    ("cross_attn_k_img", "cross_attn.k_img"), ("cross_attn_v_img", "cross_attn.v_img"),
    ("self_attn_", "self_attn."), ("cross_attn_", "cross_attn."), ("ffn_", "ffn."),
    ("text_embedding_", "text_embedding."), ("time_embedding_", "time_embedding."),
    ("time_projection_", "time_projection."), ("head_head", "head.head"), ("img_emb_proj_", "img_emb.proj."),
)
_UNRELATED_PREFIXES = ("lora_te", "lora_te1_", "lora_te2_", "text_encoder.", "text_encoder_2.")


def wan_to_diffusers_name(name: str) -> str:
    """Original Wan module name -> diffusers name (names already in diffusers
    form, or unknown, come back unchanged)."""
    for pat, rep in _RENAMES:
        if pat.match(name):
            return pat.sub(rep, name)
    return name


def kohya_to_dotted(name: str) -> str:
    """A kohya / musubi-tuner flattened module name (``lora_unet_blocks_0_self_attn_q``)
    -> the dotted original Wan name (``blocks.0.self_attn.q``); other names unchanged."""
    if not name.startswith("lora_unet_"):
        return name
    m = _KOHYA_PARTS.match(name[len("lora_unet_"):])
    rest = m.group("rest")
    for flat, dotted in _KOHYA_TAILS:
        if rest.startswith(flat):
            rest = dotted + rest[len(flat):]
            break
    return (f"blocks.{m.group('block')}." if m.group("block") is not None else "") + rest


def read_lora_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A LoRA file's tensors, on CPU. ``.safetensors`` via safetensors;
    ``.ckpt``/``.pt``/``.pth`` via ``torch.load(weights_only=True)`` only.
    Anything else, or a file holding a non-tensor object, raises WeightsError."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"LoRA file {p} not found", fix="give a local .safetensors or .ckpt LoRA file")
    suffix = p.suffix.lower()
    if suffix in SAFE_SUFFIXES:
        from safetensors.torch import load_file

        try:
            data: Any = load_file(str(p), device="cpu")
        except Exception as exc:  # noqa: BLE001 - any parse failure is a weights problem
            raise WeightsError(f"cannot read LoRA {p}: {type(exc).__name__}: {exc}") from exc
    elif suffix in PICKLE_SUFFIXES:
        try:
            data = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - UnpicklingError for code objects, etc.
            raise WeightsError(f"refusing LoRA {p}: it is not a plain tensor checkpoint "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                               fix="only tensors are loaded (torch.load weights_only=True); convert it to "
                                   ".safetensors") from exc
    else:
        raise WeightsError(f"LoRA {p.name}: unsupported file type {suffix!r}",
                           fix=f"use one of {', '.join(SAFE_SUFFIXES + PICKLE_SUFFIXES)}")
    if not isinstance(data, Mapping):
        raise WeightsError(f"refusing LoRA {p}: it holds a {type(data).__name__}, not a mapping of tensors")
    bad = [k for k, v in data.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        shown = ", ".join(f"{k!r} ({type(data[k]).__name__})" for k in bad[:3])
        raise WeightsError(f"refusing LoRA {p}: {len(bad)} entr{'y is' if len(bad) == 1 else 'ies are'} not "
                           f"tensors: {shown}", fix="a LoRA file must hold only named tensors")
    return dict(data)


@dataclass
class LoraPair:
    """One low-rank update of a linear layer: ``delta = factor * B @ A``.
    A: (r, in), B: (out, r); ``alpha``: the alpha the file's format honours
    (None: factor 1, as the reference and alpha = rank); ``format``: the key
    format it came from (:data:`FORMATS`)."""

    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None = None
    format: str = "diffsynth"

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    def factor(self, scale: float = 1.0) -> float:
        return float(scale) * (self.alpha / self.rank if self.alpha is not None else 1.0)

    def delta(self, scale: float = 1.0) -> torch.Tensor:
        """(out, in) float32."""
        return (self.up.float() @ self.down.float()) * self.factor(scale)


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def _module_of(key: str) -> tuple[str, str] | None:
    """``(stripped module name, kind)`` of a LoRA weight / alpha key, or None."""
    k = _strip(key)
    m = _LORA_KEY.match(k)
    if m:
        return _strip(m.group("mod")), m.group("kind")
    m = _ALPHA_KEY.match(k)
    if m:
        return _strip(m.group("mod")), "alpha"
    return None


def lora_format(state: Mapping[str, Any]) -> str:
    """The key format of a LoRA state dict: ``"kohya"`` (``lora_down``/``lora_up``
    keys or ``lora_unet_`` names), ``"diffusers"`` (``lora_A``/``lora_B`` on
    diffusers module names) or ``"diffsynth"`` (``lora_A``/``lora_B`` on the
    original Wan names: CineScale's releases).

    >>> lora_format({"blocks.0.self_attn.q.lora_A.default.weight": 0})
    'diffsynth'
    >>> lora_format({"transformer.blocks.0.attn1.to_q.lora_A.weight": 0})
    'diffusers'
    """
    kinds, renamed, any_lora = set(), False, False
    for key in state:
        if _strip(key).startswith(_UNRELATED_PREFIXES):
            continue
        mk = _module_of(key)
        if mk is None:
            continue
        mod, kind = mk
        kinds.add(kind)
        if kind == "alpha":
            continue
        any_lora = True
        if mod.startswith("lora_unet_"):
            return "kohya"
        renamed = renamed or wan_to_diffusers_name(mod) != mod
    if "lora_down" in kinds or "lora_up" in kinds:
        return "kohya"
    if any_lora and not renamed:
        return "diffusers"
    return "diffsynth"


def _warn_ignored(what: str, keys: list[str]) -> None:
    if keys:
        shown = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
        log.warning("LoRA: ignoring %d %s: %s", len(keys), what, shown)


def convert_lora_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, LoraPair]:
    """Group a LoRA state dict into ``{diffusers module name: LoraPair}``.

    Accepts the three formats of :func:`lora_format` (PEFT ``lora_A``/``lora_B``
    with or without an adapter name such as ``default``; kohya ``lora_down``/
    ``lora_up``), on original Wan, kohya-flattened or diffusers names. Alpha is
    honoured as the format defines it (module docstring); ``diffsynth`` files'
    alphas and every non-LoRA tensor are ignored with a warning naming them.
    """
    fmt = lora_format(state)
    downs: dict[str, torch.Tensor] = {}
    ups: dict[str, torch.Tensor] = {}
    alphas: dict[str, float] = {}
    unrelated, ignored_alpha = [], []
    for key, t in state.items():
        mk = None if _strip(key).startswith(_UNRELATED_PREFIXES) else _module_of(key)
        if mk is None:
            unrelated.append(key)
            continue
        raw, kind = mk
        mod = wan_to_diffusers_name(kohya_to_dotted(raw))
        if kind == "alpha":
            if fmt == "diffsynth":  # the reference loader never reads alpha
                ignored_alpha.append(key)
            else:
                alphas[mod] = float(t.float().reshape(-1)[0])
            continue
        target = downs if kind in ("lora_A", "lora_down") else ups
        if mod in target:
            raise WeightsError(f"LoRA key {key!r}: a second {kind} for module {mod}",
                               fix="the file mixes several adapters; keep one")
        target[mod] = t
    _warn_ignored("tensor(s) that are not LoRA weights of the denoiser", unrelated)
    _warn_ignored("alpha value(s): CineScale/DiffSynth LoRAs merge B @ A unscaled, as the reference does",
                  ignored_alpha)
    if set(downs) != set(ups):
        odd = sorted(set(downs) ^ set(ups))
        raise WeightsError(f"LoRA: modules without both halves: {odd[:5]}")
    out = {}
    for mod in sorted(downs):
        a, b = downs[mod], ups[mod]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise WeightsError(f"LoRA {mod}: shapes A {tuple(a.shape)} / B {tuple(b.shape)} are not (r, in) / (out, r)")
        out[mod] = LoraPair(a, b, alphas.get(mod), fmt)
    if not out:
        shown = f" (it holds {', '.join(list(state)[:3])}{', ...' if len(state) > 3 else ''})" if state else ""
        raise WeightsError(f"LoRA: the file holds no LoRA weights{shown}",
                           fix="give a LoRA with lora_A/lora_B (or lora_down/lora_up) weights for this model")
    return out


def load_lora(path: str | Path) -> dict[str, LoraPair]:
    """:func:`read_lora_file` + :func:`convert_lora_state_dict`."""
    return convert_lora_state_dict(read_lora_file(path))


def _targets(model: Any, pairs: Mapping[str, LoraPair]) -> list[tuple[str, torch.nn.Linear, LoraPair]]:
    mods = dict(model.named_modules())
    out, missing = [], []
    for name, pair in pairs.items():
        mod = mods.get(name)
        if not isinstance(mod, torch.nn.Linear):
            missing.append(name)
            continue
        if tuple(mod.weight.shape) != (pair.up.shape[0], pair.down.shape[1]):
            raise WeightsError(f"LoRA {name}: update is {(pair.up.shape[0], pair.down.shape[1])} but the layer "
                               f"weight is {tuple(mod.weight.shape)}",
                               fix="the LoRA was trained for another model size (e.g. 14B vs 1.3B)")
        out.append((name, mod, pair))
    if missing:
        raise WeightsError(f"LoRA: {len(missing)} module(s) not found as linear layers in "
                           f"{type(model).__name__}, e.g. {missing[:3]}",
                           fix="check the LoRA matches this model family and variant")
    return out


@dataclass(frozen=True)
class LoraSpec:
    """``path`` of the LoRA file, ``scale`` (reference 1.0), ``merge``
    (reference: merged into the weights; False keeps a removable branch)."""

    path: str
    scale: float = 1.0
    merge: bool = True

    def __post_init__(self):
        if not isinstance(self.scale, (int, float)) or isinstance(self.scale, bool):
            raise ValueError(f"LoRA scale must be a number, got {self.scale!r}")


def apply_lora(model: Any, pairs: Mapping[str, LoraPair], *, scale: float = 1.0, merge: bool = True) -> Handle:
    """Apply converted LoRA ``pairs`` to ``model``.

    ``merge=True``: ``W <- W + scale * factor * B @ A`` computed in float32 and
    cast to the weight dtype (the originals are kept on CPU and copied back by
    ``remove()``, so restoring is bit-exact). ``merge=False``: a forward hook
    per layer adds ``scale * factor * B(A x)``; ``remove()`` drops the hooks.
    """
    targets = _targets(model, pairs)
    if merge:
        saved: list[tuple[torch.nn.Linear, torch.Tensor]] = []

        def restore() -> None:
            with torch.no_grad():
                for mod, w in reversed(saved):
                    mod.weight.copy_(w.to(mod.weight.device))

        try:
            with torch.no_grad():
                for _, mod, pair in targets:
                    w = mod.weight
                    saved.append((mod, w.detach().to("cpu", copy=True)))
                    delta = pair.delta(scale).to(w.device)
                    w.copy_((w.float() + delta).to(w.dtype))
        except BaseException:
            restore()
            raise
        return Handle(f"lora merged x{scale:g} into {len(targets)} layer(s)", restore)

    hooks = []
    for _, mod, pair in targets:
        a = pair.down.to(mod.weight.device, mod.weight.dtype)
        b = pair.up.to(mod.weight.device, mod.weight.dtype)
        f = pair.factor(scale)

        def hook(module, args, output, _a=a, _b=b, _f=f):
            x = args[0]
            return output + torch.nn.functional.linear(torch.nn.functional.linear(x.to(_a.dtype), _a), _b) * _f

        hooks.append(mod.register_forward_hook(hook))
    return torch_hooks(hooks, f"lora unmerged x{scale:g} on {len(targets)} layer(s)")


__all__ = ["FORMATS", "LoraPair", "LoraSpec", "apply_lora", "convert_lora_state_dict", "kohya_to_dotted",
           "load_lora", "lora_format", "read_lora_file", "wan_to_diffusers_name"]
