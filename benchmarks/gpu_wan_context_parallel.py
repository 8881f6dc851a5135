"""GPU (several): one Wan 2.1 1.3B denoising step at 4K on 1 GPU vs N GPUs with
diffusers' context parallelism (``cinescale_post.ops.context_parallel``), with CineScale's
NTK-RoPE and attention temperature on.

Needs a multi-GPU CUDA machine and a torchrun launch (exit 2 without CUDA
unless ``--cpu-selftest``). Builds the Wan 2.1 T2V 1.3B transformer
architecture (30 layers, 12 heads x 128, ffn 8960, text dim 4096) with random
bf16 weights (seeded, then broadcast from rank 0 so every rank holds the same
model), random latents and 512 random text tokens, and times one step = two
forwards (conditional + unconditional, as the backend runs CFG):

1. baseline: rank 0 alone, no parallelism (the other ranks wait);
2. context parallel over all N ranks (Ulysses if 12 heads divide by N, else
   ring; or ``--ulysses U --ring R`` with U * R = N).

Both with NTK-RoPE [1, 25, 25] and the temperature by the reference rule
(2176x3840: 32 640 tokens per frame -> coef 2.0, factor 1.0847).

Reports per-step seconds, peak memory (max over ranks), speed-up and
efficiency. Self-checks (exit 1): outputs finite; the parallel output matches
the baseline (max |diff| <= 3e-2 x max |baseline|, bf16) and is identical on
every rank; every rank's temperature used the WHOLE frame's tokens per frame
and the expected factor; the handles restore the model.

    torchrun --standalone --nproc_per_node 8 benchmarks/gpu_wan_context_parallel.py            # 4K, 21 frames
    torchrun --standalone --nproc_per_node 8 benchmarks/gpu_wan_context_parallel.py --frames 81 --skip-baseline
    torchrun --standalone --nproc_per_node 2 benchmarks/gpu_wan_context_parallel.py --cpu-selftest  # CPU, gloo

Cost (estimate, H100, bf16): attention dominates, ~4 L^2 d flops a layer;
2176x3840 x 21 frames = 6 latent frames = 195 840 tokens -> ~14 s a forward
on one GPU; 81 frames (685 440 tokens, the reference) -> ~170 s a forward,
so ``--skip-baseline`` (and ``--steps 1``) there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins" / "cinescale-wan"))

WAN21_13B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                 out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                 qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
NTK = (1.0, 25.0, 25.0)


def latent_frames(n: int) -> int:
    return (n - 1) // 4 + 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="2176x3840", help="HxW in pixels (multiple of 16)")
    ap.add_argument("--frames", type=int, default=21, help="video frames (4n+1); reference 81")
    ap.add_argument("--ulysses", type=int, default=0)
    ap.add_argument("--ring", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1, help="timed steps (after --warmup)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--skip-baseline", action="store_true", help="no single-GPU run (too slow/large at 81 frames)")
    ap.add_argument("--cpu-selftest", action="store_true",
                    help="the same logic on CPU with the tiny Wan model, 64x64x9, gloo (checks the script)")
    ap.add_argument("--json", default=os.path.join(os.environ["OUT"], "gpu_wan_context_parallel.json")
                    if os.environ.get("OUT") else "")
    a = ap.parse_args(argv)

    import torch
    import torch.distributed as dist

    cfg = WAN21_13B
    if a.cpu_selftest:
        from cinescale_wan.tiny import TINY_WAN_TRANSFORMER_CONFIG

        cfg = dict(TINY_WAN_TRANSFORMER_CONFIG, text_dim=4096)
        a.size, a.frames = "64x64", 9
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print("gpu_wan_context_parallel: no CUDA device; run it with torchrun on a multi-GPU machine "
              "(or --cpu-selftest)", file=sys.stderr)
        return 2
    world = int(os.environ.get("WORLD_SIZE", "1"))
    heads = int(cfg["num_attention_heads"])
    if a.ulysses or a.ring:
        ul, ring = max(1, a.ulysses), max(1, a.ring)
    else:
        ul, ring = (world, 1) if heads % world == 0 else (1, world)
    spec = {k: v for k, v in (("ulysses", ul), ("ring", ring)) if v > 1}

    from diffusers import WanTransformer3DModel

    from cinescale_post.ops.attention_scale import AttentionScaleSpec, apply_attention_scale, attention_scale_factor
    from cinescale_post.ops.handles import HandleGroup
    from cinescale_post.ops.rope import RopeSpec, apply_ntk_rope
    from cinescale_post.ops.context_parallel import enable_context_parallel
    from cinescale_post.ops.distributed import init_distributed

    dev = torch.device("cpu" if a.cpu_selftest else "cuda")
    dtype = torch.float32 if a.cpu_selftest else torch.bfloat16
    cuda = dev.type == "cuda"
    if world > 1:
        if not dist.is_initialized():  # long timeout: the other ranks wait while rank 0 runs the baseline
            from datetime import timedelta

            if cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=timedelta(hours=2))
        dev = init_distributed(spec, dev)
    rank = dist.get_rank() if dist.is_initialized() else 0
    main_rank = rank == 0

    def say(*x):
        if main_rank:
            print(*x, flush=True)

    def sync(all_ranks=True):
        if cuda:
            torch.cuda.synchronize()
        if all_ranks and dist.is_initialized():
            dist.barrier()

    h, w = (int(v) for v in a.size.lower().split("x"))
    f_lat = latent_frames(a.frames)
    tpf = (h // 16) * (w // 16)
    n_tok = f_lat * tpf
    say(f"wan 1.3B{' (tiny selftest)' if a.cpu_selftest else ''}: {h}x{w}x{a.frames} -> {n_tok} tokens "
        f"({tpf}/frame), world {world}, context parallel {spec or 'off'}")

    torch.manual_seed(0)
    with torch.device(dev):
        model = WanTransformer3DModel(**cfg).to(dtype).eval()
    keep = set(model._keep_in_fp32_modules or ())  # as from_pretrained(dtype=bf16) keeps them (rope, norms, ...)
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if keep & set(name.split(".")) and tensor.is_floating_point():
            tensor.data = tensor.data.float()
    if dist.is_initialized():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, 0)
    g = torch.Generator("cpu").manual_seed(1)
    x = torch.randn(1, 16, f_lat, h // 8, w // 8, generator=g).to(dev, dtype)
    ctx = torch.randn(2, 512, cfg["text_dim"], generator=g).to(dev, dtype)
    t = torch.tensor([800.0], device=dev)

    def step():
        outs = []
        for i in range(2):  # CFG: conditional, unconditional
            outs.append(model(hidden_states=x, timestep=t, encoder_hidden_states=ctx[i:i + 1], return_dict=False)[0])
        return outs[0] + 4.0 * (outs[0] - outs[1])  # guidance 5

    def timed(label, all_ranks):
        with HandleGroup(label) as grp, torch.no_grad():
            grp.add(apply_ntk_rope(model, RopeSpec(NTK)))
            temp = grp.add(apply_attention_scale(model, AttentionScaleSpec()))
            for _ in range(a.warmup):
                step()
            sync(all_ranks)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            for _ in range(a.steps):
                out = step()
            sync(all_ranks)
            sec = (time.perf_counter() - t0) / max(1, a.steps)
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
            st = {"tokens": temp.state.tokens, "factor": temp.state.factor}
        return out, sec, peak, st

    checks: dict = {}
    res: dict = {"size": [h, w], "frames": a.frames, "tokens": n_tok, "tokens_per_frame": tpf, "world": world,
                 "context_parallel": spec, "dtype": str(dtype), "steps": a.steps,
                 "device": torch.cuda.get_device_name(dev) if cuda else "cpu"}
    want_factor = attention_scale_factor(tpf)
    base = None
    if not a.skip_baseline:
        if main_rank:
            try:
                base, sec, peak, st = timed("baseline", False)  # rank 0 alone
                res["baseline"] = {"step_s": round(sec, 4), "peak_gib": round(peak, 2), "temperature": st}
                checks["baseline finite"] = bool(torch.isfinite(base).all())
                say(f"  1 GPU : {sec:8.3f} s/step, peak {peak:6.2f} GiB, temperature {st}")
            except torch.OutOfMemoryError as exc:
                res["baseline"] = {"error": f"out of memory: {str(exc)[:200]}"}
                say("  1 GPU : out of memory")
                torch.cuda.empty_cache()
        sync()
    if world > 1:
        procs0 = {k: type(p).__name__ for k, p in model.attn_processors.items()}
        handle = enable_context_parallel([model], spec, device=dev, dtype=dtype)
        try:
            out, sec, peak, st = timed("context parallel", True)
        finally:
            handle.remove()
        checks["handles restore the model"] = (
            model._parallel_config is None
            and {k: type(p).__name__ for k, p in model.attn_processors.items()} == procs0
            and all(getattr(p, "_parallel_config", None) is None for p in model.attn_processors.values()))
        peaks = [None] * world
        states = [None] * world
        dist.all_gather_object(peaks, peak)
        dist.all_gather_object(states, st)
        ref0 = out.clone()
        dist.broadcast(ref0, 0)
        same = torch.tensor([float((out - ref0).abs().max())], device=dev)
        dist.all_reduce(same, op=dist.ReduceOp.MAX)
        checks["identical on every rank"] = float(same) == 0.0
        checks["finite"] = bool(torch.isfinite(out).all())
        checks["temperature from the whole frame on every rank"] = all(
            s["tokens"] == tpf and math.isclose(s["factor"], want_factor, rel_tol=1e-12) for s in states)
        res["parallel"] = {"step_s": round(sec, 4), "peak_gib_max": round(max(peaks), 2) if cuda else None,
                           "peak_gib_per_rank": [round(p, 2) for p in peaks] if cuda else None,
                           "temperature_per_rank": states, "attention_backend": getattr(handle, "backend", None)}
        say(f"  {world} GPUs: {sec:8.3f} s/step, peak {max(peaks):6.2f} GiB (max over ranks), "
            f"backend {handle.backend}, temperature rank 0 {st}")
        if main_rank and base is not None:
            d = float((out.float() - base.float()).abs().max())
            m = float(base.float().abs().max())
            tol = 1e-5 if a.cpu_selftest else 3e-2
            checks[f"parallel == baseline (max|diff| {d:.3g} <= {tol} x {m:.3g})"] = d <= tol * m
            b = res["baseline"]["step_s"]
            res["speedup"] = round(b / sec, 3)
            res["efficiency"] = round(b / sec / world, 3)
            res["max_abs_diff"] = d
            say(f"  speed-up {b / sec:.2f}x on {world} GPUs (efficiency {b / sec / world:.0%}), max|diff| {d:.3g}")
    res["checks"] = checks
    ok = all(checks.values())
    if main_rank:
        for k, v in checks.items():
            print(f"  [{'ok' if v else 'FAIL'}] {k}")
        if a.json:
            Path(a.json).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json).write_text(json.dumps(res, indent=2))
            print(f"  wrote {a.json}")
    ok_t = torch.tensor([1.0 if ok else 0.0], device=dev)
    if dist.is_initialized():
        dist.all_reduce(ok_t, op=dist.ReduceOp.MIN)
        dist.barrier()
    return 0 if float(ok_t) == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
