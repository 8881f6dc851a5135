"""Issue 13's proof for the golden entries that issue 12 changed on purpose.

Issue 12 changed two things that reach these pictures (and issue 25 a third,
FreeU's rule, pinned back to the stage rule here): every random draw
from its own stream (``cascade.streams``, ``RandomSources.from_seed``) and
anchoring off in the reference-named ``sdxl-uhd-refine`` preset. Put both
back as they were (the old ``from_seed``: one CPU generator seeded with the
frame seed for every draw, jitter ``Random(seed * 7919 + 17)``; the preset's
``anchor_lowfreq = 1.0``) and the redesigned code must give exactly the
hashes recorded before the redesign began (``golden_before_redesign.json``,
commit d814dc8). So the model-adapter redesign itself changed no picture.

Those hashes are history and are never regenerated. Their thumbnails (the
cross-machine comparison, ``tests/golden.py``) were added later, from renders
whose sha256 equalled one recorded for that commit: the entry's own, or
``sha256_other``, the same commit's (d814dc8's) pictures rendered on a second
machine kind. ``CINESCALE_GOLDEN_UPDATE=1`` adds a missing thumbnail only
under that condition.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from . import golden as gd
from . import test_golden_outputs as g
from .test_golden_outputs import media, models  # noqa: F401 - fixtures

BEFORE_PATH = Path(__file__).with_name("golden_before_redesign.json")
BEFORE = gd.load(BEFORE_PATH)


def _same_as_before(name: str, folder: Path) -> None:
    got = gd.digest(folder)
    gd.record("before:" + name, got)
    want = BEFORE[name]
    if g.UPDATE and "thumb" not in want and got["sha256"] in gd.known_hashes(want):
        want["thumb"] = got["thumb"]
        gd.save(BEFORE_PATH, BEFORE)
    why = gd.difference(got, want)
    assert why is None, f"{name}: the redesigned code with issue 12 put back differs from before: {why}"


@pytest.fixture
def pre_issue12_noise(monkeypatch):
    import torch

    from cinescale_post.cascade.sources import RandomSources

    def from_seed(cls, seed, *, jitter=True, posterior="sample"):
        gen = torch.Generator("cpu").manual_seed(int(seed))
        return cls(generator=gen, jitter=random.Random(int(seed) * 7919 + 17) if jitter else None,
                   posterior=posterior)

    monkeypatch.setattr(RandomSources, "from_seed", classmethod(from_seed))


# the stage-keyed FreeU of those days (issue 25 made the reference's 1280/640 rule the default; on the
# tiny SDXL's 64/48 widths it is a no-op)
FREEU_STAGE = ['backend_options.freeu={rule = "stage"}']
ANCHOR_ON = ["backend_options.anchor_lowfreq=1.0", *FREEU_STAGE]  # the preset's value before issue 12


@pytest.mark.parametrize("name, extra", [
    ("sdxl-refine", ANCHOR_ON),
    ("sdxl-refine-anchor-off", ["backend_options.anchor_lowfreq=0.0", *FREEU_STAGE]),
    ("sdxl-refine-frame-noise", ANCHOR_ON + ["backend_options.noise=\"frame\""]),
    ("sdxl-refine-flow-crossframe", ANCHOR_ON + ["backend_options.noise=\"flow\"", "backend_options.cross_frame=true",
                                                 "backend_options.key_every=2"]),
])
def test_sdxl_refine_before_issue12(tmp_path, models, media, pre_issue12_noise, name, extra):  # noqa: F811
    g._render(tmp_path / "o" / "f.####.exr", "sdxl-uhd-refine", media["clip"], g.SDXL_TINY + extra,
              model=models["sdxl"])
    _same_as_before(name, tmp_path / "o")


def test_sdxl_chunked_still_and_example_before_issue12(tmp_path, models, media, pre_issue12_noise):  # noqa: F811
    tiny = [s for s in g.SDXL_TINY if not s.startswith("output.codec")]
    g._render(tmp_path / "m" / "m.mov", "sdxl-uhd-refine", media["clip"], tiny + ANCHOR_ON + ["output.chunk=2"],
              model=models["sdxl"])
    _same_as_before("sdxl-refine-prores-chunked", tmp_path / "m")
    g._generate(tmp_path / "s" / "still.exr", "sdxl-2k-still",
                ["dtype=float32", "output.codec=exr", "stages.0.steps=2", "stages.1.steps=2",
                 "stages.1.restart_step=1", "stages.1.dilate_tau=1", *FREEU_STAGE], model=models["sdxl"],
                size=(128, 128))
    _same_as_before("sdxl-still", tmp_path / "s")
    g._generate(tmp_path / "es" / "s.exr", "example-sd15-1k-still",
                ["dtype=float32", "stages.0.steps=2", "stages.1.steps=2", "stages.1.restart_step=1",
                 "stages.1.dilate_tau=1"], model=models["sd15"], size=(128, 128))
    _same_as_before("example-still", tmp_path / "es")
    g._render(tmp_path / "er" / "f.####.exr", "example-sd15-hd-refine", media["clip"],
              ["dtype=float32", "output.codec=exr", "output.width=128", "output.height=96", "stages.0.steps=3",
               "stages.0.dilate_tau=2"], model=models["sd15"])
    _same_as_before("example-refine", tmp_path / "er")
