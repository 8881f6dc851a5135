"""CPU: overhead of the Wan backend's cascade loop vs the plain diffusers WanPipeline.

Same tiny random Wan model (4 layers, 4 heads x 24), same work: text encoding,
one text-to-video stage of N steps with CFG 5 on the flow-matching Euler
scheduler, VAE decode. Timed three ways, min of R runs each, one thread:

* ``diffusers``  — ``WanPipeline(prompt, ...)``;
* ``cascade``    — the core render driver on the Wan adapter's model with NTK-RoPE x20
  and the attention-temperature processors installed (the real CineScale stage);
* ``cascade-bare`` — the same loop with both handles off (loop overhead only).

Ratios are cascade / diffusers (target <= 1.05). A 2-stage run (base + upscaled
stage) is reported for reference, without a diffusers counterpart.

    python benchmarks/bench_wan_cascade.py [--frames 17 --size 128 --steps 10 --repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)

    import torch
    from diffusers import WanPipeline

    from cinescale_post.testing import adapter_driver
    from cinescale_wan.backend import WanAdapter, WanModel, latent_frames
    from cinescale_wan.options import WanOptions
    from cinescale_wan.tiny import build_tiny_wan

    torch.set_num_threads(a.threads)
    comps = build_tiny_wan(0, transformer_config=dict(num_layers=4, num_attention_heads=4, attention_head_dim=24,
                                                      ffn_dim=96))
    pipe = WanPipeline(**comps)
    pipe.set_progress_bar_config(disable=True)
    prompt, neg, msl = "a brown owl in the snow", "blurry", 64
    n, s = a.frames, a.size

    def run_diffusers():
        from cinescale_wan.scheduler import make_flow_scheduler

        pipe.scheduler = make_flow_scheduler(7.0)
        return pipe(prompt, negative_prompt=neg, height=s, width=s, num_frames=n, num_inference_steps=a.steps,
                    guidance_scale=5.0, max_sequence_length=msl, generator=torch.Generator().manual_seed(0),
                    output_type="pt").frames

    driver = adapter_driver(WanAdapter())
    opts = WanOptions(max_sequence_length=msl, vae_tiling=False)

    def cascade(stages):
        model = WanModel(pipe, dtype=torch.float32, options=opts)  # load time, not timed
        driver.use(model, stages=stages, options={"num_frames": n})

        def run():
            driver._cond_cache.clear()  # encode the prompt every run, like the pipeline
            lad = driver.ladder("generate", (s, s))
            f = latent_frames(n)
            with torch.inference_mode():
                cond = driver.condition(prompt, neg, size=lad[0].size, guidance=5.0)
                res = driver.run_cascade(lad, cond, driver.video_sources(0, lad, f), frames=f)[-1]
                return model.decode(res.latent)
        return run

    one = ({"size": [s, s], "steps": a.steps, "shift": 7.0},)
    bare = ({"size": [s, s], "steps": a.steps, "shift": 7.0, "ntk": [1, 1, 1], "attention_scale": False},)
    two = ({"size": [s // 2, s // 2], "steps": a.steps, "shift": 7.0},
           {"size": [s, s], "steps": a.steps, "shift": 11.0, "restart": 0.3})

    def timed(fn):
        fn()  # warm-up
        best, cpu = float("inf"), float("inf")
        for _ in range(a.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            best = min(best, time.perf_counter() - t0)
            cpu = min(cpu, time.process_time() - c0)
        return round(best, 4), round(cpu, 4)

    res = {
        "diffusers": timed(run_diffusers),
        "cascade": timed(cascade(one)),
        "cascade-bare": timed(cascade(bare)),
        "cascade-2-stage": timed(cascade(two)),
    }
    base = res["diffusers"][0]
    out = {
        "benchmark": "bench_wan_cascade", "frames": n, "size": s, "steps": a.steps, "repeats": a.repeats,
        "threads": a.threads, "tokens": latent_frames(n) * (s // 16) ** 2,
        "params": sum(p.numel() for p in pipe.transformer.parameters()),
        "seconds": {k: v[0] for k, v in res.items()}, "cpu_seconds": {k: v[1] for k, v in res.items()},
        "ratio_cascade": round(res["cascade"][0] / base, 4),
        "ratio_cascade_bare": round(res["cascade-bare"][0] / base, 4),
        "ratio_cascade_cpu": round(res["cascade"][1] / res["diffusers"][1], 4),
        "target": 1.05, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(out, indent=2))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
