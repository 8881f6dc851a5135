"""``RenderDriver.switch`` through the tiny SDXL: a worker that rendered one
shot and switches to the next (a conform on Ray, one model load per worker)
renders that shot bit for bit as a fresh load would; a plan whose load would
read other weights or options, or a model changed by an out-of-memory
back-off, is loaded again instead."""

import numpy as np
import torch
from sdxl_testutil import TINY_STAGES, driver, make_plan, seed_for


def _generate(b, plan):
    with torch.no_grad():
        return b.generate(plan, seed_for)[0]


def test_a_switched_model_renders_the_next_shot_as_a_fresh_load(tiny_model):
    first = make_plan(tiny_model)
    other_stages = [dict(TINY_STAGES[0]), {**TINY_STAGES[1], "dilate_tau": 3, "prompt": "a red coat"}]
    second = make_plan(tiny_model, stages=other_stages, prompt="a wet street at night")
    worker = driver()
    worker.load(first)
    _generate(worker, first)
    model = worker.model
    assert worker.switch(second) and worker.model is model  # no second load
    fresh = driver()
    fresh.load(second)
    assert np.array_equal(_generate(worker, second), _generate(fresh, second))
    # and back: the first shot is unchanged by what the worker rendered in between
    again = driver()
    again.load(first)
    assert worker.switch(first) and np.array_equal(_generate(worker, first), _generate(again, first))


def test_other_load_options_or_a_memory_back_off_load_again(tiny_model):
    worker = driver()
    plan = make_plan(tiny_model)
    worker.load(plan)
    assert not worker.switch(make_plan(tiny_model, options={"vae_tiling": False}))  # SDXLModel reads it at load
    assert not worker.switch(make_plan(tiny_model, dtype="bfloat16"))
    assert worker.switch(plan)
    assert worker.reduce_memory() is not None  # smaller VAE tiles
    assert not worker.switch(plan)  # the model is no longer what a fresh load gives
    worker.unload()
    assert not worker.switch(plan)  # nothing loaded
