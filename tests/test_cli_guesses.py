"""Issue 11 item 8: the command line guesses what is obvious.

The output suffix picks a codec where the preset's cannot write it (the
preset's wins where it fits), and ``cinescale generate`` without --preset
chooses the preset from the model folder's model_index.json. Plans are
checked through ``plan.build`` (the one place that decides) and through the
CLI; one real generate run on a tiny SDXL folder is judged by ffmpeg."""

import json
from fractions import Fraction

import pytest

import cinescale_post.pipeline.plan as plan_mod
import cinescale_post.pipeline.presets as presets_mod
from cinescale_post.contracts.errors import PlanError
from cinescale_post.pipeline.host import Host
from cinescale_post.simulate.configs import write_config_folder
from cinescale_post.testing import make_clip

from .helpers import cli_env, run_cli
from .media import ffjudge


@pytest.fixture(scope="module")
def host():
    return Host()  # installed plugins: their presets are what generate chooses from


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("guess") / "in.mov", frames=2, size=(64, 48),
                     rate=Fraction(24, 1))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Config-only diffusers folders (no weights): enough to plan with."""
    root = tmp_path_factory.mktemp("models")
    sdxl = write_config_folder("sdxl-base", root / "sdxl")
    turbo = write_config_folder("sdxl-base", root / "sdxl-turbo")
    cfg = json.loads((turbo / "unet" / "config.json").read_text())
    (turbo / "unet" / "config.json").write_text(json.dumps({**cfg, "sample_size": 64}))
    wan = write_config_folder("wan2.1-t2v-1.3b", root / "wan")
    flux = root / "flux"
    flux.mkdir()
    (flux / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    bare = root / "bare"
    bare.mkdir()
    return {"sdxl": sdxl, "turbo": turbo, "wan": wan, "flux": flux, "bare": bare}


def _render(host, clip, preset, output, *overrides):
    return plan_mod.build(preset, host=host, input=str(clip), output=str(output), overrides=overrides)


# ------------------------------------------------------------ suffix -> codec


@pytest.mark.parametrize("preset,name,codec,kind", [
    ("uhd-exr-draft", "out.mov", "prores_hq", "movie"),
    ("uhd-exr-draft", "out.mp4", "h264_10", "movie"),
    ("uhd-draft", "out.####.exr", "exr", "sequence"),
    ("uhd-draft", "out.####.png", "png16", "sequence"),
    ("uhd-draft", "out.####.tif", "tiff16", "sequence"),
    ("uhd-draft", "out.mp4", "h264_10", "movie"),
    ("uhd-draft", "out.mxf", "dnxhr_hqx", "movie"),
])
def test_suffix_picks_the_codec_when_the_presets_cannot_write_it(tmp_path, host, clip, preset, name, codec, kind):
    p = _render(host, clip, preset, tmp_path / name)
    assert (p.output.codec, p.output.kind) == (codec, kind)
    notes = [w for w in p.warnings if "cannot write" in w]
    assert len(notes) == 1 and f"writing {codec}" in notes[0] and "--set output.codec" in notes[0]


@pytest.mark.parametrize("preset,name,codec", [
    ("uhd-draft", "out.mov", "prores_hq"),
    ("hd-h265-delivery-draft", "out.mp4", "h265_10"),
    ("hd-h265-delivery-draft", "out.mov", "h265_10"),  # HEVC goes into .mov too: the preset's wins
    ("uhd-exr-draft", "out.####.exr", "exr"),
])
def test_the_presets_codec_wins_where_it_fits(tmp_path, host, clip, preset, name, codec):
    p = _render(host, clip, preset, tmp_path / name)
    assert p.output.codec == codec
    assert not [w for w in p.warnings if "cannot write" in w]


def test_a_changed_codec_drops_the_presets_options_and_keeps_set_ones(tmp_path, host, clip):
    p = _render(host, clip, "uhd-exr-draft", tmp_path / "out.####.png", "output.options.compression=9")
    assert p.output.codec == "png16" and p.output.options["compression"] == 9
    note = next(w for w in p.warnings if "cannot write" in w)
    assert "output.options for exr (pixel)" in note


def test_an_explicit_codec_is_never_replaced(tmp_path, host, clip):
    with pytest.raises(PlanError, match=r"codec 'exr' writes one file per frame"):
        _render(host, clip, "uhd-draft", tmp_path / "out.mov", "output.codec=exr")


def test_prores_into_mp4_is_refused_at_plan_time(tmp_path, host, clip):
    # the movie writer takes .mp4 for H.264/H.265 only; the plan used to accept it and the writer failed later
    with pytest.raises(PlanError, match=r"codec 'prores_hq' writes \.mov") as e:
        _render(host, clip, "uhd-draft", tmp_path / "out.mp4", "output.codec=prores_hq")
    assert "out.mov" in str(e.value)


# ------------------------------------------------------- generate: which preset


@pytest.mark.parametrize("model,size,preset", [
    ("sdxl", None, "sdxl-2k-still"),
    ("sdxl", (2048, 2048), "sdxl-2k-still"),
    ("sdxl", (4096, 2304), "sdxl-4k-still"),
    ("sdxl", (8192, 8192), "sdxl-8k-still"),
    ("sdxl", (12000, 12000), "sdxl-8k-still"),  # beyond every preset: the largest
    ("turbo", None, "sdxl-turbo-2k-still"),
    ("turbo", (4096, 4096), "sdxl-turbo-4k-still"),
    ("wan", None, "wan-2k-t2v"),
    ("wan", (2880, 1632), "wan-3k-t2v"),
    ("wan", (3840, 2160), "wan-4k-t2v"),
])
def test_generate_chooses_the_preset_from_the_model_folder(host, models, model, size, preset):
    name, note = presets_mod.for_model(str(models[model]), size, host)
    assert name == preset
    assert "model_index.json" in note and preset in note


def test_generate_plan_without_preset_is_the_sdxl_still_and_png16(tmp_path, host, models):
    p = plan_mod.build(None, host=host, output=str(tmp_path / "still.png"), model=str(models["sdxl"]),
                       prompt="x", mode="generate", size=(2048, 2048), device="cpu")
    assert (p.preset, p.backend, p.output.codec, p.output.kind) == ("sdxl-2k-still", "sdxl", "png16", "still")
    assert any("preset sdxl-2k-still chosen" in w for w in p.warnings)


@pytest.mark.parametrize("model,words", [
    ("flux", ["model_index.json", "'FluxPipeline'", "--preset", "sdxl-2k-still", "wan-2k-t2v"]),
    ("bare", ["model_index.json", "--preset", "sdxl-4k-still"]),
])
def test_an_unrecognised_folder_names_model_index_and_real_presets(host, models, model, words):
    with pytest.raises(PlanError) as e:
        presets_mod.for_model(str(models[model]), None, host)
    for w in words:
        assert w in str(e.value)


def test_a_single_weights_file_needs_a_preset(host, tmp_path):
    f = tmp_path / "sdxl.safetensors"
    f.write_bytes(b"\0" * 16)
    with pytest.raises(PlanError, match="(?s)model_index.json.*--preset NAME \\(sdxl-2k-still"):
        presets_mod.for_model(str(f), None, host)


def test_generate_without_preset_or_model_says_what_to_give(host):
    with pytest.raises(PlanError, match="--preset") as e:
        presets_mod.for_model(None, None, host)
    assert "sdxl-2k-still" in str(e.value)


# ------------------------------------------------------------------------ CLI


def test_cli_generate_dry_run_without_preset(tmp_path, models):
    r = run_cli(["generate", "--model", str(models["sdxl"]), "--prompt", "x", "-o", str(tmp_path / "still.png"),
                 "--dry-run"])
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["preset"] == "sdxl-2k-still" and plan["output"]["codec"] == "png16"


def test_cli_generate_unrecognised_folder_exits_2(tmp_path, models):
    r = run_cli(["generate", "--model", str(models["flux"]), "--prompt", "x", "-o", str(tmp_path / "s.png")])
    assert r.returncode == 2, r.stderr
    assert "model_index.json" in r.stderr and "--preset" in r.stderr and "sdxl-2k-still" in r.stderr


def test_cli_render_exr_preset_to_mov(tmp_path, clip):
    out = tmp_path / "m.mov"
    r = run_cli(["render", str(clip), "-o", str(out), "--preset", "uhd-exr-draft",
                 "--set", "output.width=64", "--set", "output.height=48", "--progress", "plain"])
    assert r.returncode == 0, r.stderr
    assert sum("writing prores_hq" in line for line in r.stdout.splitlines() if line.startswith("WARNING")) == 1
    assert "prores" in ffjudge.stream_line(out) and ffjudge.frame_count(out) == 2
    manifest = json.loads(out.with_name("m.mov.manifest.json").read_text())
    assert sum("writing prores_hq" in w for w in manifest["plan"]["warnings"]) == 1


def test_cli_generate_tiny_sdxl_to_png_without_preset(tmp_path):
    """The issue's command: `generate --model sdxl-folder --prompt ... -o still.png` (a tiny SDXL)."""
    from cinescale_sdxl.tiny import save_tiny_sdxl

    model = save_tiny_sdxl(tmp_path / "tiny-sdxl")
    out = tmp_path / "still.png"
    r = run_cli(["generate", "--model", str(model), "--prompt", "a lighthouse", "-o", str(out), "--size", "128x128",
                 "--device", "cpu", "--set", "stages.0.steps=1", "--set", "stages.1.steps=1", "--progress", "plain"])
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stdout.splitlines() if line.startswith("WARNING")]
    assert any("preset sdxl-2k-still chosen" in w for w in warned) and any("writing png16" in w for w in warned)
    line = ffjudge.stream_line(out)
    assert "png" in line and "rgb48be" in line and "128x128" in line


# ------------------------------------------- generate: a video model into one still


def test_a_video_model_into_a_single_still_is_refused_at_plan_time(tmp_path, host, models):
    """A Wan model makes num_frames frames; -o still.png holds one. Refused in
    plan.build (config-only folder: no weights are read), not after generating."""
    with pytest.raises(PlanError) as e:
        plan_mod.build(None, host=host, output=str(tmp_path / "still.png"), model=str(models["wan"]), prompt="x",
                       mode="generate", device="cpu")
    msg = str(e.value)
    assert "still.png" in msg and "backend_options.num_frames = 81" in msg
    assert f"-o {tmp_path / 'still.####.png'}" in msg and f"-o {tmp_path / 'still.mov'}" in msg
    assert "--set backend_options.num_frames=1" in msg
    # each fix it names plans
    for out, overrides, kind in (("still.####.png", (), "sequence"), ("still.mov", (), "movie"),
                                 ("still.png", ("backend_options.num_frames=1",), "still")):
        p = plan_mod.build(None, host=host, output=str(tmp_path / out), model=str(models["wan"]), prompt="x",
                           mode="generate", device="cpu", overrides=overrides)
        assert p.output.kind == kind


def test_cli_video_model_into_a_single_still_exits_2_without_torch(tmp_path, models):
    # torch and diffusers made unimportable: the refusal comes from the plan, before any model work
    blocked = tmp_path / "blocked"
    for name in ("torch", "diffusers", "transformers"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked by this test')\n")
    out = tmp_path / "still.png"
    r = run_cli(["generate", "--model", str(models["wan"]), "--prompt", "x", "-o", str(out), "--device", "cpu"],
                env=cli_env(blocked))
    assert r.returncode == 2, r.stderr
    assert f"output '{out}' is a single still, but backend_options.num_frames = 81" in r.stderr, r.stderr
    assert "still.####.png" in r.stderr and "still.mov" in r.stderr and not out.exists()
