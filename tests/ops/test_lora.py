"""LoRA (ALGORITHM.md 4.6): safe reading, key conversion from original Wan
names, merge at scale 1.0 (W + B @ A), unmerged branch, exact restore."""

import collections

import pytest
import torch

from cinescale_post.contracts.errors import WeightsError
from cinescale_post.ops.lora import (apply_lora, convert_lora_state_dict, kohya_to_dotted, load_lora, lora_format,
                                     read_lora_file, wan_to_diffusers_name)
from cinescale_wan.tiny import build_tiny_wan, tiny_wan_inputs

R = 2
ORIGINAL = {  # original Wan module -> (out, in) of the tiny model
    "blocks.{i}.self_attn.q": (24, 24), "blocks.{i}.self_attn.k": (24, 24), "blocks.{i}.self_attn.v": (24, 24),
    "blocks.{i}.self_attn.o": (24, 24), "blocks.{i}.cross_attn.q": (24, 24), "blocks.{i}.ffn.0": (32, 24),
    "blocks.{i}.ffn.2": (24, 32),
}
EXPECTED = {
    "blocks.{i}.self_attn.q": "blocks.{i}.attn1.to_q", "blocks.{i}.self_attn.k": "blocks.{i}.attn1.to_k",
    "blocks.{i}.self_attn.v": "blocks.{i}.attn1.to_v", "blocks.{i}.self_attn.o": "blocks.{i}.attn1.to_out.0",
    "blocks.{i}.cross_attn.q": "blocks.{i}.attn2.to_q", "blocks.{i}.ffn.0": "blocks.{i}.ffn.net.0.proj",
    "blocks.{i}.ffn.2": "blocks.{i}.ffn.net.2",
}


@pytest.fixture
def model():
    torch.set_num_threads(1)
    return build_tiny_wan(0, text_encoder=False)["transformer"]


def synthetic_lora(seed=0, fmt="diffsynth", alpha=None):
    """A CineScale-style state dict: PEFT keys on original Wan names (or the
    kohya, kohya-flattened or diffusers forms of the same update)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i in range(2):
        for mod, (out, inp) in ORIGINAL.items():
            m = mod.format(i=i)
            a = torch.randn(R, inp, generator=g) * 0.1
            b = torch.randn(out, R, generator=g) * 0.1
            if fmt == "diffsynth":
                sd[f"{m}.lora_A.default.weight"], sd[f"{m}.lora_B.default.weight"] = a, b
                if alpha is not None:
                    sd[f"{m}.alpha"] = torch.tensor(float(alpha))
            elif fmt == "kohya":
                sd[f"diffusion_model.{m}.lora_down.weight"], sd[f"diffusion_model.{m}.lora_up.weight"] = a, b
                sd[f"diffusion_model.{m}.alpha"] = torch.tensor(4.0 if alpha is None else float(alpha))
            elif fmt == "kohya-flat":  # musubi-tuner / sd-scripts: lora_unet_blocks_0_self_attn_q
                flat = "lora_unet_" + m.replace(".", "_")
                sd[f"{flat}.lora_down.weight"], sd[f"{flat}.lora_up.weight"] = a, b
                if alpha is not None:
                    sd[f"{flat}.alpha"] = torch.tensor(float(alpha))
            else:  # diffusers / PEFT safetensors
                d = wan_to_diffusers_name(m)
                sd[f"transformer.{d}.lora_A.weight"], sd[f"transformer.{d}.lora_B.weight"] = a, b
                if alpha is not None:
                    sd[f"transformer.{d}.alpha"] = torch.tensor(float(alpha))
    return sd


def test_key_conversion_from_original_wan_names():
    pairs = convert_lora_state_dict(synthetic_lora())
    want = {EXPECTED[k].format(i=i) for i in range(2) for k in ORIGINAL}
    assert set(pairs) == want
    assert wan_to_diffusers_name("blocks.7.cross_attn.k_img") == "blocks.7.attn2.add_k_proj"
    assert wan_to_diffusers_name("head.head") == "proj_out"
    assert wan_to_diffusers_name("blocks.0.attn1.to_q") == "blocks.0.attn1.to_q"  # already diffusers
    p = pairs["blocks.1.attn1.to_out.0"]
    assert p.rank == R and p.alpha is None and p.factor() == 1.0


def test_three_formats_convert_to_the_same_modules():
    a = convert_lora_state_dict(synthetic_lora(fmt="diffsynth"))
    b = convert_lora_state_dict(synthetic_lora(fmt="kohya"))
    c = convert_lora_state_dict(synthetic_lora(fmt="diffusers"))
    assert set(a) == set(b) == set(c)
    assert b["blocks.0.attn1.to_q"].factor() == pytest.approx(4.0 / R)  # alpha / rank
    assert torch.equal(a["blocks.0.attn1.to_q"].down, c["blocks.0.attn1.to_q"].down)


def test_merge_is_w_plus_b_at_a_and_restores_exactly(model):
    sd = synthetic_lora()
    pairs = convert_lora_state_dict(sd)
    mods = dict(model.named_modules())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = tiny_wan_inputs()
    with torch.no_grad():
        ref = model(**inputs, return_dict=False)[0]
        with apply_lora(model, pairs, scale=1.0, merge=True):
            for orig in ORIGINAL:
                name = EXPECTED[orig].format(i=1)
                a = sd[f"{orig.format(i=1)}.lora_A.default.weight"]
                b = sd[f"{orig.format(i=1)}.lora_B.default.weight"]
                naive = before[f"{name}.weight"] + b @ a
                assert torch.allclose(mods[name].weight, naive, atol=1e-6)
            merged = model(**inputs, return_dict=False)[0]
        assert not torch.equal(merged, ref)
        after = model.state_dict()
        assert all(torch.equal(after[k], before[k]) for k in before)
        assert torch.equal(model(**inputs, return_dict=False)[0], ref)
        with apply_lora(model, pairs, merge=False):  # unmerged branch: same function
            unmerged = model(**inputs, return_dict=False)[0]
        assert torch.allclose(unmerged, merged, atol=1e-5)
        assert torch.equal(model(**inputs, return_dict=False)[0], ref)


def test_ckpt_is_read_with_weights_only_and_safetensors(tmp_path, model):
    from safetensors.torch import save_file

    sd = synthetic_lora()
    torch.save(sd, tmp_path / "t2v_tiny_ntk20.ckpt")
    assert set(read_lora_file(tmp_path / "t2v_tiny_ntk20.ckpt")) == set(sd)
    save_file(synthetic_lora(fmt="diffusers"), str(tmp_path / "lora.safetensors"))
    assert set(load_lora(tmp_path / "lora.safetensors")) == set(load_lora(tmp_path / "t2v_tiny_ntk20.ckpt"))


class Evil:
    def __reduce__(self):
        return (print, ("this would run code",))


@pytest.mark.parametrize("extra", [
    {"epoch": 3},  # a plain non-tensor value
    {"meta": {"rank": 2}},  # a nested dict
    {"hparams": collections.OrderedDict(lr=torch.tensor(1.0))},
])
def test_ckpt_with_a_non_tensor_object_is_refused(tmp_path, extra):
    sd = synthetic_lora()
    sd.update(extra)
    torch.save(sd, tmp_path / "bad.ckpt")
    with pytest.raises(WeightsError, match="not tensors"):
        read_lora_file(tmp_path / "bad.ckpt")


def test_ckpt_with_code_is_refused(tmp_path):
    torch.save({"x": torch.zeros(1), "evil": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(WeightsError, match="refusing"):
        read_lora_file(tmp_path / "evil.ckpt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="mapping"):
        read_lora_file(tmp_path / "list.pt")


def test_other_refusals(tmp_path, model):
    (tmp_path / "x.bin").write_bytes(b"x")
    with pytest.raises(WeightsError, match="unsupported"):
        read_lora_file(tmp_path / "x.bin")
    with pytest.raises(WeightsError, match="not found"):
        read_lora_file(tmp_path / "missing.ckpt")
    with pytest.raises(WeightsError, match="no LoRA weights"):
        convert_lora_state_dict({"blocks.0.self_attn.q.weight": torch.zeros(2, 2)})
    with pytest.raises(WeightsError, match="both halves"):
        convert_lora_state_dict({"blocks.0.self_attn.q.lora_A.weight": torch.zeros(2, 24)})
    big = {"blocks.0.self_attn.q.lora_A.weight": torch.zeros(2, 48), "blocks.0.self_attn.q.lora_B.weight":
           torch.zeros(48, 2)}
    with pytest.raises(WeightsError, match="another model size"):
        apply_lora(model, convert_lora_state_dict(big))
    ghost = {"blocks.9.self_attn.q.lora_A.weight": torch.zeros(2, 24), "blocks.9.self_attn.q.lora_B.weight":
             torch.zeros(24, 2)}
    with pytest.raises(WeightsError, match="not found"):
        apply_lora(model, convert_lora_state_dict(ghost))


# ------------------------------------------------------------ formats and alpha (issue 12)


def test_formats_are_told_apart():
    assert lora_format(synthetic_lora(fmt="diffsynth")) == "diffsynth"
    assert lora_format(synthetic_lora(fmt="diffsynth", alpha=8)) == "diffsynth"
    assert lora_format(synthetic_lora(fmt="diffusers")) == "diffusers"
    assert lora_format(synthetic_lora(fmt="kohya")) == "kohya"
    assert lora_format(synthetic_lora(fmt="kohya-flat")) == "kohya"
    assert kohya_to_dotted("lora_unet_blocks_12_ffn_2") == "blocks.12.ffn.2"
    assert kohya_to_dotted("lora_unet_blocks_0_cross_attn_v_img") == "blocks.0.cross_attn.v_img"
    assert kohya_to_dotted("lora_unet_head_head") == "head.head"


def test_diffsynth_alpha_is_ignored_as_in_the_reference(caplog):
    """CineScale / DiffSynth files: W + 1.0 * B @ A whatever .alpha says (the
    reference loader never reads it); the ignored alphas are named."""
    sd = synthetic_lora(fmt="diffsynth", alpha=8)
    with caplog.at_level("WARNING", logger="cinescale_post.ops.lora"):
        pairs = convert_lora_state_dict(sd)
    p = pairs["blocks.0.attn1.to_q"]
    assert p.format == "diffsynth" and p.alpha is None and p.factor() == 1.0
    a, b = sd["blocks.0.self_attn.q.lora_A.default.weight"], sd["blocks.0.self_attn.q.lora_B.default.weight"]
    assert torch.equal(p.delta(), b @ a)
    assert "alpha" in caplog.text and "blocks.0.self_attn.q.alpha" in caplog.text


@pytest.mark.parametrize("fmt", ["kohya", "kohya-flat", "diffusers"])
def test_kohya_and_diffusers_alpha_scale_by_alpha_over_rank(fmt):
    pairs = convert_lora_state_dict(synthetic_lora(fmt=fmt, alpha=8))
    p = pairs["blocks.1.attn1.to_out.0"]
    assert p.format == fmt.split("-")[0] and p.factor() == pytest.approx(8 / R)
    assert torch.allclose(p.delta(), (p.up @ p.down) * 4.0)
    assert set(pairs) == set(convert_lora_state_dict(synthetic_lora()))


@pytest.mark.parametrize("fmt", ["kohya-flat", "diffusers"])
def test_without_alpha_the_factor_is_one(fmt):
    """kohya without .alpha means alpha = rank; diffusers/PEFT without it: lora_alpha = r."""
    assert convert_lora_state_dict(synthetic_lora(fmt=fmt))["blocks.0.ffn.net.2"].factor() == 1.0


def test_unrelated_tensors_are_ignored_with_a_warning_naming_them(caplog, model):
    sd = synthetic_lora()
    sd["training.epoch"] = torch.tensor(3)
    sd["lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = torch.zeros(2, 8)
    sd["lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"] = torch.zeros(8, 2)
    with caplog.at_level("WARNING", logger="cinescale_post.ops.lora"):
        pairs = convert_lora_state_dict(sd)
    assert set(pairs) == set(convert_lora_state_dict(synthetic_lora()))
    assert "training.epoch" in caplog.text and "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight" \
        in caplog.text and "3 tensor(s)" in caplog.text
    with apply_lora(model, pairs):  # and the rest still applies
        pass
