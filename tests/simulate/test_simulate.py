"""Real-size simulation (issue 16): the tracker against a real CPU run, and the
memory planner held to the simulation on real-size SDXL components (meta
device, no weights; a few seconds)."""

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import cinescale_post.ops.memory_estimate as mm  # noqa: E402
from cinescale_post.simulate.tracker import SimulationTracker  # noqa: E402

MiB = 2 ** 20


def test_importing_the_package_imports_no_torch():
    code = "import sys, cinescale_post.simulate as s; s.card('h100'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _chain(x, conv, lin):
    a = conv(x)  # (1, 8, 64, 64) float32: 128 KiB
    b = torch.relu(a)  # another 128 KiB while a lives
    del a
    c = lin(b.flatten(1))  # (1, 16)
    v = b.view(-1)  # a view: no new storage
    return c, v


def test_tracker_counts_storages_once_and_frees_them_on_cpu_and_meta():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    lin = torch.nn.Linear(8 * 64 * 64, 16)
    figures = []
    for dev in ("cpu", "meta"):
        c, ln = conv.to(dev), lin.to(dev)
        x = torch.zeros(1, 3, 64, 64, device=dev)  # made before the tracker: not counted
        with torch.no_grad(), SimulationTracker() as tr:
            with tr.phase("model"):
                out, view = _chain(x, c, ln)
            alive = tr.live
            del out, view
        figures.append((tr.peak, alive, tr.live, tr.total_flops))
    act = 8 * 64 * 64 * 4
    assert figures[0][0] == figures[1][0]  # meta counts what a real run allocates
    assert figures[0][3] == figures[1][3] > 0
    peak, alive, after, _ = figures[0]
    assert act * 2 <= peak <= act * 2 + 4096  # conv output and relu output together (+ small outputs)
    assert act <= alive <= act + 4096  # relu output (and its view) kept, conv output freed
    assert after == 0  # everything freed when the last referent died


def test_tracker_routes_attention_to_fused_kernels():
    q = torch.empty(2, 8, 4096, 64, device="meta", dtype=torch.float16)
    with SimulationTracker() as tr:
        o = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert o.shape == q.shape
    assert tr.peak < 8 * 4096 * 4096 * 2  # no (N x N) score matrix was made
    assert tr.total_flops == 4 * 2 * 8 * 4096 * 4096 * 64


@pytest.fixture(scope="module")
def sdxl():
    from cinescale_post.simulate.build import build_component

    return {"unet": build_component("sdxl-base", "unet", torch.float16),
            "vae": build_component("sdxl-base", "vae", torch.float32)}


def test_planner_holds_to_the_simulated_sdxl_vae_decode_of_one_1024_tile(sdxl):
    from cinescale_post.simulate.configs import SDXL_VAE

    z = torch.empty(1, 4, 128, 128, device="meta")
    with torch.no_grad(), SimulationTracker() as tr:
        px = sdxl["vae"].decode(z).sample
    assert tuple(px.shape) == (1, 3, 1024, 1024)
    est = mm.vae_bytes((1024, 1024), SDXL_VAE["block_out_channels"], 4)
    assert 0.9 <= est / tr.peak <= 1.2, (est / MiB, tr.peak / MiB)


def test_planner_holds_to_the_simulated_sdxl_unet_with_freeu_at_1024(sdxl):
    from cinescale_post.ops.freeu import FreeUSpec, apply_freeu
    from cinescale_post.simulate.configs import SDXL_UNET

    unet = sdxl["unet"]
    x = torch.empty(2, 4, 128, 128, device="meta", dtype=torch.float16)
    kw = dict(encoder_hidden_states=torch.empty(2, 77, 2048, device="meta", dtype=torch.float16),
              added_cond_kwargs={"text_embeds": torch.empty(2, 1280, device="meta", dtype=torch.float16),
                                 "time_ids": torch.empty(2, 6, device="meta", dtype=torch.float16)})
    with torch.no_grad(), apply_freeu(unet, FreeUSpec()), SimulationTracker() as tr:
        unet(x, torch.tensor(500), return_dict=False, **kw)
    assert tr.total_flops == pytest.approx(13.52e12, rel=0.01)  # TINY_MODELS.md: 13.5 TFLOPs per CFG step
    est = mm.unet_activation_bytes(SDXL_UNET, (128, 128), 2, 2, freeu=True)
    assert 0.9 <= est / tr.peak <= 1.2, (est / MiB, tr.peak / MiB)
