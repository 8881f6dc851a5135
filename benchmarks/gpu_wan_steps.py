"""GPU: per-step cost of the Wan 2.1 1.3B transformer with and without CineScale's handles.

Needs a CUDA device (self-checking: exits 2 without one). Builds the Wan 2.1
T2V 1.3B transformer architecture (30 layers, 12 heads x 128, ffn 8960, text
dim 4096) with random weights in bf16 directly on the GPU, and times one
denoising *step* = two forwards (conditional + unconditional, as the backend
runs CFG) on random latents and 512 random text tokens:

* 480x832 and 1088x1920 at 81 frames (21 latent frames);
* 2176x3840 at the largest frame count (4n+1) that fits in memory and in the
  time budget, trying the largest first and stepping down on OOM.

Each size runs plain, then with the CineScale handles (NTK-RoPE [1, 20, 20]
(2176x3840: [1, 25, 25]) + the self-attention temperature processors); the
overhead ratio is handles / plain (target <= 1.03). Reports per-step seconds,
peak memory, tokens per second. Checks: outputs finite, handles restore the
model (processors and RoPE buffers), plain and handled outputs differ only
where they should (identical RoPE/temperature => identical output). Exit code
1 if a check fails (a missed target is reported, not an error).

    python benchmarks/gpu_wan_steps.py [--steps 1 --warmup 1 --budget-s 480] [--json $OUT/gpu_wan_steps.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

WAN21_13B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                 out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                 qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
SIZES = [((480, 832), 81), ((1088, 1920), 81)]
UHD = (2176, 3840)
UHD_FRAMES = (81, 61, 41, 21, 9, 5, 1)


def latent_frames(n: int) -> int:
    return (n - 1) // 4 + 1


def tokens(hw, frames) -> int:
    return latent_frames(frames) * (hw[0] // 16) * (hw[1] // 16)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=480.0, help="stop starting new configurations after this")
    ap.add_argument("--cpu-selftest", action="store_true",
                    help="run the script's logic on CPU with a tiny model and tiny sizes (no GPU needed)")
    ap.add_argument("--json", default=os.path.join(os.environ["OUT"], "gpu_wan_steps.json") if os.environ.get("OUT")
                    else "")
    a = ap.parse_args(argv)

    import torch

    global SIZES, UHD, UHD_FRAMES
    cfg = WAN21_13B
    if a.cpu_selftest:
        from cinescale_wan.tiny import TINY_WAN_TRANSFORMER_CONFIG

        cfg = dict(TINY_WAN_TRANSFORMER_CONFIG, text_dim=4096)
        SIZES, UHD, UHD_FRAMES = [((32, 48), 9), ((64, 64), 9)], (128, 128), (17, 9)
    elif not torch.cuda.is_available():
        print("gpu_wan_steps: no CUDA device; this benchmark only runs on a GPU machine", file=sys.stderr)
        return 2
    from diffusers import WanTransformer3DModel

    from cinescale_post.ops.attention_scale import AttentionScaleSpec, apply_attention_scale
    from cinescale_post.ops.handles import HandleGroup
    from cinescale_post.ops.rope import RopeSpec, apply_ntk_rope

    t_start = time.perf_counter()
    dev = torch.device("cpu" if a.cpu_selftest else "cuda")
    dtype = torch.float32 if a.cpu_selftest else torch.bfloat16
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    with torch.device(dev):
        model = WanTransformer3DModel(**cfg).eval()
    # bf16 like from_pretrained(dtype=bf16): the keep-in-fp32 modules (RoPE tables,
    # time embedder, modulation tables, norms) stay float32.
    keep = set(model._keep_in_fp32_modules or ())
    for name, p in model.named_parameters():
        if not keep.intersection(name.split(".")):
            p.data = p.data.to(dtype)
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator(dev).manual_seed(0)
    text = torch.randn(1, 512, 4096, generator=g, device=dev, dtype=dtype)
    neg = torch.randn(1, 512, 4096, generator=g, device=dev, dtype=dtype)
    failures: list[str] = []

    def step(x, t):
        with torch.no_grad():
            c = model(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
            u = model(hidden_states=x, timestep=t, encoder_hidden_states=neg, return_dict=False)[0]
            return u + 5.0 * (c - u)

    def measure(x, t):
        for _ in range(a.warmup):
            out = step(x, t)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(a.steps):
            t0 = time.perf_counter()
            out = step(x, t)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return out, min(times), (torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else 0.0)

    def handles(ntk):
        group = HandleGroup("cinescale")
        group.add(apply_ntk_rope(model, RopeSpec(ntk)))
        group.add(apply_attention_scale(model, AttentionScaleSpec()))
        return group

    def run_config(hw, frames, ntk):
        shape = (1, 16, latent_frames(frames), hw[0] // 8, hw[1] // 8)
        x = torch.randn(shape, generator=g, device=dev, dtype=dtype)
        t = torch.tensor([700.0], device=dev)
        procs = dict(model.attn_processors)
        cos = model.rope.freqs_cos
        plain, t_plain, m_plain = measure(x, t)
        with handles(ntk) as h:
            scaled, t_h, m_h = measure(x, t)
            factor = h.handles[1].state.factor
        if not (torch.isfinite(plain).all() and torch.isfinite(scaled).all()):
            failures.append(f"{hw}x{frames}: non-finite output")
        if model.rope.freqs_cos is not cos or any(model.attn_processors[k] is not v for k, v in procs.items()):
            failures.append(f"{hw}x{frames}: handles did not restore the model")
        if torch.equal(plain, scaled):
            failures.append(f"{hw}x{frames}: NTK-RoPE x{ntk[1]:g} did not change the output")
        n = tokens(hw, frames)
        return {"height": hw[0], "width": hw[1], "frames": frames, "latent_frames": latent_frames(frames),
                "tokens": n, "tokens_per_frame": n // latent_frames(frames), "temperature": round(factor, 5),
                "step_s_plain": round(t_plain, 4), "step_s_handles": round(t_h, 4),
                "overhead_ratio": round(t_h / t_plain, 4), "peak_gib_plain": round(m_plain, 2),
                "peak_gib_handles": round(m_h, 2), "tokens_per_s": round(2 * n / t_h, 1)}

    results = []
    for hw, frames in SIZES:
        results.append(run_config(hw, frames, (1, 20, 20)))
        print(json.dumps(results[-1]), flush=True)
    # 2176x3840: largest frame count that fits memory and the remaining time budget
    ref = results[-1]
    per_token2 = ref["step_s_handles"] / ref["tokens"] ** 2  # attention-dominated scaling
    uhd = None
    tried = []
    for frames in UHD_FRAMES:
        n = tokens(UHD, frames)
        projected = per_token2 * n ** 2 * 2 * (a.warmup + a.steps)  # plain + handles
        left = a.budget_s - (time.perf_counter() - t_start)
        if projected > left:
            tried.append({"frames": frames, "skipped": f"projected {projected:.0f}s > {left:.0f}s left"})
            continue
        try:
            uhd = run_config(UHD, frames, (1, 25, 25))
            break
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            tried.append({"frames": frames, "skipped": "out of memory"})
    if uhd is not None:
        results.append(uhd)
        print(json.dumps(uhd), flush=True)
    worst = max(r["overhead_ratio"] for r in results)
    out = {"benchmark": "gpu_wan_steps", "card": torch.cuda.get_device_name(0) if cuda else "cpu (self-test)",
           "torch": torch.__version__, "params": params, "dtype": str(dtype).replace("torch.", ""), "step": "2 forwards (CFG)", "steps": a.steps, "warmup": a.warmup,
           "command": "python benchmarks/gpu_wan_steps.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "results": results, "uhd_tried": tried, "worst_overhead_ratio": worst, "target": 1.03,
           "target_met": worst <= 1.03, "failures": failures,
           "wall_s": round(time.perf_counter() - t_start, 1)}
    print(json.dumps(out, indent=2))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
