"""Mattes in detail mode through the tiny Wan (random weights: wiring, not
quality): a window's mattes become the detail mask per latent frame (latent
0 is frame 0, latent k the union of frames 4k-3 .. 4k), and they reach the
cascade: a matte that is 1 everywhere renders as no mask with cosine_scale
inside, one that is 0 everywhere as cosine_scale_bg."""

import numpy as np
from wan_helpers import TINY_REFINE, clip_frames, driver, frames_of, make_plan, seed_for

from cinescale_post.cascade.schedule import mask_exponent
from cinescale_post.contracts.engine import WindowJob


def test_window_mattes_are_the_detail_mask_per_latent_frame():
    mattes = []
    for i in range(5):
        m = np.zeros((16, 16), np.float32)
        m[i, i] = 1.0  # frame i marks pixel (i, i)
        mattes.append(m)
    job = WindowJob(frames=frames_of(clip_frames(5, (16, 16))), size=(16, 16), seed_for=seed_for, mattes=mattes)
    mask = driver().job_mask(job, latent_groups=[[0], [1, 2, 3, 4]])
    assert tuple(mask.values.shape) == (1, 1, 2, 16, 16)
    v = mask.values[0, 0].numpy()
    assert v[0].sum() == 1 and v[0, 0, 0] == 1  # latent 0: frame 0 only
    assert v[1].sum() == 4 and all(v[1, i, i] == 1 for i in range(1, 5))  # latent 1: frames 1-4
    cos = mask_exponent(mask, (8, 8), 3.0, 1.0)
    assert tuple(cos.shape) == (1, 1, 2, 8, 8) and float(cos.max()) == 3.0 and float(cos.min()) == 1.0


def test_a_matte_reaches_the_wan_cascade(tiny_model):
    stages = ({**TINY_REFINE[0], "cosine_scale": 2.0, "cosine_scale_bg": 0.5},)
    plan = make_plan(tiny_model, stages=stages, mode="render")
    b = driver()
    b.load(plan)
    src = clip_frames(5)

    def render(value=None, **stage):
        mattes = [np.full((48, 64), value, np.float32)] * 5 if value is not None else ()
        return b.render(WindowJob(frames=frames_of(src), size=(64, 48), seed_for=seed_for, mattes=mattes))

    plain, inside, outside = render(), render(1.0), render(0.0)
    b.unload()
    assert all(np.array_equal(x, y) for x, y in zip(plain, inside))  # m = 1: cosine_scale, as without a mask
    assert not all(np.array_equal(x, y) for x, y in zip(plain, outside))  # m = 0: cosine_scale_bg
