import numpy as np
import pytest
import torch

from cinescale_post.ops.freeu import FreeUSpec, apply_freeu, fourier_filter, freeu_pair, up_block_split


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
