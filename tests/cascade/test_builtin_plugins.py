import torch

import cinescale_post.builtin.fusions as fusions
import cinescale_post.builtin.latent_upscalers as latent_upscalers
from cinescale_post.builtin.lookup import builtin_resolve as resolve
from cinescale_post.pipeline.host import Host


def test_registered_through_the_host():
    host = Host(load_entrypoints=False, extra_plugins=(latent_upscalers, fusions))
    ups = host.upscalers()
    for name in ("vae-bicubic", "latent-bilinear", "latent-bicubic", "latent-trilinear"):
        assert name in ups and ups[name].space == "latent"
    assert "bicubic" not in latent_upscalers.UPSCALERS and "lanczos" not in latent_upscalers.UPSCALERS
    assert {"scale-fusion", "global-only"} <= set(host.fusions())


def test_resolve_and_upscaler_math():
    up = resolve("upscaler", "vae-bicubic")
    assert up.via_pixels
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = up(x, (16, 12))
    ref = torch.nn.functional.interpolate(x, size=(12, 16), mode="bicubic", align_corners=False)
    assert torch.equal(out, ref)
    v = torch.randn(1, 16, 3, 4, 4)
    tri = resolve("upscaler", "latent-trilinear")(v, (8, 6))
    assert tri.shape == (1, 16, 3, 6, 8)
    bil = resolve("upscaler", "latent-bilinear")(v, (8, 6))  # 5-D, frame by frame
    assert torch.allclose(bil[:, :, 1], torch.nn.functional.interpolate(v[:, :, 1], size=(6, 8), mode="bilinear",
                                                                        align_corners=False), atol=1e-6)
    assert resolve("fusion", "global-only").apply(None, None, latent_hw=(1, 1)).name.startswith("global-only")
