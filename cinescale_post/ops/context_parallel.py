"""Context parallelism for any DiT: one shot's forwards split over the N
processes of a ``torchrun`` launch (diffusers' own context parallelism).

A core capability of every model adapter whose :class:`~cinescale_post.api.
Capabilities` declares ``attention`` (the processor-name patterns of its
self-attention). The user asks for it with a driver-owned option::

    torchrun --standalone --nproc_per_node 8 -m cinescale_post generate wan-4k-t2v \\
        --model /models/Wan2.1-T2V-14B-Diffusers -o owl.mov \\
        --set backend_options.context_parallel.ulysses=8

``backend_options.context_parallel = {ulysses = N}`` (or ``{ring = N}``, or
both with ``ulysses * ring = N``) is validated at plan time by
:func:`~cinescale_post.ops.context_parallel_spec.parse_context_parallel` (no torch). The render driver
(:class:`cinescale_post.render.driver.RenderDriver`) then, once per load:

1. :func:`~cinescale_post.ops.distributed.init_distributed` before the adapter loads (no weight has moved):
   the process group from the torchrun environment (NCCL for CUDA tensors
   with gloo for CPU ones, gloo on CPU) and this rank's device
   (``cuda:LOCAL_RANK``, made current);
2. :func:`enable_context_parallel` on ``Model.denoisers`` right after the
   adapter's ``load`` (so after its load-time changes such as LoRA) and
   before any stage handle; the handle is removed before the model unloads.

What is used (diffusers 0.42, ``ModelMixin.enable_parallelism`` with the
denoiser's own ``_cp_plan``; a model class without one cannot be split): the
``_cp_plan`` says where the patchified sequence is chunked into N equal parts
(Wan: before ``blocks.0``, RoPE output chunked the same way, ``proj_out``
all-gathered so every rank returns the whole model output); every attention
processor gets the parallel config, so self-attention runs as Ulysses
(all-to-all over heads) and/or ring attention (K/V passed round the ranks,
online-softmax merge). Everything else (text encoder, VAE, scheduler, noise)
runs identically on every rank.

Why the method's patches stay correct under the split (checked by
``tests/ops/test_context_parallel.py`` on 2 CPU processes):

* NTK-RoPE (:func:`cinescale_post.ops.rope.apply_ntk_rope`) rebuilds the
  rope module's ``freqs_cos``/``freqs_sin`` buffers; the module computes the
  tables of the *whole* sequence and the plan splits its output, so each rank
  gets exactly the rows of its own tokens.
* The attention temperature (:func:`cinescale_post.ops.attention_scale.
  apply_attention_scale`) is chosen by a forward pre-hook from the 5-D latent
  (B, C, F, H, W), which the plan never splits, so tokens per frame are those
  of the whole frame on every rank. Its processor passes ``scale=`` to
  ``dispatch_attention_fn`` together with the ``_parallel_config`` it copies
  from the processor it wraps; diffusers' Ulysses/ring functions forward
  ``scale`` to the kernel of every chunk. So it must be installed after this
  module's handle and removed before it (stage handles are).

Contract on the denoiser (a diffusers ``ModelMixin``): ``_cp_plan``,
``enable_parallelism``, ``config.num_attention_heads`` and
``config.patch_size`` (t, h, w) with 5-D ``hidden_states`` (B, C, F, H, W).

Limits: the token count of every forward (F/pt x H/ph x W/pw latent cells)
must divide by N, and ``heads`` by the Ulysses degree, unless ``anything =
true`` (diffusers' uneven modes, one kind of parallelism only). Ring attention
needs a kernel that returns the log-sum-exp: on CUDA ``_native_flash``
(bf16/fp16); on CPU (tests) the same diffusers ring code runs with the CPU
twin of that kernel (:func:`_cpu_flash_forward_op`). Inference only.

Importing this module does not import torch or diffusers.
"""

from __future__ import annotations

import fnmatch
import logging
from typing import Any, Sequence

from cinescale_post.contracts.errors import PlanError
from cinescale_post.ops.context_parallel_spec import WHERE, ContextParallelSpec, parse_context_parallel

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- the model change


def choose_backend(spec: ContextParallelSpec, device: Any, dtype: Any) -> str:
    """The diffusers attention backend for ``spec`` on ``device``/``dtype``:
    ``native`` (torch SDPA) for Ulysses; for ring, a kernel that returns the
    log-sum-exp: ``_native_flash`` (CUDA bf16/fp16; its CPU twin on CPU)."""
    import torch

    dev = torch.device(device)
    if spec.attention_backend != "auto":
        return spec.attention_backend
    if spec.ring == 1:
        return "native"
    if dev.type == "cpu":
        return "_native_flash"  # with _cpu_flash_forward_op
    if dev.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
        return "_native_flash"
    raise PlanError(f"{WHERE}.ring = {spec.ring} on {dev.type} with {dtype}: ring attention needs a kernel that "
                    "returns the log-sum-exp (flash/cuDNN attention: bfloat16 or float16 on CUDA)",
                    fix="use dtype bfloat16, or ulysses instead of ring")


def check_model(model: Any, spec: ContextParallelSpec) -> None:
    """Head count vs the Ulysses degree (PlanError)."""
    heads = int(getattr(model.config, "num_attention_heads", 0) or 0)
    if spec.ulysses > 1 and not spec.anything and heads % spec.ulysses:
        ok = [d for d in range(2, heads + 1) if heads % d == 0]
        raise PlanError(f"{WHERE}.ulysses = {spec.ulysses}: the transformer has {heads} attention heads, which "
                        f"do not divide by {spec.ulysses}",
                        fix=f"use ulysses in {ok} (with ring for the rest, e.g. ulysses {ok[0] if ok else 1} x ring "
                            f"{spec.degree // (ok[0] if ok else 1)}), ring = {spec.degree}, or anything = true")


def _check_declared(model: Any, attention: Sequence[str]) -> None:
    """The denoiser can be split: it has a diffusers ``_cp_plan`` and, when
    the adapter declares ``attention`` patterns, processors that match them."""
    name = type(model).__name__
    if getattr(model, "_cp_plan", None) is None or not hasattr(model, "enable_parallelism"):
        raise PlanError(f"{WHERE}: {name} has no diffusers context-parallel plan (_cp_plan)",
                        fix="leave context_parallel out for this model, or give the model class a _cp_plan")
    procs = list(getattr(model, "attn_processors", {}) or {})
    if attention and not any(fnmatch.fnmatchcase(p, pat) for p in procs for pat in attention):
        raise PlanError(f"{WHERE}: the backend declares self-attention {list(attention)}, which matches none of "
                        f"{name}'s {len(procs)} attention processors",
                        fix="leave context_parallel out (the backend's Capabilities.attention does not fit this "
                            "model)")


def _cpu_flash_forward_op(ctx, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                          enable_gqa=False, return_lse=False, _save_ctx=True, _parallel_config=None):
    """diffusers' ``_native_flash_attention_forward_op`` for CPU tensors.

    The diffusers op calls ``aten._scaled_dot_product_flash_attention``,
    which has no CPU kernel; ``aten._scaled_dot_product_flash_attention_for_cpu``
    is its CPU twin with the same (out (B,H,S,D), logsumexp (B,H,S)) contract.
    Model layout in and out: (B, S, H, D) / (B, S, H). Inference only. CUDA
    tensors go to the original op unchanged.
    """
    import torch

    if query.device.type != "cpu":
        return _ORIGINAL_FLASH_OP[0](ctx, query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa,
                                     return_lse, _save_ctx=_save_ctx, _parallel_config=_parallel_config)
    if enable_gqa:
        raise ValueError("enable_gqa is not supported by the CPU flash op")
    q, k, v = (x.transpose(1, 2) for x in (query, key, value))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)
    out = out.transpose(1, 2).contiguous()
    lse = lse.transpose(1, 2).contiguous()
    return (out, lse) if return_lse else out


_ORIGINAL_FLASH_OP: list = []


def _cpu_ring_shim():
    """Route diffusers' native-flash forward op to :func:`_cpu_flash_forward_op`
    (CPU tensors only); a handle that restores the module attribute."""
    from diffusers.models import attention_dispatch as ad

    from cinescale_post.ops.handles import Handle, patch_attributes

    if ad._native_flash_attention_forward_op is _cpu_flash_forward_op:
        return Handle("cpu flash-attention op (already installed)")
    _ORIGINAL_FLASH_OP[:] = [ad._native_flash_attention_forward_op]
    return patch_attributes([(ad, "_native_flash_attention_forward_op", _cpu_flash_forward_op)],
                            "cpu flash-attention op for ring attention")


def _attention_modules(model: Any) -> list:
    from diffusers.models.attention import AttentionModuleMixin
    from diffusers.models.attention_processor import Attention

    return [m for m in model.modules() if isinstance(m, (Attention, AttentionModuleMixin))]


def _set_backend(model: Any, backend: str) -> list:
    """``processor._attention_backend = backend`` on every attention module of
    ``model`` (what ``ModelMixin.set_attention_backend`` does, without
    changing the process-wide active backend); returns what to restore."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _check_attention_backend_requirements

    name = AttentionBackendName(backend)
    try:
        _check_attention_backend_requirements(name)
    except RuntimeError as exc:
        raise PlanError(f"{WHERE}.attention_backend = {backend!r}: {exc}",
                        fix="use attention_backend = \"auto\" (torch's own kernels)") from exc
    saved = []
    for m in _attention_modules(model):
        p = m.processor
        if p is None or not hasattr(p, "_attention_backend"):
            continue
        saved.append((p, p.__dict__.get("_attention_backend", _MISSING)))
        p._attention_backend = name
    return saved


_MISSING = object()


def _restore_attrs(saved: list, attr: str) -> None:
    for obj, old in saved:
        if old is _MISSING:
            obj.__dict__.pop(attr, None)
        else:
            setattr(obj, attr, old)


def _resolve_on_cpu(model: Any):
    """``ModelMixin._resolve_parallel_config`` computes the rank's device as
    ``rank % torch.accelerator.device_count()``, a ZeroDivisionError on a
    machine without an accelerator. The same resolution with the CPU device;
    the mesh is always given (``ContextParallelConfig.mesh``)."""
    import torch
    import torch.distributed as dist
    from diffusers.models._modeling_parallel import ContextParallelConfig, ParallelConfig

    def resolve(config):
        if isinstance(config, ContextParallelConfig):
            config = ParallelConfig(context_parallel_config=config)
        config.setup(dist.get_rank(), dist.get_world_size(), torch.device("cpu"),
                     mesh=config.context_parallel_config.mesh)
        model._parallel_config = config
        return config

    return resolve


def _sequence_guard(model: Any, spec: ContextParallelSpec):
    """Forward pre-hook: the token count must divide by the degree (else
    diffusers fails with an assertion deep inside the split)."""
    patch = tuple(int(p) for p in getattr(model.config, "patch_size", (1, 2, 2)))

    def hook(module, args, kwargs):
        x = kwargs.get("hidden_states", args[0] if args else None)
        if x is None or getattr(x, "ndim", 0) != 5 or spec.anything:
            return None
        f, h, w = (int(x.shape[2]) // patch[0], int(x.shape[3]) // patch[1], int(x.shape[4]) // patch[2])
        if (f * h * w) % spec.degree:
            raise PlanError(f"{WHERE} = {spec.to_dict()}: this forward has {f}x{h}x{w} = {f * h * w} tokens "
                            f"(latent frames x H/{8 * patch[1]} x W/{8 * patch[2]}), which do not divide into "
                            f"{spec.degree} equal parts",
                            fix=f"choose stage sizes / num_frames whose token count divides by {spec.degree}, "
                                "or set context_parallel.anything = true")
        return None

    return model.register_forward_pre_hook(hook, with_kwargs=True)


def enable_context_parallel(models: Sequence[Any], spec: Any, *, device: Any, dtype: Any = None,
                            attention: Sequence[str] = ()):
    """diffusers context parallelism on every DiT in ``models``
    (one device mesh ``("ring", "ulysses")`` shared by all of them, e.g. both
    experts of Wan 2.2 A14B); needs an initialised process group of
    ``spec.degree`` processes (:func:`init_distributed`). ``attention``: the
    adapter's declared self-attention processor patterns (fnmatch over
    ``attn_processors`` names); a model none of them matches is refused, so a
    wrong declaration fails here and not as a silent no-op. Returns a handle
    that removes the hooks and puts processors, attention backends and
    ``_parallel_config`` back.
    """
    import torch
    import torch.distributed as dist
    from diffusers import ContextParallelConfig
    from diffusers.hooks.context_parallel import remove_context_parallel

    from cinescale_post.ops.handles import Handle, HandleGroup

    spec = parse_context_parallel(spec)
    if not spec.enabled:
        return Handle("context parallel: off")
    if not (dist.is_available() and dist.is_initialized()):
        raise PlanError(f"{WHERE} = {spec.to_dict()}: torch.distributed is not initialised",
                        fix="launch with torchrun (the render driver calls init_distributed before loading)")
    if dist.get_world_size() != spec.degree:
        raise PlanError(f"{WHERE} = {spec.to_dict()} splits over {spec.degree} processes, the process group has "
                        f"{dist.get_world_size()}", fix=f"use --nproc_per_node {spec.degree}")
    dev = torch.device(device)
    dtype = dtype if dtype is not None else next(models[0].parameters()).dtype
    backend = choose_backend(spec, dev, dtype)
    for m in models:
        check_model(m, spec)
        _check_declared(m, attention)
    mesh = torch.distributed.device_mesh.init_device_mesh(
        "cuda" if dev.type == "cuda" else dev.type, (spec.ring, spec.ulysses), mesh_dim_names=("ring", "ulysses"))
    group = HandleGroup(f"context parallel {spec.describe()} ({backend}) on {len(models)} model(s)")
    try:
        if dev.type == "cpu" and backend == "_native_flash":
            group.add(_cpu_ring_shim())
        for m in models:
            if getattr(m, "_parallel_config", None) is not None:
                raise RuntimeError(f"{type(m).__name__} already has parallelism enabled")
            saved_backend = _set_backend(m, backend)
            group.add(Handle(f"attention backend {backend} on {type(m).__name__}",
                             lambda s=saved_backend: _restore_attrs(s, "_attention_backend")))
            saved_cfg = [(p, p.__dict__.get("_parallel_config", _MISSING))
                         for p in (a.processor for a in _attention_modules(m)) if hasattr(p, "_parallel_config")]
            cp = ContextParallelConfig(ring_degree=spec.ring, ulysses_degree=spec.ulysses, mesh=mesh,
                                       ulysses_anything=spec.anything and spec.ulysses > 1,
                                       ring_anything=spec.anything and spec.ring > 1)
            plan = m._cp_plan  # checked by _check_declared

            def undo(m=m, plan=plan, saved_cfg=saved_cfg):
                remove_context_parallel(m, plan)  # a hook that was never added is skipped
                _restore_attrs(saved_cfg, "_parallel_config")
                m._parallel_config = None

            group.add(Handle(f"context parallel hooks on {type(m).__name__}", undo))
            shadow = dev.type != "cuda" and torch.accelerator.device_count() == 0
            if shadow:
                m._resolve_parallel_config = _resolve_on_cpu(m)  # instance attribute shadows the method
            try:
                m.enable_parallelism(config=cp)
            finally:
                if shadow:
                    del m._resolve_parallel_config
            guard = _sequence_guard(m, spec)
            group.add(Handle(f"token-count guard on {type(m).__name__}", guard.remove))
    except BaseException:
        group.remove()
        raise
    group.spec = spec  # type: ignore[attr-defined]
    group.backend = backend  # type: ignore[attr-defined]
    log.info("%s", group.name)
    return group


__all__ = ["check_model", "choose_backend", "enable_context_parallel"]
