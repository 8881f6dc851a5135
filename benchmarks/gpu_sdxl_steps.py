"""GPU benchmark: per-step time and peak memory of the full-size SDXL UNet
(random weights, fp16, CFG batch 2) for plain direct inference vs our
upscaled FreeScale stage (scale fusion on all 70 self-attention layers,
restrained dilation, FreeU), and a projected total for the ladder
1024 -> 2048 -> 4096 vs direct inference at 4096^2.

No weights are needed: the UNet is built from SDXL-base-1.0's config with
random weights (identical compute and memory). VAE time is left out of the
totals unless ``--vae`` is given (then the real-architecture VAE, fp32, tiled,
is timed for the decode/encode between stages and the final decode).

    python benchmarks/gpu_sdxl_steps.py --out gpu_sdxl_steps.json            # ~3-6 min on one H100
    python benchmarks/gpu_sdxl_steps.py --sizes 1024 2048 --steps 2          # quicker
    python benchmarks/gpu_sdxl_steps.py --with-8k                            # + one 8192^2 step, memory

Self-checks (exit code 1 if one fails): outputs finite with the expected
shape, every self-attention layer went through scale fusion, dilation and
processors restored afterwards (a plain step after our steps is bit-identical
to the one before), 8192^2 peak memory < 80 GB when measured.
Goal (issue 4): ladder total within 1.2x of direct 4096^2 (paper: 1.14x).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280), layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn", attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10),
    use_linear_projection=True, cross_attention_dim=2048, addition_embed_type="text_time",
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, norm_num_groups=32,
)
SDXL_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                latent_channels=4, norm_num_groups=32, sample_size=1024, scaling_factor=0.13025, force_upcast=True)
N, R, TAU = 50, 15, 35  # reference: 50 steps, restart int(0.3*50), dilate_tau 35


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--steps", type=int, default=3, help="timed steps per configuration (after 1 warm-up)")
    ap.add_argument("--blur", default="3d", choices=["3d", "3d-separable", "spatial"])
    ap.add_argument("--fast-mode", action="store_true")
    ap.add_argument("--with-8k", action="store_true")
    ap.add_argument("--vae", action="store_true")
    ap.add_argument("--out", type=str, default=None)
    ap.add_argument("--cpu-check", action="store_true",
                    help="run the same code on CPU with the tiny SDXL-layout UNet (base 64): checks the script")
    a = ap.parse_args()

    import torch
    from diffusers import UNet2DConditionModel

    from cinescale_post.ops.dilation import DilationSpec, apply_dilation, select_convs
    from cinescale_sdxl.options import SDXL_DILATED_CONVS
    from cinescale_post.ops.freeu import FreeUSpec, apply_freeu
    from cinescale_post.ops.fusion import FusionState, apply_scale_fusion

    cpu = a.cpu_check
    if not cpu and not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU (--cpu-check runs a tiny CPU dry run)", file=sys.stderr)
        return 2
    dev = torch.device("cpu" if cpu else "cuda")
    dt = torch.float32 if cpu else torch.float16
    base, base_latent = (64, 8) if cpu else (1024, 128)
    if cpu:
        from cinescale_sdxl.tiny import TINY_UNET_CONFIG

        config, ctx_dim, pooled_dim, freeu_ch = TINY_UNET_CONFIG, 64, 32, None
        a.sizes = [base * (s // 1024) for s in a.sizes]
        card = "cpu (tiny UNet dry run)"
    else:
        config, ctx_dim, pooled_dim, freeu_ch = SDXL_UNET, 2048, 1280, None
        torch.backends.cuda.matmul.allow_tf32 = True
        card = torch.cuda.get_device_name(0)

    def sync():
        if not cpu:
            torch.cuda.synchronize()

    def peak_gb():
        return 0.0 if cpu else torch.cuda.max_memory_allocated() / 2**30

    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(dev):
        unet = UNet2DConditionModel(**config)
    unet = unet.to(dt).eval()
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in unet.parameters())
    g = torch.Generator(dev).manual_seed(0)
    cond = dict(encoder_hidden_states=torch.randn(2, 77, ctx_dim, device=dev, dtype=dt, generator=g),
                added_cond_kwargs={"text_embeds": torch.randn(2, pooled_dim, device=dev, dtype=dt, generator=g),
                                   "time_ids": torch.tensor([[base, base, 0, 0, base, base]] * 2, device=dev,
                                                            dtype=dt)})
    attn1 = [n for n in unet.attn_processors if ".attn1." in n]
    failures: list[str] = []
    results: dict = {"card": card, "torch": torch.__version__, "params": params, "build_s": round(build_s, 1),
                     "blur": a.blur, "fast_mode": a.fast_mode, "self_attention_layers": len(attn1), "configs": {}}

    def step_once(x):
        with torch.inference_mode():
            return unet(torch.cat([x, x]), torch.tensor(681.0, device=dev), **cond, return_dict=False)[0]

    def measure(size, mode):
        """mode: direct | base (FreeU) | ours (fusion + FreeU) | ours-dilated (+ dilation)."""
        lat = torch.randn(1, 4, size // 8, size // 8, device=dev, dtype=dt, generator=g)
        state = FusionState(target_hw=(size, size), latent_hw=(size // 8, size // 8), base=base,
                            base_latent=base_latent, fast_mode=a.fast_mode, blur=a.blur,
                            jitter_fn=random.Random(0).randint)
        sync()
        if not cpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        handles = []
        try:
            if mode != "direct":
                handles.append(apply_freeu(unet, FreeUSpec(channels=freeu_ch)))
            if mode.startswith("ours"):
                handles.append(apply_scale_fusion(unet, ("*transformer_blocks.*.attn1.processor",), state))
            if mode == "ours-dilated":
                handles.append(apply_dilation(unet, DilationSpec(SDXL_DILATED_CONVS, max(1, size // base))))
            out = step_once(lat)  # warm-up
            calls0 = state.calls
            sync()
            t = time.perf_counter()
            for _ in range(a.steps):
                out = step_once(lat)
            sync()
            per = (time.perf_counter() - t) / a.steps
        except torch.cuda.OutOfMemoryError:
            out = None
            if not cpu:
                torch.cuda.empty_cache()
            return {"oom": True, "peak_gb": round(peak_gb(), 2)}
        finally:
            for h in reversed(handles):
                h.remove()
        peak = peak_gb()
        ok_shape = tuple(out.shape) == (2, 4, size // 8, size // 8)
        finite = bool(torch.isfinite(out).all())
        if not ok_shape:
            failures.append(f"{mode} {size}: output shape {tuple(out.shape)}")
        if not finite:
            failures.append(f"{mode} {size}: non-finite output")
        if mode.startswith("ours") and state.calls - calls0 != a.steps * len(attn1):
            failures.append(f"{mode} {size}: fusion ran {state.calls - calls0} times, expected {a.steps * len(attn1)}")
        return {"step_s": round(per, 4), "peak_gb": round(peak, 2), "finite": finite}

    probe = torch.randn(1, 4, base // 8, base // 8, device=dev, dtype=dt, generator=torch.Generator(dev).manual_seed(1))
    before = step_once(probe).clone()
    for size in a.sizes:
        modes = ["direct"] + (["base"] if size == min(a.sizes) else []) + (
            ["ours", "ours-dilated"] if size > base else [])
        results["configs"][size] = {m: measure(size, m) for m in modes}
        print(json.dumps({size: results["configs"][size]}), flush=True)
    if a.with_8k:
        s8 = 8 * base
        results["configs"][s8] = {"ours-dilated": measure(s8, "ours-dilated")}
        print(json.dumps({s8: results["configs"][s8]}), flush=True)
        r8 = results["configs"][s8]["ours-dilated"]
        results["fits_80gb_8k"] = (not r8.get("oom")) and r8["peak_gb"] < 80
        if not results["fits_80gb_8k"]:
            failures.append(f"8192^2 step peak {r8.get('peak_gb')} GB (oom={r8.get('oom', False)}) >= 80 GB")
    after = step_once(probe)
    if not torch.equal(before, after):
        failures.append("model not restored: a plain step differs after the patched runs")
    convs = select_convs(unet, SDXL_DILATED_CONVS)
    if any(c.dilation != (1, 1) for _, c in convs) or any(type(p).__name__ != type(unet.attn_processors[attn1[0]]).__name__
                                                          for p in unet.attn_processors.values()):
        failures.append("dilation or processors left patched")

    # projection (UNet only unless --vae): base stage 50 plain steps (+FreeU), each upscaled stage
    # 20 dilated + 15 undilated steps; direct = 50 plain steps at the largest size.
    c = results["configs"]
    sizes = sorted(s for s in c if s in a.sizes)
    if len(sizes) >= 2 and all("step_s" in c[s].get("direct", {}) for s in sizes):
        top = sizes[-1]
        base_t = c[sizes[0]].get("base", c[sizes[0]]["direct"])["step_s"]
        ladder = N * base_t
        for s in sizes[1:]:
            ladder += (TAU - R) * c[s]["ours-dilated"]["step_s"] + (N - TAU) * c[s]["ours"]["step_s"]
        direct = N * c[top]["direct"]["step_s"]
        results["projection"] = {"ladder": [f"{s}^2" for s in sizes], "ladder_unet_s": round(ladder, 1),
                                 f"direct_{top}_unet_s": round(direct, 1), "ratio": round(ladder / direct, 3),
                                 "goal": 1.2, "paper": 1.14}
    if a.vae and not cpu:
        results["vae"] = vae_times(torch, dev, sizes)
        if "projection" in results:
            v = results["vae"]
            # between stages: decode at stage k, encode at stage k+1; then the final decode
            extra = sum(v[sizes[k]]["decode_s"] + v[sizes[k + 1]]["encode_s"] for k in range(len(sizes) - 1))
            extra += v[sizes[-1]]["decode_s"]
            results["projection"]["ladder_with_vae_s"] = round(results["projection"]["ladder_unet_s"] + extra, 1)
            results["projection"]["direct_with_vae_s"] = round(
                results["projection"][f"direct_{sizes[-1]}_unet_s"] + v[sizes[-1]]["decode_s"], 1)
            results["projection"]["ratio_with_vae"] = round(
                results["projection"]["ladder_with_vae_s"] / results["projection"]["direct_with_vae_s"], 3)
    results["failures"] = failures
    text = json.dumps(results, indent=1, default=str)
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    print("SELF-CHECK", "FAILED: " + "; ".join(failures) if failures else "OK")
    return 1 if failures else 0


def vae_times(torch, dev, sizes):
    """Real-architecture SDXL VAE (random weights, fp32 as force_upcast asks), tiled like the reference."""
    from diffusers import AutoencoderKL

    with torch.device(dev):
        vae = AutoencoderKL(**SDXL_VAE).eval()
    vae.enable_tiling()
    out = {}
    for s in sizes:
        z = torch.randn(1, 4, s // 8, s // 8, device=dev)
        x = torch.rand(1, 3, s, s, device=dev) * 2 - 1
        with torch.inference_mode():
            torch.cuda.synchronize(); t = time.perf_counter()
            vae.decode(z / 0.13025)
            torch.cuda.synchronize(); d = time.perf_counter() - t
            t = time.perf_counter()
            vae.encode(x).latent_dist.sample()
            torch.cuda.synchronize(); e = time.perf_counter() - t
        out[s] = {"decode_s": round(d, 2), "encode_s": round(e, 2)}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
