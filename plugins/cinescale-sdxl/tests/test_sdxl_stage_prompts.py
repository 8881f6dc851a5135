"""Per-stage prompts (issue 25 item 1) through the tiny SDXL: a stage's own
prompt reaches the conditioning of that stage only, and changes its pixels."""

import numpy as np
import torch
from sdxl_testutil import TINY_STAGES, driver, make_plan, seed_for

from cinescale_post.testing import conditioning_spy


def test_a_stage_prompt_conditions_that_stage_only(tiny_model):
    stages = [dict(TINY_STAGES[0]), {**TINY_STAGES[1], "prompt": "a red coat in the rain"}]
    b = driver()
    plan = make_plan(tiny_model, stages=stages)
    assert [s.get("prompt") for s in plan.stages] == [None, "a red coat in the rain"]
    b.load(plan)
    with torch.no_grad(), conditioning_spy(b.model) as spy:
        edited = b.generate(plan, seed_for)[0]
    # stage 0: 3 steps on the render's prompt; stage 1 resumes at step 1: 2 steps on its own
    assert spy.used == ["a photo of the cat"] * 3 + ["a red coat in the rain"] * 2
    assert sorted(set(spy.made.values())) == ["a photo of the cat", "a red coat in the rain"]
    plain = driver()
    plain_plan = make_plan(tiny_model)
    plain.load(plain_plan)
    with torch.no_grad():
        same = plain.generate(plain_plan, seed_for)[0]
    assert not np.allclose(edited, same)  # the upscaled stage followed its own prompt


def test_a_stage_negative_prompt_alone_keeps_the_render_prompt(tiny_model):
    stages = [dict(TINY_STAGES[0]), {**TINY_STAGES[1], "negative_prompt": "blurry, soft"}]
    b = driver()
    plan = make_plan(tiny_model, stages=stages)
    b.load(plan)
    with torch.no_grad(), conditioning_spy(b.model) as spy:
        b.generate(plan, seed_for)
    assert spy.used[-1] == "a photo of the cat" and len(spy.made) == 2  # the same prompt, another conditioning
