import copy
import math

import pytest
import torch

from cinescale_post.cascade.schedule import (add_noise_at, blend_weight, cosine_blend, cosine_factor, mask_exponent,
                                             renoise_trajectory)


def _euler(steps=50):
    from diffusers import EulerDiscreteScheduler

    from cinescale_sdxl.tiny import SDXL_SCHEDULER_CONFIG

    s = EulerDiscreteScheduler(**SDXL_SCHEDULER_CONFIG)
    s.set_timesteps(steps)
    return s


def test_cosine_factor_and_reference_numbers():
    for t in (0, 1, 250, 681, 999):
        assert float(cosine_factor(t)) == pytest.approx(0.5 * (1 + math.cos(math.pi * (1000 - t) / 1000)), abs=1e-6)
    s = _euler(50)
    t15 = s.timesteps[15]
    assert float(t15) == 681
    assert float(cosine_factor(t15)) == pytest.approx(0.769, abs=1e-3)
    assert float(blend_weight(t15, 2.0)) == pytest.approx(0.592, abs=1e-3)
    assert float(blend_weight(s.timesteps[-1], 2.0)) < 1e-4


def test_blend_formula_scalar_and_mask():
    g = torch.Generator().manual_seed(0)
    z, r = torch.randn(1, 4, 6, 6, generator=g), torch.randn(1, 4, 6, 6, generator=g)
    c1 = (0.5 * (1 + math.cos(math.pi * 300 / 1000))) ** 2
    assert torch.allclose(cosine_blend(z, r, 700, 2.0), (1 - c1) * z + c1 * r, atol=1e-6)
    mask = torch.zeros(1, 1, 48, 48)
    mask[..., :24, :] = 1
    exp = mask_exponent(mask, (6, 6), 3.0, 0.5)
    assert exp.shape == (1, 1, 6, 6) and float(exp[0, 0, 0, 0]) == 3.0 and float(exp[0, 0, -1, 0]) == 0.5
    out = cosine_blend(z, r, 700, exp)
    phi = 0.5 * (1 + math.cos(math.pi * 300 / 1000))
    w = phi ** exp
    assert torch.allclose(out, (1 - w) * z + w * r, atol=1e-6)


def test_add_noise_uses_the_scheduler_forward_process():
    s = _euler(10)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    traj = renoise_trajectory(s, x0, eps, s.timesteps)
    for i, z in enumerate(traj):
        assert torch.allclose(z, x0 + s.sigmas[i] * eps, atol=1e-5)  # variance-exploding Euler form
    s2 = copy.deepcopy(s)
    s2.set_begin_index(3)
    with pytest.raises(RuntimeError, match="deepcopy"):
        add_noise_at(s2, x0, eps, s.timesteps[5])


def test_flow_matching_and_video_rank():
    from diffusers import FlowMatchEulerDiscreteScheduler

    s = FlowMatchEulerDiscreteScheduler(shift=3.0)
    s.set_timesteps(6)
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(1, 16, 3, 4, 4, generator=g), torch.randn(1, 16, 3, 4, 4, generator=g)
    z = add_noise_at(s, x0, eps, s.timesteps[2])
    sig = s.sigmas[2]
    assert torch.allclose(z, (1 - sig) * x0 + sig * eps, atol=1e-5)


def test_mask_exponent_reference_rule_and_soft_grey_levels():
    from cinescale_post.cascade.schedule import DetailMask

    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 0.3
    binary = mask_exponent(DetailMask(mask), (4, 4), 2.0, 0.5)
    assert torch.equal(binary, mask_exponent(mask, (4, 4), 2.0, 0.5))
    assert float(binary[0, 0, 0, 0]) == 2.0 and float(binary[0, 0, 0, -1]) == 0.5  # any non-zero is detail
    soft = mask_exponent(DetailMask(mask, soft=True), (4, 4), 2.0, 0.5)
    assert float(soft[0, 0, 0, 0]) == pytest.approx(0.3 * 2.0 + 0.7 * 0.5) and float(soft[0, 0, 0, -1]) == 0.5
