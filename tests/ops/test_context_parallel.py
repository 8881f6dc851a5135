"""Context parallelism, the core capability of any DiT adapter that declares
its attention (``cinescale_post.ops.context_parallel``), on the Wan adapter.

The distributed tests start ONE real ``torchrun --nproc_per_node 2`` launch on
the gloo backend (CPU): the two processes load the same saved tiny Wan folder
(random weights) and run, with diffusers' own context parallelism,

* a two-stage CineScale cascade through the core render driver, which
  installs context parallelism itself from ``backend_options.context_parallel``
  after ``WanAdapter.load`` (NTK [1,3,3] -> [1,4,4], temperature coef 1.5 ->
  2.0, CFG, 2 steps a stage), Ulysses 2 and ring 2, and removes it at unload;
* a single transformer forward with NTK [1,3,3] and a temperature *rule*
  whose thresholds (20 / 60 tokens per frame) make the factor depend on
  whether tokens per frame are counted over the whole frame (64 -> coef 2.0)
  or over one rank's shard (32 -> coef 1.5);
* the error paths (world size mismatch, a token count that does not split)
  and the handle's restore.

This module compares the results with the same computations in one process.
Ring attention on CPU uses the CPU twin of diffusers' native-flash kernel
(``context_parallel._cpu_flash_forward_op``); everything else is stock diffusers.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("cinescale_wan")  # the DiT adapter this is checked on (plugins/cinescale-wan)

from cinescale_post.contracts.errors import PlanError  # noqa: E402

# 64 px -> 128 px over 9 frames: latents 3x8x8 (48 tokens) -> 3x16x16 (192 tokens), both split by 2.
CP_STAGES = (
    {"size": [64, 64], "steps": 2, "shift": 7.0, "ntk": [1, 3, 3], "attention_scale": 1.5},
    {"size": [128, 128], "steps": 2, "restart_step": 1, "shift": 11.0, "ntk": [1, 4, 4], "attention_scale": 2.0},
)
CP_OPTIONS = {"num_frames": 9, "max_sequence_length": 16}
FORWARD_LATENT = (3, 16, 16)  # 3 frames x 8 x 8 tokens = 192 tokens, 64 per frame
RULE = ((20, 1.5), (60, 2.0))  # whole frame (64 tokens) -> coef 2.0; a rank's shard (32) -> coef 1.5
NTK = (1.0, 3.0, 3.0)
TOL = 1e-5


# ------------------------------------------------------------------ shared computations


def _driver():
    from cinescale_post.testing import adapter_driver
    from cinescale_wan.backend import WanAdapter

    return adapter_driver(WanAdapter())


def _plan(d, folder, options, stages=CP_STAGES):
    from cinescale_post.testing import make_test_plan

    return make_test_plan(d, model=folder, stages=stages, options=options, size=(128, 128), mode="generate")


def _cascade(folder, options, stages=CP_STAGES):
    """Every stage's latent of a 2-stage cascade (no VAE), loaded from ``folder``
    by the driver as a render loads it; with what the driver installed."""
    from cinescale_wan.tiny import tiny_wan_prompt_embeds

    d = _driver()
    d.load(_plan(d, folder, options, stages))
    tr = d.model.denoiser
    info = {"device": str(d.model.device), "installed": d._parallel is not None}
    try:
        lad = d.ladder("generate", (128, 128))
        pe = tiny_wan_prompt_embeds(1, seed=1, length=16)
        npe = tiny_wan_prompt_embeds(1, seed=2, length=16)
        cond = d.model.condition("", guidance=5.0, prompt_embeds=(pe, npe))
        with torch.inference_mode():
            res = d.run_cascade(lad, cond, d.video_sources(123, lad, 3), frames=3, keep="all")
        return [r.latent.float().clone() for r in res], info
    finally:
        d.unload()
        info["removed_at_unload"] = (tr._parallel_config is None
                                     and all(getattr(p, "_parallel_config", None) is None
                                             for p in tr.attn_processors.values()))


def _forward(model, inputs, *, ntk=NTK, rule=RULE, factor=None):
    """One forward with NTK-RoPE and the temperature; returns (output, state)."""
    from cinescale_post.ops.attention_scale import AttentionScaleSpec, apply_attention_scale
    from cinescale_post.ops.handles import HandleGroup
    from cinescale_post.ops.rope import RopeSpec, apply_ntk_rope

    with HandleGroup("test") as g:
        if ntk is not None:
            g.add(apply_ntk_rope(model, RopeSpec(ntk)))
        t = g.add(apply_attention_scale(model, AttentionScaleSpec(rule=rule, factor=factor)))
        with torch.no_grad():
            out = model(**inputs, return_dict=False)[0]
        return out, {"tokens": t.state.tokens, "factor": t.state.factor, "calls": t.state.calls}


def _transformer(folder):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel.from_pretrained(str(Path(folder) / "transformer"), local_files_only=True).eval()


# ------------------------------------------------------------------ the torchrun worker


def _worker(folder: str, out: str) -> None:
    import torch.distributed as dist

    from cinescale_post.ops.context_parallel import enable_context_parallel
    from cinescale_wan.tiny import tiny_wan_inputs

    torch.set_num_threads(1)
    tensors: dict = {}
    info: dict = {}
    # 1. the driver path: load() initialises the process group from the torchrun environment and
    #    installs context parallelism on the adapter's denoisers (Wan declares its attention)
    for mode in ("ulysses", "ring"):
        lat, got = _cascade(folder, {**CP_OPTIONS, "context_parallel": {mode: 2}})
        for k, v in got.items():
            info[f"cascade_{mode}_{k}"] = v
        for i, z in enumerate(lat):
            tensors[f"cascade_{mode}_{i}"] = z
    rank = dist.get_rank()
    info["world"] = dist.get_world_size()
    info["backend"] = str(dist.get_backend())
    # 2. one forward: NTK + temperature rule under the split
    model = _transformer(folder)
    inputs = tiny_wan_inputs(latent=FORWARD_LATENT)
    for mode in ("ulysses", "ring"):
        h = enable_context_parallel([model], {mode: 2}, device="cpu", dtype=torch.float32)
        info[f"forward_{mode}_backend"] = h.backend
        try:
            o, state = _forward(model, inputs)
            info[f"forward_{mode}_state"] = state
            tensors[f"forward_{mode}"] = o
            procs = [p for p in model.attn_processors.values()]
            info[f"forward_{mode}_cp_on_processors"] = all(getattr(p, "_parallel_config", None) is not None
                                                           for p in procs)
            # a token count that does not split in two: 1 frame x 1 x 3 tokens
            try:
                with torch.no_grad():
                    model(**tiny_wan_inputs(latent=(1, 2, 6)), return_dict=False)
                info[f"odd_{mode}"] = "no error"
            except PlanError as exc:
                info[f"odd_{mode}"] = str(exc)
        finally:
            h.remove()
    # 3. the handle put the model back: no parallel config anywhere, single-process output
    info["restored"] = (model._parallel_config is None
                        and all(getattr(p, "_parallel_config", None) is None for p in model.attn_processors.values())
                        and all(getattr(p, "_attention_backend", None) is None
                                for p in model.attn_processors.values()))
    tensors["forward_restored"], _ = _forward(model, inputs)
    # 4. world-size mismatch
    try:
        enable_context_parallel([model], {"ulysses": 4}, device="cpu")
        info["mismatch"] = "no error"
    except PlanError as exc:
        info["mismatch"] = str(exc)
    torch.save(tensors, Path(out) / f"rank{rank}.pt")
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(info))
    dist.barrier()


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def cp_folder(tmp_path_factory):
    from cinescale_wan.tiny import save_tiny_wan

    return str(save_tiny_wan(tmp_path_factory.mktemp("wan-cp") / "tiny-wan", seed=3, text_encoder=False))


@pytest.fixture(scope="module")
def launched(cp_folder, tmp_path_factory):
    """Run the 2-process torchrun launch once; returns (per-rank tensors, per-rank info)."""
    out = tmp_path_factory.mktemp("wan-cp-out")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), cp_folder, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    tensors = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    infos = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return tensors, infos


@pytest.fixture(scope="module")
def single(cp_folder):
    """The same computations in this one process."""
    from cinescale_post.ops.attention_scale import attention_scale_factor
    from cinescale_wan.tiny import tiny_wan_inputs

    torch.set_num_threads(1)
    assert attention_scale_factor(32, rule=RULE) != attention_scale_factor(64, rule=RULE)
    ref: dict = {}
    ref["cascade"], got = _cascade(cp_folder, CP_OPTIONS)
    assert not got["installed"]  # no option, nothing installed
    model = _transformer(cp_folder)
    inputs = tiny_wan_inputs(latent=FORWARD_LATENT)
    ref["forward"], ref["forward_state"] = _forward(model, inputs)
    ref["forward_no_temperature"], _ = _forward(model, inputs, factor=1.0)
    # what counting one rank's shard (32 tokens per frame) would give under RULE: coef 1.5
    ref["forward_shard_rule"], _ = _forward(model, inputs, factor=attention_scale_factor(32, rule=RULE))
    ref["forward_no_ntk"], _ = _forward(model, inputs, ntk=None)
    nc = dict(CP_OPTIONS)
    st = [dict(s, attention_scale=False) for s in CP_STAGES]
    ref["cascade_no_temperature"], _ = _cascade(cp_folder, nc, stages=st)
    return ref


def _maxdiff(a, b):
    return float((a.float() - b.float()).abs().max())


# ------------------------------------------------------------------ distributed: equality


@pytest.mark.parametrize("mode", ["ulysses", "ring"])
def test_parallel_forward_equals_single_process(launched, single, mode):
    tensors, infos = launched
    ref = single["forward"]
    # controls: what a dropped temperature / a shard-based coef / dropped NTK would give
    for k in ("forward_no_temperature", "forward_shard_rule", "forward_no_ntk"):
        assert _maxdiff(single[k], ref) > 1e-3, k
    for r in range(2):
        d = _maxdiff(tensors[r][f"forward_{mode}"], ref)
        assert d <= TOL, f"rank {r} {mode}: max|diff| {d:.3g}"
        st = infos[r][f"forward_{mode}_state"]
        # tokens per frame of the WHOLE frame (8 x 8), not of the rank's shard
        assert st["tokens"] == 64 == single["forward_state"]["tokens"]
        assert st["factor"] == pytest.approx(math.log(3600 * 2.0) / math.log(3600))
        assert st["calls"] == 2  # both self-attention layers went through the temperature processor
        assert infos[r][f"forward_{mode}_cp_on_processors"]
    assert infos[0][f"forward_{mode}_backend"] == ("native" if mode == "ulysses" else "_native_flash")


@pytest.mark.parametrize("mode", ["ulysses", "ring"])
def test_parallel_cascade_equals_single_process(launched, single, mode):
    tensors, infos = launched
    assert infos[0]["world"] == 2 and infos[0]["backend"] == "gloo"
    for r in range(2):
        i = infos[r]
        assert i[f"cascade_{mode}_device"] == "cpu"
        assert i[f"cascade_{mode}_installed"] and i[f"cascade_{mode}_removed_at_unload"]
    for i, ref in enumerate(single["cascade"]):
        ctrl = _maxdiff(single["cascade_no_temperature"][i], ref)
        assert ctrl > 1e-3, f"stage {i}: the temperature does not matter here ({ctrl:.3g})"
        for r in range(2):
            d = _maxdiff(tensors[r][f"cascade_{mode}_{i}"], ref)
            assert d <= TOL, f"stage {i} rank {r} {mode}: max|diff| {d:.3g} (control {ctrl:.3g})"
    assert tuple(single["cascade"][-1].shape) == (1, 16, 3, 16, 16)


def test_parallel_errors_and_restore(launched, single):
    tensors, infos = launched
    for r in range(2):
        i = infos[r]
        assert "splits over 4 processes, the process group has 2" in i["mismatch"], i["mismatch"]
        for mode in ("ulysses", "ring"):
            assert "3 tokens" in i[f"odd_{mode}"] and "2 equal parts" in i[f"odd_{mode}"], i[f"odd_{mode}"]
        assert i["restored"] is True
        assert _maxdiff(tensors[r]["forward_restored"], single["forward"]) <= TOL


# ------------------------------------------------------------------ one process: validation


def _validate(options):
    return _driver().validate(stages=(), options=options, size=(64, 64), source=None)[1]


def test_option_validation_names_key_value_and_allowed():
    from cinescale_post.ops.context_parallel_spec import parse_context_parallel

    assert parse_context_parallel({"ulysses": 8}).degree == 8
    assert parse_context_parallel({"ulysses": 2, "ring": 4}).describe() == "ulysses 2 x ring 4"
    assert not parse_context_parallel({}).enabled
    # a driver-owned option: validated by the core, recorded only when set, not in the adapter's options
    assert _validate({"context_parallel": {"ring": 8}})["context_parallel"] == {"ring": 8}
    assert "context_parallel" not in _validate({}) and "context_parallel" not in _validate({"context_parallel": {}})
    assert "context_parallel" not in _driver().model_options(_validate({"context_parallel": {"ring": 8}}))
    cases = [
        ({"ulysess": 2}, "unknown key(s) ulysess", "ulysses, ring"),
        ({"ulysses": 0}, "context_parallel.ulysses = 0", "1..1024"),
        ({"ring": 2.0}, "context_parallel.ring = 2.0", "integer"),
        ({"ulysses": True}, "context_parallel.ulysses = True", "integer"),
        ({"ulysses": 1}, "splits over 1 process", "ulysses and/or ring > 1"),
        ({"ring": 2, "attention_backend": "native"}, "cannot run ring attention", "_native_flash"),
        ({"ulysses": 2, "attention_backend": "flash_hub"}, "attention_backend = 'flash_hub'", "native"),
        ({"ulysses": 2, "ring": 2, "anything": True}, "anything = true", "not both"),
        ({"ulysses": 2, "anything": "yes"}, "anything = 'yes'", "true or false"),
        ([2], "must be a table", "ulysses = 8"),
    ]
    for value, msg, fix in cases:
        with pytest.raises(PlanError) as e:
            _validate({"context_parallel": value})
        text = str(e.value) + " " + str(getattr(e.value, "fix", ""))
        assert msg in text and fix in text, (value, text)


def test_single_process_without_torchrun_is_refused(monkeypatch, cp_folder):
    for k in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        monkeypatch.delenv(k, raising=False)
    d = _driver()
    plan = _plan(d, cp_folder, {**CP_OPTIONS, "context_parallel": {"ulysses": 2}})
    with pytest.raises(PlanError, match="torchrun") as e:
        d.load(plan)  # refused before any weight is loaded
    assert "--nproc_per_node 2" in str(getattr(e.value, "fix", "")) and d.model is None


def test_an_adapter_that_declares_no_attention_is_refused_at_plan_time():
    from cinescale_post.api import Capabilities, ModelAdapter
    from cinescale_post.testing import adapter_driver

    class NoAttention(ModelAdapter):
        id = "no-attention"
        capabilities = Capabilities(tasks=frozenset({"t2v"}), family="dit", latent_layout="video")

        def load(self, plan):  # pragma: no cover - never reached
            raise AssertionError

    d = adapter_driver(NoAttention())
    with pytest.raises(PlanError, match="declares no self-attention") as e:
        d.validate(stages=(), options={"context_parallel": {"ulysses": 2}}, size=(64, 64), source=None)
    assert "leave context_parallel out" in str(getattr(e.value, "fix", ""))
    assert "context_parallel" not in d.validate(stages=(), options={}, size=(64, 64), source=None)[1]


def test_declared_attention_must_match_the_model(cp_folder):
    from cinescale_post.ops.context_parallel import _check_declared

    model = _transformer(cp_folder)
    _check_declared(model, ("blocks.*.attn1.processor",))  # Wan's declaration
    with pytest.raises(PlanError, match="matches none"):
        _check_declared(model, ("down_blocks.*.attn1.processor",))
    with pytest.raises(PlanError, match="_cp_plan"):
        _check_declared(torch.nn.Linear(2, 2), ())


def test_heads_and_backend_rules(cp_folder):
    from cinescale_post.ops.context_parallel import check_model, choose_backend
    from cinescale_post.ops.context_parallel_spec import parse_context_parallel

    model = _transformer(cp_folder)  # 2 heads
    check_model(model, parse_context_parallel({"ulysses": 2}))
    check_model(model, parse_context_parallel({"ring": 8}))
    check_model(model, parse_context_parallel({"ulysses": 4, "anything": True}))
    with pytest.raises(PlanError, match="2 attention heads"):
        check_model(model, parse_context_parallel({"ulysses": 4}))
    cuda = torch.device("cuda")
    assert choose_backend(parse_context_parallel({"ulysses": 8}), cuda, torch.bfloat16) == "native"
    assert choose_backend(parse_context_parallel({"ring": 8}), cuda, torch.bfloat16) == "_native_flash"
    assert choose_backend(parse_context_parallel({"ring": 2}), "cpu", torch.float32) == "_native_flash"
    with pytest.raises(PlanError, match="log-sum-exp"):
        choose_backend(parse_context_parallel({"ring": 8}), cuda, torch.float32)


def test_cpu_flash_op_is_scaled_attention_with_lse():
    """The CPU twin used for ring attention: same output as SDPA with the
    given scale, and the log-sum-exp of the scaled logits."""
    from cinescale_post.ops.context_parallel import _cpu_flash_forward_op

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 10, 2, 12, generator=g) for _ in range(3))  # (B, S, H, D)
    scale = 1.0847 / math.sqrt(12)
    out, lse = _cpu_flash_forward_op(None, q, k, v, scale=scale, return_lse=True)
    want = torch.nn.functional.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)),
                                                            scale=scale).transpose(1, 2)
    logits = torch.einsum("bshd,bthd->bhst", q, k) * scale
    assert _maxdiff(out, want) < 1e-5
    assert _maxdiff(lse, logits.logsumexp(-1).transpose(1, 2)) < 1e-5
    assert _maxdiff(out, _cpu_flash_forward_op(None, q, k, v, scale=None)) > 1e-3  # the scale is used


if __name__ == "__main__":  # the torchrun worker: python -m torch.distributed.run ... this_file FOLDER OUT
    _worker(sys.argv[1], sys.argv[2])
