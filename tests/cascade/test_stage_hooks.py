"""The per-stage backend hooks of the core ladder (what a DiT plugin needs):
backend stage keys, a scheduler per stage with explicit sigmas, patches held
for every stage (base included), the base stage's frame count, schedulers
without ``init_noise_sigma``, and the windowed video entry."""

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cinescale_post.cascade.ladder import run_ladder as _run_ladder
from cinescale_post.cascade.sources import RandomSources
from cinescale_post.api import Model, ModelInfo, PatchPoints
from cinescale_post.cascade.frames import refine_video
from cinescale_post.cascade.schedule import flow_sigmas, stage_scheduler
from cinescale_post.contracts.stages import parse_stages, resolve_ladder
from cinescale_post.contracts.errors import PlanError
from cinescale_post.ops.handles import Handle

from cinescale_post.builtin.lookup import builtin_resolve

# the ladder looks upscalers and fusions up through the lookup a host would pass
run_ladder = functools.partial(_run_ladder, resolve=builtin_resolve)


class FakeDiT(Model):
    """A video model: zero velocity (Euler keeps z), 4x temporal, 8x spatial VAE."""

    id = "fake-dit"
    device, dtype = torch.device("cpu"), torch.float32
    model_info = ModelInfo(base_size=(32, 32), latent_factor=8, latent_channels=3, size_multiple=8, temporal_factor=4)
    patch_points = PatchPoints()
    denoiser = None

    def condition(self, prompt, negative_prompt="", *, size, guidance, image=None):
        return None

    def __init__(self):
        self.denoiser = torch.nn.Identity()
        self.log, self.seen = [], []

    def make_scheduler(self, stage=None):
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler(shift=float(stage.spec.extras.get("shift", 1.0)))

    def stage_sigmas(self, stage):
        return flow_sigmas(stage.spec.steps)

    def stage_patches(self, stage):
        self.log.append(("on", stage.index))
        yield Handle(f"stage {stage.index}", lambda i=stage.index: self.log.append(("off", i)))

    def latent_shape(self, size, batch=1, frames=1):
        return (batch, 3, frames, size[1] // 8, size[0] // 8)

    def predict(self, x, t, cond, *, guidance):
        self.seen.append((tuple(x.shape), self.log[-1]))
        return torch.zeros_like(x)

    def encode(self, px, *, generator=None, sample=True):
        x = px[:, :, ::4]
        return F.avg_pool3d(x, (1, 8, 8))

    def decode(self, z):
        x = F.interpolate(z, scale_factor=(1, 8, 8), mode="nearest")
        rest = [x[:, :, i:i + 1].expand(-1, -1, 4, -1, -1) for i in range(1, x.shape[2])]
        return torch.cat([x[:, :, :1], *rest], 2)


def _ladder(specs, mode="generate", output=(64, 64)):
    dit = {"fusion": None, "dilation": False, "cosine_scale": None}
    return resolve_ladder(parse_stages(specs, extra_keys=("shift",), defaults=dit), mode=mode, base_size=(32, 32), output=output,
                          multiple=8)


def test_backend_stage_keys_are_carried_flat_and_unknown_keys_refused():
    specs = parse_stages([{"size": [32, 32], "shift": 7}, {"shift": [1, 2]}], extra_keys=("shift",),
                         defaults={"steps": 20, "fusion": None})
    assert specs[0].extras == {"shift": 7} and specs[0].steps == 20 and specs[1].fusion is None
    assert specs[1].to_dict()["shift"] == [1, 2] and "extra" not in specs[0].to_dict()
    assert parse_stages([s.to_dict() for s in specs], extra_keys=("shift",)) == specs
    with pytest.raises(PlanError, match=r"stages\.0: unknown key\(s\) bogus = 3") as e:
        parse_stages([{"bogus": 3}], extra_keys=("shift",))
    assert "shift" in str(e.value) and "steps" in str(e.value)
    with pytest.raises(PlanError, match="shift = 1"):
        parse_stages([{"shift": 1}])  # not declared: refused
    with pytest.raises(PlanError, match="stages.1 must be a table"):
        parse_stages([{}, 3])


def test_stage_scheduler_takes_the_stage_and_explicit_sigmas():
    b = FakeDiT()
    st = _ladder([{"size": [32, 32], "steps": 4, "shift": 3.0}])[0]
    s = stage_scheduler(b, st)
    want = [3 * x / (1 + 2 * x) for x in (1.0, 0.75, 0.5, 0.25)]
    assert np.allclose(s.sigmas[:-1].numpy(), want) and float(s.sigmas[-1]) == 0.0

    class PlainSpacing(FakeDiT):
        def stage_sigmas(self, stage):  # None: the scheduler's own spacing
            return None

    assert len(stage_scheduler(PlainSpacing(), st).timesteps) == 4


def test_ladder_holds_stage_patches_for_every_stage_and_passes_frames():
    b = FakeDiT()
    lad = _ladder([{"size": [32, 32], "steps": 3, "shift": 5.0}, {"steps": 3, "restart_step": 1,
                                                                "upscaler": "latent-trilinear"}])
    res = run_ladder(b, lad, None, RandomSources.from_seed(0, jitter=False), frames=3, keep="all")
    assert b.log == [("on", 0), ("off", 0), ("on", 1), ("off", 1)]
    assert [s for s, _ in b.seen] == [(1, 3, 3, 4, 4)] * 3 + [(1, 3, 3, 8, 8)] * 2
    assert [p for _, p in b.seen] == [("on", 0)] * 3 + [("on", 1)] * 2  # the patches were on during the steps
    # zero velocity keeps the base noise exactly: the flow scheduler has no init_noise_sigma (x 1)
    g = torch.Generator("cpu").manual_seed(0)
    assert torch.equal(res[0].latent, torch.randn((1, 3, 3, 4, 4), generator=g))


def test_refine_video_runs_a_window_as_one_cascade():
    b = FakeDiT()
    lad = _ladder([{"size": "output", "steps": 2, "restart_step": 1, "upscaler": "latent-trilinear"}],
                  mode="render", output=(32, 32))
    px = torch.rand(1, 3, 5, 16, 16) * 2 - 1
    out = refine_video(b, px, lad, None, RandomSources.from_seed(1, jitter=False), resolve=builtin_resolve)
    assert out.shape == (1, 3, 5, 32, 32) and b.seen[0][0] == (1, 3, 2, 4, 4)
    with pytest.raises(ValueError, match=r"\(B, 3, F, H, W\)"):
        refine_video(b, px[:, :, 0], lad, None, RandomSources.from_seed(1), resolve=builtin_resolve)
