"""NTK-aware per-axis RoPE (ALGORITHM.md 4.2): formulas vs naive loops, the
axis split from the model, and the handle restoring the model exactly."""

import math

import pytest
import torch

from cinescale_post.ops.rope import (RopeSpec, apply_ntk_rope, apply_ntk_rope_many, axis_split, model_axis_split,
                                     ntk_theta, rope_frequencies, rope_tables)
from cinescale_wan.tiny import build_tiny_wan, tiny_wan_inputs


@pytest.fixture
def tiny_wan_transformer():
    torch.set_num_threads(1)
    return build_tiny_wan(0, text_encoder=False)["transformer"]


@pytest.fixture
def wan_inputs():
    return tiny_wan_inputs()


def _naive_table(dims, positions, alphas, theta=10000.0):
    """exp(j * p * theta_axis ** (-2i/d)) written as loops over the reference formula."""
    cos = torch.zeros(positions, sum(dims), dtype=torch.float64)
    sin = torch.zeros_like(cos)
    col = 0
    for d, a in zip(dims, alphas):
        base = theta * a
        for i in range(d // 2):
            w = base ** (-2.0 * i / d)
            for p in range(positions):
                cos[p, col + 2 * i] = cos[p, col + 2 * i + 1] = math.cos(p * w)
                sin[p, col + 2 * i] = sin[p, col + 2 * i + 1] = math.sin(p * w)
        col += d
    return cos, sin


def test_axis_split_matches_reference_44_42_42():
    assert axis_split(128) == (44, 42, 42)
    assert axis_split(12) == (4, 4, 4)
    with pytest.raises(ValueError):
        axis_split(7)


def test_theta_rules():
    assert ntk_theta(10000, 20, 42) == 200000.0
    assert ntk_theta(10000, 1, 44) == 10000.0
    assert ntk_theta(10000, 2, 42, "ntk-aware") == pytest.approx(10000 * 2 ** (42 / 40))
    with pytest.raises(ValueError):
        ntk_theta(10000, 0, 42)


@pytest.mark.parametrize("alphas", [(1, 1, 1), (1, 20, 20), (1, 25, 25), (2, 3, 5)])
def test_tables_equal_naive_formula(alphas):
    dims = (44, 42, 42)
    cos, sin = rope_tables(dims, 40, alphas)
    ncos, nsin = _naive_table(dims, 40, alphas)
    assert torch.allclose(cos, ncos, atol=1e-9) and torch.allclose(sin, nsin, atol=1e-9)


def test_frequencies_are_the_inverse_powers():
    f = rope_frequencies(42, 200000.0)
    assert f.shape == (21,)
    assert torch.allclose(f, torch.tensor([200000.0 ** (-2 * i / 42) for i in range(21)], dtype=torch.float64))


def test_identity_factors_rebuild_the_diffusers_buffers_bit_exactly(tiny_wan_transformer):
    rope = tiny_wan_transformer.rope
    before = rope.freqs_cos.clone(), rope.freqs_sin.clone()
    with apply_ntk_rope(tiny_wan_transformer, RopeSpec((1, 1, 1))):
        assert torch.equal(rope.freqs_cos, before[0]) and torch.equal(rope.freqs_sin, before[1])


def test_split_is_read_from_the_model_not_hard_coded():
    from diffusers import WanTransformer3DModel

    from cinescale_wan.tiny import TINY_WAN_TRANSFORMER_CONFIG

    cfg = dict(TINY_WAN_TRANSFORMER_CONFIG, attention_head_dim=16)  # split 6/4/4... per the diffusers rule
    m = WanTransformer3DModel(**cfg).eval()
    assert model_axis_split(m) == (m.rope.t_dim, m.rope.h_dim, m.rope.w_dim) == axis_split(16)
    with apply_ntk_rope(m, RopeSpec((1, 20, 20))):
        t = m.rope.t_dim
        ncos, _ = _naive_table(model_axis_split(m), m.rope.max_seq_len, (1, 20, 20))
        assert torch.allclose(m.rope.freqs_cos.double(), ncos, atol=1e-6)
        # the temporal block is untouched by alpha_t = 1
        assert torch.allclose(m.rope.freqs_cos[:, :t].double(), ncos[:, :t], atol=1e-6)


def test_handle_changes_output_and_restores_exactly(tiny_wan_transformer, wan_inputs):
    m = tiny_wan_transformer
    with torch.no_grad():
        ref = m(**wan_inputs, return_dict=False)[0]
        with apply_ntk_rope(m, RopeSpec((1, 20, 20))) as h:
            out = m(**wan_inputs, return_dict=False)[0]
            assert h.active
        assert not torch.equal(out, ref)
        assert torch.equal(m(**wan_inputs, return_dict=False)[0], ref)


def test_handle_restores_on_error_and_many(tiny_wan_transformer):
    cos = tiny_wan_transformer.rope.freqs_cos
    with pytest.raises(RuntimeError):
        with apply_ntk_rope_many([tiny_wan_transformer], RopeSpec((1, 25, 25))):
            assert tiny_wan_transformer.rope.freqs_cos is not cos
            raise RuntimeError("boom")
    assert tiny_wan_transformer.rope.freqs_cos is cos


def test_spec_validation():
    with pytest.raises(ValueError):
        RopeSpec((1, 20))
    with pytest.raises(ValueError):
        RopeSpec((1, -1, 20))
    with pytest.raises(ValueError):
        RopeSpec(rule="yarn")
    with pytest.raises(ValueError):
        apply_ntk_rope(torch.nn.Linear(2, 2), RopeSpec())
