"""The memory estimator and planner (issue 6, part 1): formulas against hand
computations, monotonicity, and the planner's choices."""

from __future__ import annotations

import json

import pytest

import cinescale_post.ops.memory_estimate as mm

MiB = 2 ** 20


def test_attention_bytes_by_hand():
    # B=2, H=10, N=4096, d=64, fp16: q,k,v,out = 4*2*10*4096*64*2 bytes, + fp32 logsumexp 2*10*4096*4
    assert mm.attention_bytes(2, 10, 4096, 64, 2) == 4 * 2 * 10 * 4096 * 64 * 2 + 2 * 10 * 4096 * 4
    # math kernel adds scores and softmax: 2 * B*H*N*N elements
    assert mm.attention_bytes(2, 10, 4096, 64, 2, kernel="math") == \
        4 * 2 * 10 * 4096 * 64 * 2 + 2 * 2 * 10 * 4096 * 4096 * 2
    # cross-attention to 77 text tokens: q,out at N, k,v at M
    assert mm.attention_bytes(1, 1, 100, 8, 4, kv_tokens=77) == (2 * 100 + 2 * 77) * 8 * 4 + 100 * 4
    with pytest.raises(ValueError):
        mm.attention_bytes(1, 1, 1, 1, 4, kernel="nope")


def test_linear_vs_quadratic_growth():
    e1, e2 = (mm.attention_bytes(1, 8, n, 64, 2) for n in (1000, 2000))
    m1, m2 = (mm.attention_bytes(1, 8, n, 64, 2, kernel="math") for n in (10000, 20000))
    assert e2 / e1 == pytest.approx(2.0, rel=1e-6)
    assert 3.5 < m2 / m1 <= 4.0


def test_dtype_and_tokens():
    assert mm.dtype_bytes("bfloat16") == 2 and mm.dtype_bytes("float32") == 4
    # Wan 81 frames at 1280x720: 21 latent frames x 45 x 80 patches = 75600 tokens
    assert mm.dit_tokens(81, (1280, 720)) == 21 * 45 * 80
    assert mm.parse_bytes("24GiB") == 24 * 2 ** 30 and mm.parse_bytes("80GB") == 80 * 10 ** 9


def test_dit_activations_by_hand_and_context_parallel():
    n, d, h, ffn, e = 1000, 64, 4, 256, 2
    resid = n * d * e
    base = mm.BLOCK_FACTOR * n * d * e
    rope = 2 * n * d * 4
    attn = max(mm.attention_bytes(1, h, n, d // h, e), mm.attention_bytes(1, h, n, d // h, e, kv_tokens=512))
    assert mm.dit_activation_bytes(n, d, h, ffn, 1, e) == resid + base + max(rope + attn, 2 * n * ffn * e)
    one = mm.dit_activation_bytes(75600, 5120, 40, 13824, 1, 2)
    four = mm.dit_activation_bytes(75600, 5120, 40, 13824, 1, 2, world=4)
    assert four == pytest.approx(one / 4, rel=0.01)
    assert mm.dit_activation_bytes(75600, 5120, 40, 13824, 2, 2) == pytest.approx(2 * one, rel=1e-6)  # CFG batch


def test_unet_and_vae_monotonic():
    cfg = {"block_out_channels": [320, 640, 1280], "layers_per_block": 2, "attention_head_dim": [5, 10, 20],
           "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]}
    sizes = [(128, 128), (256, 256), (270, 480)]
    vals = [mm.unet_activation_bytes(cfg, s, 2, 2) for s in sizes]
    assert vals == sorted(vals) and vals[1] > 3.5 * vals[0]
    assert mm.unet_activation_bytes(cfg, (128, 128), 2, 2, kernel="math") > vals[0]
    assert mm.unet_activation_bytes(cfg, (128, 128), 1, 2) < vals[0]  # no CFG batch
    ch = [128, 256, 512, 512]
    v = [mm.vae_bytes((t, t), ch, 2) for t in (256, 512, 1024)]
    assert v == sorted(v)
    # hand computation of the full-resolution term (the larger of C1 + 4 C0 and 3 C1, VAE dtype, no attention)
    assert mm.vae_bytes((512, 512), ch, 2, mid_attention=False) == max(256 + mm.VAE_FACTOR * 128, 3 * 256) * 512 * 512 * 2
    # FreeU's Fourier filter at the finest level dominates an SDXL-like UNet at 4096 px
    big = mm.unet_activation_bytes(cfg, (512, 512), 2, 2, freeu=True)
    assert big > mm.unet_activation_bytes(cfg, (512, 512), 2, 2)


def _stage(act=4 * MiB, per_tile=lambda t: 4 * (t or 4096) ** 2):
    return mm.StageDemand("stage 0", (4096, 4096), lambda w: act * w, lambda t, w: per_tile(t) * w)


COMPS = [mm.Component("unet", 1000 * MiB, 50 * MiB), mm.Component("vae", 100 * MiB, 10 * MiB)]


def test_offload_lowers_device_memory():
    st = [_stage()]
    peaks = {o: mm.plan_memory(COMPS, st, None, tiles=[1024], offloads=(o,))["peak_gib"]
             for o in mm.OFFLOADS}
    assert peaks["none"] > peaks["model"] > peaks["sequential"]


def test_planner_picks_bigger_settings_when_memory_is_plenty():
    r = mm.plan_memory(COMPS, [_stage()], 100 * 2 ** 30, tiles=[None, 1024, 512], windows=(81, 41),
                       offloads=mm.OFFLOADS)
    assert r["fits"] and r["choice"] == {"vae_tile": None, "window": 81, "offload": "none"}
    assert r["stages"][0]["stage"] == "stage 0" and "peak_gib" in r["stages"][0]


def test_planner_picks_smaller_tile_then_offload_then_window():
    st = [_stage()]
    kw = dict(tiles=[None, 1024, 512], windows=(2, 1), offloads=mm.OFFLOADS, reserve_bytes=0, margin=1.0)
    # untiled decode needs 1100 + 2 * 64 MiB; 1024 px tiles 1100 + 2 * 4 MiB
    r = mm.plan_memory(COMPS, st, 1200 * MiB, **kw)
    assert r["choice"] == {"vae_tile": 1024, "window": 2, "offload": "none"}
    assert any("> " in x for x in r["reasoning"]) and "chosen" in r["reasoning"][-1]
    r = mm.plan_memory(COMPS, st, 1050 * MiB, **kw)
    assert r["choice"]["offload"] == "model" and r["choice"]["window"] == 2
    r = mm.plan_memory(COMPS, st, 1004 * MiB, **kw)  # model offload: 1000 MiB + 4 MiB per frame
    assert r["choice"]["window"] == 1 and r["choice"]["offload"] == "model"
    r = mm.plan_memory(COMPS, st, 200 * MiB, **kw)
    assert r["fits"] and r["choice"]["offload"] == "sequential"


def test_planner_reports_nothing_fits_with_numbers():
    r = mm.plan_memory(COMPS, [_stage()], 10 * MiB, tiles=[512], offloads=("none", "model"), margin=1.0,
                       reserve_bytes=0)
    assert r["fits"] is False
    last = r["reasoning"][-1]
    assert last.startswith("nothing fits") and "GiB more than" in last and "0.01 GiB" in last
    json.dumps(r)  # JSON-serialisable for --dry-run


def test_free_memory_cpu_and_override(monkeypatch):
    free, source = mm.free_memory("cpu")
    assert free and free > 0 and source
    monkeypatch.setenv("CINESCALE_FREE_MEMORY", "24GiB")
    assert mm.free_memory("cuda") == (24 * 2 ** 30, "CINESCALE_FREE_MEMORY")


def test_weights_from_headers_and_config(tmp_path):
    from cinescale_sdxl.tiny import save_tiny_sdxl

    folder = save_tiny_sdxl(tmp_path / "m")
    n_hdr, big = mm.safetensors_params(folder / "unet")
    n_cfg, big_cfg = mm.param_count_from_config(folder / "unet")
    assert n_hdr == n_cfg > 1_000_000 and big <= big_cfg  # largest tensor <= largest module
    c = mm.component_from_folder("unet", folder / "unet", "float16")
    assert c.nbytes == 2 * n_hdr
    assert mm.component_from_folder("x", tmp_path / "missing", "float16") is None
