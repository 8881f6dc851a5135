"""CPU benchmark: overhead of the cascade engine vs the plain diffusers SDXL
pipeline, on the tiny random SDXL model (no weights needed).

Both sides do the same work: encode the prompt, sample ``--steps`` steps with
CFG at the final resolution from the same noise, decode, convert to float
images. The cascade side runs a single base stage with fusion, dilation and
FreeU off (``stages = [{size = output}]``), so the ratio is pure engine overhead.
A second, informational line times the real two-stage ladder (base -> 2x with
scale fusion, dilation and FreeU).

    python benchmarks/bench_sdxl_cascade.py --size 128 --steps 10 --repeats 7

Target: ratio <= 1.05. Pin threads (``--threads 1``) on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins" / "cinescale-sdxl"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    import numpy as np
    import torch
    from diffusers import StableDiffusionXLPipeline

    from cinescale_post.cascade.sources import RandomSources
    from cinescale_post.cascade.frames import generate_images
    from cinescale_post.contracts.stages import StageSpec
    from cinescale_post.testing import adapter_driver
    from cinescale_sdxl.backend import SDXLAdapter, SDXLModel, SDXLOptions
    from cinescale_sdxl.tiny import build_tiny_sdxl

    torch.set_num_threads(a.threads)
    comps = build_tiny_sdxl(0)
    pipe = StableDiffusionXLPipeline(**comps)
    pipe.set_progress_bar_config(disable=True)
    # the SDXL model under the core render driver, as a render drives it
    b = SDXLModel(StableDiffusionXLPipeline(**comps), options=SDXLOptions.from_dict({"freeu": False,
                                                                                   "vae_tiling": False}))
    drv = adapter_driver(SDXLAdapter()).use(b)
    pipe.vae.disable_tiling()
    size = (a.size, a.size)
    prompt, neg, cfg = "a photo of the cat", "blurry", 7.5
    plain_stage = drv.ladder("generate", size, [StageSpec(size="output", steps=a.steps, guidance=cfg)])

    def run_plain():
        return pipe(prompt, negative_prompt=neg, height=a.size, width=a.size, num_inference_steps=a.steps,
                    guidance_scale=cfg, generator=torch.Generator().manual_seed(0), output_type="np").images

    def run_cascade():
        cond = b.condition(prompt, neg, size=size, guidance=cfg)  # uncached: prompt encoding like the pipeline
        return generate_images(b, plain_stage, cond, [RandomSources.from_seed(0)])

    ladder = drv.ladder("generate", size, [StageSpec(scale=1, steps=a.steps, guidance=cfg),
                                           StageSpec(size="output", steps=a.steps, guidance=cfg)])
    b_full = SDXLModel(StableDiffusionXLPipeline(**build_tiny_sdxl(0)), options=SDXLOptions.from_dict({}))

    def run_ladder():
        cond = b_full.condition(prompt, neg, size=ladder[0].size, guidance=cfg)
        return generate_images(b_full, ladder, cond, [RandomSources.from_seed(0)], freeu=b_full.freeu())

    with torch.inference_mode():
        p_img, c_img = run_plain()[0], run_cascade()[0]  # warm up; same noise, same steps
        run_ladder()
        same = float(np.abs(p_img - c_img).max())
        tp, tc, tl = [], [], []
        for _ in range(a.repeats):  # interleaved, min of N
            t = time.perf_counter(); run_plain(); tp.append(time.perf_counter() - t)
            t = time.perf_counter(); run_cascade(); tc.append(time.perf_counter() - t)
            t = time.perf_counter(); run_ladder(); tl.append(time.perf_counter() - t)
    res = {
        "size": a.size, "steps": a.steps, "threads": a.threads, "repeats": a.repeats,
        "plain_pipeline_s": round(min(tp), 4), "cascade_single_stage_s": round(min(tc), 4),
        "ratio_min": round(min(tc) / min(tp), 3), "ratio_median": round(statistics.median(tc) / statistics.median(tp), 3),
        "max_abs_image_diff": same,
        "two_stage_ladder_s": round(min(tl), 4),
        "ladder": [f"{s.size[0]}x{s.size[1]} steps {s.spec.steps - s.restart_index}" for s in ladder],
    }
    if a.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>26}: {v}")
        print("target: ratio <= 1.05 ->", "OK" if res["ratio_min"] <= 1.05 else "ABOVE TARGET")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
