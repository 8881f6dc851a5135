"""``offload = "model"`` keeps a component on the device until another one
needs it (diffusers' model offload), instead of moving the transformer to
the device and back around every denoiser call (issue 14 part 4). Moves are
counted on the components' ``.to``; pixels must not change."""

import numpy as np

from cinescale_post.api import WindowJob

from wan_helpers import TINY_REFINE, clip_frames, driver, frames_of, make_plan, seed_for

COMPONENTS = ("transformer", "vae", "text_encoder")


def _count_moves(model) -> list:
    """The component of every ``.to(...)`` call, in order (on CPU a move to the
    device and one back both read "cpu", so only the order says which is which)."""
    moves: list = []
    for name in COMPONENTS:
        mod = getattr(model.pipe, name)
        orig = mod.to

        def to(*args, _name=name, _orig=orig, **kw):
            moves.append(_name)
            return _orig(*args, **kw)

        mod.to = to  # test-only spy on this instance
    return moves


def _generate(tiny_model, steps, offload):
    stages = ({"size": [32, 32], "steps": steps, "shift": 7.0},
              {"size": [64, 64], "steps": steps, "restart_step": 1, "shift": 11.0})
    plan = make_plan(tiny_model, stages=stages, options={"offload": offload})
    d = driver()
    d.load(plan)
    moves = _count_moves(d.model)
    calls = []
    d.model.pipe.transformer.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        return d.generate(plan, seed_for), moves, len(calls)
    finally:
        d.unload()


def test_model_offload_moves_a_constant_number_of_times_not_per_step(tiny_model):
    few, moves_few, calls_few = _generate(tiny_model, 3, "model")
    many, moves_many, calls_many = _generate(tiny_model, 6, "model")
    assert calls_many > calls_few >= 10  # 2 stages, CFG: two transformer calls a step
    # T5 in; T5 out, transformer in; transformer out, VAE in (decode): the transformer stays resident
    # over every step of both stages, whatever the step count
    assert moves_few == moves_many == ["text_encoder", "text_encoder", "transformer", "transformer", "vae"]
    ref, moves_none, _ = _generate(tiny_model, 3, "none")
    assert moves_none == []  # "none": everything placed once at load
    assert all(np.array_equal(a, b) for a, b in zip(ref, few))  # same pixels


def test_model_offload_render_windows_move_a_constant_number_of_times(tiny_model):
    plan = make_plan(tiny_model, stages=TINY_REFINE, mode="render", options={"offload": "model"})
    d = driver()
    d.load(plan)
    moves = _count_moves(d.model)
    per_window = []
    outs = []
    for _ in range(3):
        before = len(moves)
        outs.append(d.render(WindowJob(frames=frames_of(clip_frames(6)), size=(64, 48), seed_for=seed_for)))
        per_window.append(len(moves) - before)
    d.unload()
    # first window: T5 in, then VAE (encode), transformer, VAE (decode); later windows: the prompt is cached,
    # the VAE is still resident for the encode: transformer in (VAE out), VAE in (transformer out)
    assert per_window == [7, 4, 4]
    assert all(np.array_equal(a, b) for a, b in zip(outs[0], outs[2]))
