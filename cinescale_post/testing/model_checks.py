"""The conformance checks of a loaded diffusion :class:`~cinescale_post.api.Model`:
tensor shapes and dtypes, every declared patch point applied and removed, and
clean refusals of bad tensors (``model``, ``patches``, ``bad-input`` in
``testing.conformance``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from cinescale_post.contracts.engine import FrameRule
from cinescale_post.testing.conformance_report import ConformanceReport, Fail, clean, expect

@dataclass
class Probe:
    """Inputs shared by the model, patch and bad-input checks."""

    size: tuple[int, int]
    video_frames: int  # pixel frames (1 for image models)
    latent_frames: int
    pixels: Any
    latent_shape: tuple[int, ...]
    x: Any = None
    t: Any = None
    cond: Any = None


def make_probe(b: Any, size: tuple[int, int], rule: FrameRule) -> Probe:
    import torch

    info = b.model_info
    video = int(info.temporal_factor) > 1
    f = rule.largest_at_most(5) if video else 1
    lf = (f - 1) // int(info.temporal_factor) + 1 if video else 1
    shape = tuple(b.latent_shape(size, 1, frames=lf) if video else b.latent_shape(size, 1))
    w, h = size
    g = torch.Generator("cpu").manual_seed(0)
    px_shape = (1, 3, f, h, w) if video else (1, 3, h, w)
    pixels = (torch.rand(px_shape, generator=g) * 2 - 1).to(b.device)
    return Probe(size=size, video_frames=f, latent_frames=lf, pixels=pixels, latent_shape=shape)


def check_model(b: Any, p: Probe, guidance: float) -> str:
    import torch

    info = b.model_info
    lf = int(info.latent_factor)
    expect(lf >= 1 and int(info.size_multiple) % lf == 0,
            f"model_info: size_multiple {info.size_multiple} must be a multiple of latent_factor {lf}")
    expect(all(int(v) % lf == 0 for v in info.base_size), f"model_info: base_size {info.base_size} is not a "
                                                           f"multiple of latent_factor {lf}")
    expect(all(v % int(info.size_multiple) == 0 for v in p.size),
            f"check size {p.size} is not a multiple of size_multiple {info.size_multiple}; pass size=")
    s1, s2 = b.make_scheduler(), b.make_scheduler()
    expect(s1 is not s2, "make_scheduler returned the same object twice (each stage needs its own)")
    s1.set_timesteps(4)
    s2.set_timesteps(2)
    expect(len(s1.timesteps) == 4, "make_scheduler's schedulers share state (set_timesteps on one changed the other)")

    z = b.encode(p.pixels, sample=False)
    expect(tuple(z.shape) == p.latent_shape, f"encode: shape {tuple(z.shape)}, expected latent_shape "
                                              f"{p.latent_shape} for pixels {tuple(p.pixels.shape)}")
    if b.dtype is not None:
        expect(z.dtype == b.dtype, f"encode: dtype {z.dtype}, expected backend.dtype {b.dtype}")
    expect(bool(torch.isfinite(z).all()), "encode: NaN or inf in the latents")
    expect(torch.equal(z, b.encode(p.pixels, sample=False)), "encode(sample=False) is not deterministic")
    za = b.encode(p.pixels, sample=True, generator=torch.Generator("cpu").manual_seed(3))
    zb = b.encode(p.pixels, sample=True, generator=torch.Generator("cpu").manual_seed(3))
    expect(torch.equal(za, zb), "encode(sample=True) differs for two generators with the same seed")

    px = b.decode(z)
    expect(tuple(px.shape) == tuple(p.pixels.shape), f"decode: shape {tuple(px.shape)}, expected "
                                                      f"{tuple(p.pixels.shape)}")
    expect(px.is_floating_point() and bool(torch.isfinite(px).all()), "decode: not finite floating-point pixels")

    sched = b.make_scheduler()
    sched.set_timesteps(4)
    p.t = sched.timesteps[len(sched.timesteps) // 2]
    p.cond = b.condition("a photo of the cat", "blurry", size=p.size, guidance=guidance)
    out = b.predict(z, p.t, p.cond, guidance=guidance)
    expect(tuple(out.shape) == tuple(z.shape), f"predict: shape {tuple(out.shape)}, expected {tuple(z.shape)}")
    expect(out.dtype == z.dtype, f"predict: dtype {out.dtype}, expected the latents' {z.dtype}")
    expect(bool(torch.isfinite(out).all()), "predict: NaN or inf")
    expect(torch.equal(out, b.predict(z, p.t, p.cond, guidance=guidance)), "predict is not deterministic")
    p.x = z
    return (f"latents {tuple(z.shape)} {str(z.dtype).replace('torch.', '')}, pixels {tuple(px.shape)}, "
            f"predict deterministic")


def _snapshot(model: Any) -> dict:
    import torch

    state = {f"p:{k}": v.detach().clone() for k, v in model.named_parameters()}
    state.update({f"b:{k}": v.detach().clone() for k, v in model.named_buffers()})
    state.update({f"c:{k}": (m.dilation, m.padding) for k, m in model.named_modules()
                  if isinstance(m, torch.nn.Conv2d)})
    procs = getattr(model, "attn_processors", None)
    if procs is not None:
        state.update({f"a:{k}": id(v) for k, v in procs.items()})
    return state


def _same_state(a: dict, b: dict) -> list[str]:
    import torch

    diff = [k for k in a.keys() | b.keys() if k not in a or k not in b]
    for k in a.keys() & b.keys():
        x, y = a[k], b[k]
        same = (x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y)) if torch.is_tensor(x) else x == y
        if not same:
            diff.append(k)
    return sorted(diff)


def _patches(b: Any, p: Probe) -> list[tuple[str, Callable[[], Any], str]]:
    """(label, apply() -> handle, effect) for every declared patch point;
    effect is "output" (must change predict), "calls" (handle.state.calls > 0) or
    "restore" (only removal is checked)."""
    from cinescale_post.contracts.stages import StageSpec, resolve_ladder

    points = b.patch_points
    model = b.denoiser
    out: list[tuple[str, Callable[[], Any], str]] = []
    if points.dilate_convs:
        from cinescale_post.ops.dilation import DilationSpec, apply_dilation

        spec = DilationSpec(tuple(points.dilate_convs), 2)
        out.append((f"dilation x2 on {len(spec.names)} convs", lambda: apply_dilation(model, spec), "output"))
    if points.fusion_attention:
        info = b.model_info
        stage = resolve_ladder([StageSpec(size=p.size)], mode="render", base_size=info.base_size, output=p.size,
                               multiple=info.size_multiple)[0]
        latent_hw = tuple(p.latent_shape[-2:])
        for name, fusion in _fusions(b).items():
            # A fusion across the frames of a batch (cross-frame) is a
            # pass-through for the probe's single frame: check removal only.
            effect = "restore" if fusion.group_fusion else "calls"
            out.append((f"fusion {name!r}",
                        lambda f=fusion: f.apply(b, stage, latent_hw=latent_hw, jitter=None), effect))
    if points.freeu:
        from cinescale_post.ops.freeu import FreeUSpec, apply_freeu

        fspec = FreeUSpec(channels=None)  # the stage rule fires at any width (the reference's needs 1280/640)
        out.append(("FreeU (keyed on the decoder stage)", lambda: apply_freeu(model, fspec), "output"))
    for kind, where in points.extra:
        if kind == "rope":
            from cinescale_post.ops.rope import RopeSpec, apply_ntk_rope

            target = model.get_submodule(where) if isinstance(where, str) and where else model
            out.append(("NTK-RoPE x(1,4,4)", lambda m=target: apply_ntk_rope(m, RopeSpec((1.0, 4.0, 4.0))),
                        "output"))
        elif kind == "temperature":
            from cinescale_post.ops.attention_scale import AttentionScaleSpec, apply_attention_scale

            layers = tuple(where) if isinstance(where, (list, tuple)) else (str(where),)
            tspec = AttentionScaleSpec(factor=1.5, layers=layers)
            out.append(("attention temperature x1.5", lambda: apply_attention_scale(model, tspec), "calls"))
        else:
            out.append((f"extra {kind!r}", None, "unknown"))
    return out


def _fusions(b: Any) -> dict:
    """The built-in fusions (scale fusion, global-only, cross-frame)."""
    from cinescale_post.builtin.fusions import FUSIONS
    from cinescale_post.builtin.temporal_fusions import FUSIONS as GROUP_FUSIONS

    return {**FUSIONS, **GROUP_FUSIONS}


def check_patches(b: Any, p: Probe, guidance: float, report: ConformanceReport) -> str:
    expect(p.x is not None, "needs the model check to pass first")
    model = b.denoiser
    before = _snapshot(model)
    base = b.predict(p.x, p.t, p.cond, guidance=guidance)
    done, fails = [], []
    for label, apply, effect in _patches(b, p):
        if apply is None:
            report.warnings.append(f"patch point {label} is not a kind the core knows; not checked")
            continue
        try:
            _check_patch(b, p, guidance, model, before, base, label, apply, effect)
        except Fail as exc:
            fails.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - the backend's (or the op's) crash
            fails.append(f"{label}: raised {type(exc).__name__}: {exc!s:.200}")
        else:
            done.append(label)
    expect(not fails, "; ".join(fails) + (f" (passed: {'; '.join(done)})" if done else ""))
    return "applied and removed exactly: " + ("; ".join(done) if done else "nothing declared")


def _check_patch(b, p, guidance, model, before, base, label, apply, effect) -> None:
    import torch

    with apply() as handle:
        out = b.predict(p.x, p.t, p.cond, guidance=guidance)
    if effect == "output":
        expect(not torch.equal(out, base), f"{label}: applying it does not change predict's output "
                                            "(do the declared names reach the forward pass?)")
    elif effect == "calls" and hasattr(handle, "state") and hasattr(handle.state, "calls"):
        expect(handle.state.calls > 0, f"{label}: its processors were never called during predict "
                                        "(do the declared patterns match the attention the model runs?)")
    after = b.predict(p.x, p.t, p.cond, guidance=guidance)
    expect(torch.equal(after, base), f"{label}: predict differs after the handle was removed "
                                      f"(max |diff| {float((after - base).abs().max()):.3g})")
    changed = _same_state(before, _snapshot(model))
    expect(not changed, f"{label}: removal left the model changed: {', '.join(changed[:5])}")


def _refused(call: Callable[[], Any], what: str, failures: list[str], warn_only: bool = False,
             warnings: list[str] | None = None) -> None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001
        if not clean(exc):
            failures.append(f"{what} raised {type(exc).__name__}: {exc!s:.160} (raise ValueError/TypeError "
                            "with the expected layout)")
        return
    if warn_only and warnings is not None:
        warnings.append(f"{what} was accepted silently")
    else:
        failures.append(f"{what} was accepted (expected a clear ValueError/TypeError)")


def check_bad_input(b: Any, p: Probe, guidance: float, report: ConformanceReport) -> str:
    import torch

    expect(p.x is not None, "needs the model check to pass first")
    px, z = p.pixels, p.x
    c = z.shape[1]
    fails: list[str] = []
    _refused(lambda: b.encode(px[:, :1], sample=False), f"encode of 1-channel pixels {tuple(px[:, :1].shape)}", fails)
    _refused(lambda: b.encode(px[0], sample=False), f"encode of pixels without a batch axis {tuple(px[0].shape)}",
             fails)
    _refused(lambda: b.decode(torch.cat([z, z[:, :1]], 1)), f"decode of {c + 1}-channel latents", fails)
    _refused(lambda: b.predict(torch.cat([z, z[:, :1]], 1), p.t, p.cond, guidance=guidance),
             f"predict of {c + 1}-channel latents", fails)
    _refused(lambda: b.predict(z[0], p.t, p.cond, guidance=guidance),
             f"predict of latents without a batch axis {tuple(z[0].shape)}", fails)
    _refused(lambda: b.encode(((px + 1) * 127.5).to(torch.uint8), sample=False), "encode of uint8 pixels", fails,
             warn_only=True, warnings=report.warnings)
    _refused(lambda: b.predict(z.round().to(torch.int64), p.t, p.cond, guidance=guidance),
             "predict of int64 latents", fails, warn_only=True, warnings=report.warnings)
    expect(not fails, "; ".join(fails))
    return "wrong shapes are refused with a clear error"


def need_probe(probe: list[Probe]) -> Probe:
    expect(bool(probe) and probe[0].x is not None, "needs the model check to pass first")
    return probe[0]
