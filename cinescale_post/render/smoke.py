"""``cinescale doctor --smoke``: the adapter's tiny random-weight model, built in
memory, run through a two-stage generate cascade by the render driver.
Proves wiring and arithmetic, not picture quality."""

from __future__ import annotations

import time
from cinescale_post.render.video_path import video_frames, video_sources


def smoke(driver, device: str = "cpu") -> dict:
    """Build the adapter's tiny random model in memory and run its
    two-stage generate cascade on ``device``. Proves wiring and
    arithmetic, not picture quality."""
    import numpy as np
    import torch

    from cinescale_post.cascade.sources import RandomSources
    from cinescale_post.ops.pixels import to_images

    t0 = time.perf_counter()
    setup = driver.adapter.tiny_model(device)
    if setup is None:
        return None
    t_build = time.perf_counter() - t0
    model = setup["model"]
    driver.use(model, stages=setup["stages"], options=setup.get("options", {}))
    size = tuple(setup["size"])
    lad = driver.ladder("generate", size)
    cond = driver.condition(setup.get("prompt", "a photo of the cat"), setup.get("negative_prompt", ""),
                          size=lad[0].size, guidance=max(s.spec.guidance for s in lad))
    frames = setup.get("frames")
    t1 = time.perf_counter()
    with torch.inference_mode():
        if frames is None:
            res = driver.run_cascade(lad, cond, RandomSources.from_seed(123), keep="all")
            outs = [to_images(model.decode(r.latent))[0] for r in res]
            shapes = [list(im.shape) for im in outs]
        else:
            res = driver.run_cascade(lad, cond, video_sources(driver, 123, lad, frames), frames=frames, keep="all")
            vids = [video_frames(model, model.decode(r.latent), r.size) for r in res]
            outs = [f for v in vids for f in v]
            shapes = [[len(v), *v[0].shape] for v in vids]
    if getattr(model.device, "type", str(model.device)) == "cuda":
        torch.cuda.synchronize()
    t_run = time.perf_counter() - t1
    ok = all(bool(np.isfinite(im).all()) for im in outs)
    facts = dict(setup.get("facts", {}))
    driver.unload()
    return {"backend": driver.id, "device": str(device), "ok": ok, **facts,
            "stages": [{"size": list(s.size), "steps": s.spec.steps, "restart_index": s.restart_index,
                        "dilation": s.dilation, "fusion": s.fusion} for s in lad],
            "output_shapes": shapes,
            "seconds": {"build": round(t_build, 3), "cascade": round(t_run, 3)},
            "note": "tiny random-weight models: this checks wiring and arithmetic, not picture quality"}


__all__ = ["smoke"]
