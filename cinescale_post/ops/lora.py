"""LoRA weights for diffusers transformers: safe reading, key conversion from
the original Wan module names, merge or unmerged application (ALGORITHM.md 4.6).

CineScale releases its LoRAs as ``.ckpt`` files with PEFT-style keys on the
original (DiffSynth / Wan) module names, e.g.
``blocks.0.self_attn.q.lora_A.default.weight``; the reference merges them into
the base weights as ``W <- W + 1.0 * (B @ A)`` (no alpha / rank factor).

* :func:`read_lora_file` reads ``.safetensors`` with safetensors and
  ``.ckpt``/``.pt``/``.pth`` **only** with ``torch.load(weights_only=True)``; a
  file holding anything but a flat mapping of names to tensors is refused
  (:class:`~cinescale_post.errors.WeightsError`).
* :func:`convert_lora_state_dict` maps original Wan names (and diffusers /
  PEFT names, with or without ``transformer.`` / ``diffusion_model.`` /
  ``base_model.model.`` prefixes, ``lora_A/lora_B`` or ``lora_down/lora_up``,
  optional ``.alpha``) to diffusers ``WanTransformer3DModel`` module names.
* :func:`apply_lora` merges (reference, scale 1.0) or hooks the low-rank
  branch in unmerged; either way it returns a removable handle that restores
  the model bit-exactly.

Example::

    >>> wan_to_diffusers_name("blocks.3.self_attn.o")
    'blocks.3.attn1.to_out.0'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import WeightsError
from .handles import Handle, torch_hooks

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


def wan_to_diffusers_name(name: str) -> str:
    """Original Wan module name -> diffusers name (names already in diffusers
    form, or unknown, come back unchanged)."""
    for pat, rep in _RENAMES:
        if pat.match(name):
            return pat.sub(rep, name)
    return name


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
    A: (r, in), B: (out, r); ``alpha`` from the file (None: factor 1, reference)."""

    down: torch.Tensor
    up: torch.Tensor
    alpha: float | None = None

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


def convert_lora_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, LoraPair]:
    """Group a LoRA state dict into ``{diffusers module name: LoraPair}``.

    Accepts PEFT ``lora_A``/``lora_B`` (optionally with an adapter name such as
    ``default``) and kohya-style ``lora_down``/``lora_up`` with ``.alpha``, on
    original Wan or diffusers names. Unknown key forms raise WeightsError.
    """
    downs: dict[str, torch.Tensor] = {}
    ups: dict[str, torch.Tensor] = {}
    alphas: dict[str, float] = {}
    unknown = []
    for key, t in state.items():
        k = _strip(key)
        m = _LORA_KEY.match(k)
        if m:
            mod = wan_to_diffusers_name(_strip(m.group("mod")))
            target = downs if m.group("kind") in ("lora_A", "lora_down") else ups
            if mod in target:
                raise WeightsError(f"LoRA key {key!r}: a second {m.group('kind')} for module {mod}",
                                   fix="the file mixes several adapters; keep one")
            target[mod] = t
            continue
        m = _ALPHA_KEY.match(k)
        if m:
            alphas[wan_to_diffusers_name(_strip(m.group("mod")))] = float(t.float().reshape(-1)[0])
            continue
        unknown.append(key)
    if unknown:
        raise WeightsError(f"LoRA: {len(unknown)} key(s) are not LoRA weights, e.g. {unknown[:3]}",
                           fix="only lora_A/lora_B (or lora_down/lora_up) and .alpha keys are supported")
    if set(downs) != set(ups):
        odd = sorted(set(downs) ^ set(ups))
        raise WeightsError(f"LoRA: modules without both halves: {odd[:5]}")
    out = {}
    for mod in sorted(downs):
        a, b = downs[mod], ups[mod]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise WeightsError(f"LoRA {mod}: shapes A {tuple(a.shape)} / B {tuple(b.shape)} are not (r, in) / (out, r)")
        out[mod] = LoraPair(a, b, alphas.get(mod))
    if not out:
        raise WeightsError("LoRA: the file holds no LoRA weights")
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


__all__ = ["LoraPair", "LoraSpec", "apply_lora", "convert_lora_state_dict", "load_lora", "read_lora_file",
           "wan_to_diffusers_name"]
