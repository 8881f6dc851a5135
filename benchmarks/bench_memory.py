"""Memory estimator vs measured peaks (issue 6, part 1).

CPU (default): every case runs in a fresh subprocess (no allocator state from
earlier cases) with ``MALLOC_MMAP_THRESHOLD_=65536`` so large tensors are
mmapped and returned to the OS when freed; the peak is the RSS high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs``) minus the RSS just before
the measured call (model and inputs already resident). That counts what the
process really touched, allocator slack and library scratch included, which is
what runs out on a real machine; ``torch.profiler(profile_memory=True)`` only
sees torch's allocations and sums them per op, so it cannot give a peak.
Weights are excluded on both sides: the comparison is of activations /
working memory, the part the estimator models (weights are exact counts).

GPU (``--device cuda``): full-size SDXL / Wan 1.3B architectures built from
configs with random weights, ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats`` minus the allocated bytes before the call. Needs a
GPU (not available in the session that wrote this).

    python benchmarks/bench_memory.py                 # CPU, tiny models, markdown table
    python benchmarks/bench_memory.py --device cuda   # GPU, full-size architectures
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import cinescale_post.ops.memory_estimate as mm
from cinescale_sdxl.tiny import TINY_UNET_CONFIG, TINY_VAE_CONFIG

SMALL_WAN = dict(patch_size=(1, 2, 2), num_attention_heads=6, attention_head_dim=64, in_channels=16, out_channels=16,
                 text_dim=64, freq_dim=256, ffn_dim=1536, num_layers=2, cross_attn_norm=True,
                 qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280),
                 layers_per_block=2, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
                 cross_attention_dim=2048, addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
SDXL_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                latent_channels=4, sample_size=1024)
WAN_13B = dict(SMALL_WAN, num_attention_heads=12, attention_head_dim=128, text_dim=4096, ffn_dim=8960, num_layers=30)


def estimate(case: dict) -> int:
    kind, e = case["kind"], 4 if case.get("dtype", "float32") == "float32" else 2
    if kind == "unet":
        cfg, px = case["cfg"], case["size"]
        return mm.unet_activation_bytes(cfg, (px // 8, px // 8), 2, e)
    if kind == "vae":
        return mm.vae_bytes((case["size"], case["size"]), case["cfg"]["block_out_channels"], e)
    cfg = case["cfg"]
    n = mm.dit_tokens(case["frames"], (case["size"], case["size"]), patch=cfg["patch_size"])
    return mm.dit_activation_bytes(n, cfg["num_attention_heads"] * cfg["attention_head_dim"],
                                   cfg["num_attention_heads"], cfg["ffn_dim"], 1, e, text_tokens=case["text"])


def child(case: dict) -> int:
    import gc

    import torch

    torch.set_num_threads(1)
    dev = case["device"]
    dt = getattr(torch, case.get("dtype", "float32"))
    torch.manual_seed(0)
    with torch.inference_mode():
        if case["kind"] == "unet":
            from diffusers import UNet2DConditionModel

            m = UNet2DConditionModel(**case["cfg"]).eval().to(dev, dt)
            lat = case["size"] // 8
            x = torch.randn(2, 4, lat, lat, device=dev, dtype=dt)
            cad = case["cfg"]["cross_attention_dim"]
            te = case["cfg"]["projection_class_embeddings_input_dim"] - 6 * case["cfg"]["addition_time_embed_dim"]
            kw = dict(encoder_hidden_states=torch.randn(2, 77, cad, device=dev, dtype=dt),
                      added_cond_kwargs={"text_embeds": torch.randn(2, te, device=dev, dtype=dt),
                                         "time_ids": torch.zeros(2, 6, device=dev, dtype=dt)})
            run = lambda: m(x, 500, return_dict=False, **kw)  # noqa: E731
        elif case["kind"] == "vae":
            from diffusers import AutoencoderKL

            m = AutoencoderKL(**case["cfg"]).eval().to(dev, dt)
            z = torch.randn(1, 4, case["size"] // 8, case["size"] // 8, device=dev, dtype=dt)
            run = lambda: m.decode(z, return_dict=False)  # noqa: E731
        else:
            from diffusers import WanTransformer3DModel

            m = WanTransformer3DModel(**case["cfg"]).eval().to(dev, dt)
            lf, s = (case["frames"] - 1) // 4 + 1, case["size"] // 8
            x = torch.randn(1, 16, lf, s, s, device=dev, dtype=dt)
            enc = torch.randn(1, case["text"], case["cfg"]["text_dim"], device=dev, dtype=dt)
            t = torch.tensor([500.0], device=dev)
            run = lambda: m(hidden_states=x, timestep=t, encoder_hidden_states=enc, return_dict=False)  # noqa: E731
        gc.collect()
        if dev == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            out = run()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - before
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status("VmRSS")
        out = run()
        del out
        return _status("VmHWM") - before


def _status(key: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def cases(device: str) -> list[dict]:
    if device == "cuda":
        return [dict(kind="unet", name="SDXL UNet fp16", cfg=SDXL_UNET, size=s, dtype="float16") for s in (1024, 2048)] \
            + [dict(kind="vae", name="SDXL VAE decode fp16", cfg=SDXL_VAE, size=s, dtype="float16") for s in (1024, 2048)] \
            + [dict(kind="dit", name="Wan 1.3B DiT bf16", cfg=WAN_13B, size=s, frames=f, text=512, dtype="bfloat16")
               for s, f in ((480, 81), (832, 33))]
    unet = {**TINY_UNET_CONFIG, "block_out_channels": list(TINY_UNET_CONFIG["block_out_channels"])}
    return [dict(kind="unet", name="tiny SDXL UNet (CFG batch 2)", cfg=unet, size=s) for s in (512, 1024)] \
        + [dict(kind="vae", name="tiny SDXL VAE decode", cfg={**TINY_VAE_CONFIG,
                "block_out_channels": list(TINY_VAE_CONFIG["block_out_channels"])}, size=s) for s in (512, 1024)] \
        + [dict(kind="dit", name="small Wan DiT (dim 384)", cfg={**SMALL_WAN, "patch_size": [1, 2, 2]},
                size=s, frames=17, text=64) for s in (384, 640)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--child")
    a = ap.parse_args()
    if a.child:
        print(child(json.loads(a.child)))
        return
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    print("| case | size | estimate MiB | measured MiB | estimate / measured |\n|---|---|---|---|---|")
    for c in cases(a.device):
        c["device"] = a.device
        r = subprocess.run([sys.executable, __file__, "--child", json.dumps(c)], capture_output=True, text=True,
                           env=env, check=True)
        meas = int(r.stdout.strip().splitlines()[-1])
        est = estimate(c)
        size = f"{c['size']}px" + (f" x {c['frames']} f" if "frames" in c else "")
        print(f"| {c['name']} | {size} | {est / 2**20:.1f} | {meas / 2**20:.1f} | {est / meas:.2f} |", flush=True)


if __name__ == "__main__":
    main()
