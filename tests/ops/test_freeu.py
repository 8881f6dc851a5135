import numpy as np
import pytest
import torch

from cinescale_post.ops.freeu import FreeUSpec, apply_freeu, fourier_filter, freeu_pair, up_block_split, up_block_stages


def _naive_fourier(x, threshold, scale):
    a = np.fft.fftshift(np.fft.fft2(x.numpy().astype(np.float64)), axes=(-2, -1))
    h, w = a.shape[-2:]
    a[..., h // 2 - threshold:h // 2 + threshold, w // 2 - threshold:w // 2 + threshold] *= scale
    return np.fft.ifft2(np.fft.ifftshift(a, axes=(-2, -1))).real


@pytest.mark.parametrize("shape", [(1, 2, 8, 8), (2, 3, 7, 10)])
def test_fourier_filter_equals_numpy(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    out = fourier_filter(x, 1, 0.6)
    assert out.dtype == x.dtype
    assert np.allclose(out.numpy(), _naive_fourier(x, 1, 0.6), atol=1e-5)
    assert torch.allclose(fourier_filter(x, 1, 1.0), x, atol=1e-5)


def test_pair_keyed_on_channel_count():
    spec = FreeUSpec(b1=2.0, b2=3.0, s1=0.5, s2=0.25, channels=(8, 4))
    g = torch.Generator().manual_seed(1)
    h8, s8 = torch.randn(1, 8, 6, 6, generator=g), torch.randn(1, 5, 6, 6, generator=g)
    h, s = freeu_pair(h8, s8, spec)
    assert torch.allclose(h[:, :4], h8[:, :4] * 2.0) and torch.equal(h[:, 4:], h8[:, 4:])
    assert torch.allclose(s, fourier_filter(s8, 1, 0.5))
    h4 = torch.randn(1, 4, 6, 6, generator=g)
    h, s = freeu_pair(h4, s8, spec)
    assert torch.allclose(h[:, :2], h4[:, :2] * 3.0) and torch.allclose(s, fourier_filter(s8, 1, 0.25))
    h6 = torch.randn(1, 6, 6, 6, generator=g)
    h, s = freeu_pair(h6, s8, spec)
    assert torch.equal(h, h6) and torch.equal(s, s8)


def test_split_points_match_real_concat(tiny_unet, unet_inputs):
    split = up_block_split(tiny_unet)
    mods = dict(tiny_unet.named_modules())
    seen = {}
    hooks = [mods[n].register_forward_pre_hook(lambda m, a, _n=n: seen.__setitem__(_n, a[0].shape[1]))
             for n in split]
    tiny_unet(**unet_inputs)
    for h in hooks:
        h.remove()
    assert set(seen) == set(split)
    for n, c in split.items():
        assert seen[n] == mods[n].in_channels and 0 < c < seen[n]
    # SDXL-like layout of the tiny model: hidden 64 into up_blocks.0 and up_blocks.1.resnets.0
    assert split["up_blocks.0.resnets.0"] == 64 and split["up_blocks.1.resnets.1"] == 48


def test_apply_remove_restores_and_matches_manual_rule(tiny_unet, unet_inputs):
    ref = tiny_unet(**unet_inputs).sample
    spec = FreeUSpec(channels=(64, 48))
    with apply_freeu(tiny_unet, spec) as h:
        out = tiny_unet(**unet_inputs).sample
        assert "7 resnets" in h.name  # 3 + 3 + 1 up-block resnets see 64 or 48 hidden channels
    assert not torch.allclose(out, ref, atol=1e-5)
    assert torch.equal(tiny_unet(**unet_inputs).sample, ref)
    assert all(not m._forward_pre_hooks for m in tiny_unet.modules())
    # identity settings change nothing
    with apply_freeu(tiny_unet, FreeUSpec(b1=1, b2=1, s1=1, s2=1, channels=(64, 48))):
        assert torch.allclose(tiny_unet(**unet_inputs).sample, ref, atol=1e-5)


# ------------------------------------------------------------ keyed on the decoder stage (issue 12)

SDXL_LAYOUT = dict(sample_size=128, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280),
                   layers_per_block=2, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                   up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                   transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                   cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                   addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)


def _reference_rule(hidden_channels):
    """FreeScale's free_lunch_utils: 1280 hidden channels -> b1/s1, 640 -> b2/s2."""
    return {1280: 0, 640: 1}.get(hidden_channels)


def test_stages_reproduce_the_reference_channel_rule_on_sdxl():
    from diffusers import UNet2DConditionModel

    from cinescale_post.ops.freeu import up_block_stages

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_LAYOUT)
    stages = up_block_stages(unet)
    assert len(stages) == 9
    for name, (c, stage) in stages.items():
        want = _reference_rule(c)
        assert (stage if stage in (0, 1) else None) == want, name
    assert stages["up_blocks.1.resnets.0"] == (1280, 0) and stages["up_blocks.2.resnets.0"] == (640, 1)


def test_stage_keys_equal_channel_keys_on_the_tiny_sdxl(tiny_unet, unet_inputs):
    with apply_freeu(tiny_unet, FreeUSpec(channels=None)) as h:
        by_stage = tiny_unet(**unet_inputs).sample
        assert "7 resnets" in h.name
    with apply_freeu(tiny_unet, FreeUSpec(channels=(64, 48))):
        by_channels = tiny_unet(**unet_inputs).sample
    assert torch.equal(by_stage, by_channels)


@pytest.fixture(scope="module")
def repeating_pipe():
    """A tiny SDXL pipeline whose UNet's last two widths repeat (32, 64, 64),
    as SD 1.5's 1280/1280."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    from cinescale_sdxl.tiny import TINY_UNET_CONFIG, build_tiny_sdxl

    comps = build_tiny_sdxl(0, text_encoders=False)
    torch.manual_seed(5)
    comps["unet"] = UNet2DConditionModel(**{**TINY_UNET_CONFIG, "block_out_channels": (32, 64, 64),
                                            "attention_head_dim": (2, 4, 4)}).eval()
    return StableDiffusionXLPipeline(**comps)


def test_repeating_widths_get_one_factor_per_input_through_the_sdxl_backend(repeating_pipe, unet_inputs):
    """Before: keys (boc[-1], boc[-2]) = (64, 64) applied b1 *and* b2 to every
    64-channel hidden; the reference rule gives 64 (stage 0) b1 only and the
    32-channel stage-1 hidden b2."""
    from cinescale_sdxl.backend import SDXLModel
    from cinescale_sdxl.options import FREEU_DEFAULT, SDXLOptions

    b = SDXLModel(repeating_pipe, options=SDXLOptions.from_dict({"freeu": {"rule": "stage"}}))
    spec = b.freeu()
    unet = b.denoiser
    with apply_freeu(unet, spec):
        got = unet(**unet_inputs).sample
    with apply_freeu(unet, FreeUSpec(**FREEU_DEFAULT, channels=(64, 32))):  # the reference's rule
        want = unet(**unet_inputs).sample
    assert torch.equal(got, want)
    g = torch.Generator().manual_seed(2)
    h, s = torch.randn(1, 64, 4, 4, generator=g), torch.randn(1, 32, 4, 4, generator=g)
    h2, _ = freeu_pair(h, s, spec, 0)
    assert torch.allclose(h2[:, :32], h[:, :32] * 1.1)  # b1 alone, not b1 * b2


def test_the_default_is_the_references_rule_a_no_op_on_other_widths(tiny_unet, unet_inputs):
    """Issue 25: FreeScale's FreeU fires only where the hidden has 1280 or 640
    channels. The default follows it: nothing on the tiny SDXL (64/48), and on
    the SDXL layout the same inputs and factors as the stage rule."""
    with torch.no_grad():
        plain = tiny_unet(**unet_inputs).sample
        with apply_freeu(tiny_unet, FreeUSpec()) as h:
            assert "on 0 resnets" in h.name
            assert torch.equal(tiny_unet(**unet_inputs).sample, plain)
        with apply_freeu(tiny_unet, FreeUSpec(channels=None)):  # the stage rule, on request
            assert not torch.equal(tiny_unet(**unet_inputs).sample, plain)
    with torch.device("meta"):
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel(**SDXL_LAYOUT)
    for name, (c, stage) in up_block_stages(unet).items():
        assert FreeUSpec().factors(FreeUSpec().channels.index(c) if c in (1280, 640) else None) == \
            FreeUSpec(channels=None).factors(stage if stage in (0, 1) else None), name


def test_repeating_channel_keys_are_refused():
    with pytest.raises(ValueError, match="repeat"):
        FreeUSpec(channels=(64, 64))
