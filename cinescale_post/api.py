"""The public API of cinescale-post: everything a plugin imports.

Plugins' non-test code imports ``cinescale_post.api`` only (tests may also
import ``cinescale_post.testing``); ``tests/test_import_structure.py`` enforces
it. What is here:

* the plugin markers: :data:`hookimpl`;
* the model-adapter contract (:mod:`cinescale_post.contracts.model`):
  :class:`ModelAdapter`, :class:`Model`, :class:`Capabilities`,
  :class:`ModelInfo`, :class:`PatchPoints`, :class:`MemoryProfile`,
  :class:`MemoryStage`, the typed plan view :class:`ModelPlan` and the base
  of an adapter's declared options :class:`AdapterOptions`; and the engine/fusion/media contracts of
  :mod:`cinescale_post.contracts.media` (:class:`Backend`, :class:`Fusion`,
  :class:`Frame`, :class:`FrameRule`, :class:`WindowJob`, readers and writers);
* errors (:mod:`cinescale_post.contracts.errors`), each carrying its exit code and fix;
* stage specs (:class:`StageSpec`, :func:`parse_stages`) and shipped presets
  (:func:`packaged`);
* ops a model may call: removable handles, FreeU, NTK-RoPE, attention
  temperature, LoRA, the flow-matching sigma grid, video pixel fitting,
  image reading, the weight-path checks and loader-error wrapper
  (:func:`local_weights`, :func:`loader_errors`), the memory model (``memory``), ``empty_cache`` and context
  parallelism (``enable_context_parallel``...).

Importing this module does not import torch: names whose modules need torch
(ops, ``fit_frames``...) are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from cinescale_post.contracts.model import (AdapterOptions, Capabilities, MemoryProfile, MemoryStage, Model,
                                            ModelAdapter, ModelInfo, ModelPlan, NoOptions, PatchPoints,
                                            adapter_problems)
from cinescale_post.contracts.options import IMAGE_KEYS, VIDEO_KEYS, check_path_option
from cinescale_post.contracts.stages import ResolvedStage, StageSpec, parse_stages
from cinescale_post.ops.devices import empty_cache
from cinescale_post.contracts.errors import (CinescaleError, InputError, OutOfMemoryError, OutputError, PlanError, PluginError,
                     UnknownNameError, WeightsError)
from cinescale_post.contracts.hookspecs import hookimpl
from cinescale_post.contracts.media import Colour, Frame, OutputTarget, Reader, ReaderFactory, SourceInfo, Writer, WriterFactory
from cinescale_post.contracts.engine import Backend, FrameRule, Fusion, Upscaler, WindowJob
from cinescale_post.ops.handles import Handle, HandleGroup, apply_each, patch_attributes, set_attributes
from cinescale_post.ops.weights import loader_errors, local_weights
from cinescale_post.contracts.presets import packaged
from cinescale_post.contracts.simulation import MetaBuild

# name -> (module, attribute); imported on first use (these modules import torch or heavy media code)
_LAZY = {
    "memory": ("cinescale_post.ops.memory_estimate", None),
    "FreeUSpec": ("cinescale_post.ops.freeu", "FreeUSpec"),
    "RopeSpec": ("cinescale_post.ops.rope", "RopeSpec"),
    "apply_ntk_rope_many": ("cinescale_post.ops.rope", "apply_ntk_rope_many"),
    "AttentionScaleSpec": ("cinescale_post.ops.attention_scale", "AttentionScaleSpec"),
    "apply_attention_scale_many": ("cinescale_post.ops.attention_scale", "apply_attention_scale_many"),
    "apply_lora": ("cinescale_post.ops.lora", "apply_lora"),
    "load_lora": ("cinescale_post.ops.lora", "load_lora"),
    "flow_sigmas": ("cinescale_post.cascade.schedule", "flow_sigmas"),
    "fit_frames": ("cinescale_post.ops.pixels", "fit_frames"),
    "read_image": ("cinescale_post.media.sequence_reader", "read_image"),
    # context parallelism (the driver installs it for adapters that declare attention; these are for
    # a plugin's own tools and checks)
    "ContextParallelSpec": ("cinescale_post.ops.context_parallel", "ContextParallelSpec"),
    "parse_context_parallel": ("cinescale_post.ops.context_parallel", "parse_context_parallel"),
    "init_distributed": ("cinescale_post.ops.context_parallel", "init_distributed"),
    "enable_context_parallel": ("cinescale_post.ops.context_parallel", "enable_context_parallel"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        mod, attr = _LAZY[name]
        m = importlib.import_module(mod)
        value = m if attr is None else getattr(m, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AdapterOptions", "ModelPlan", "NoOptions", "loader_errors", "local_weights", "IMAGE_KEYS", "VIDEO_KEYS", "Backend", "Capabilities", "CinescaleError", "Colour", "Frame", "FrameRule", "Fusion", "Handle", "HandleGroup",
    "InputError", "MemoryProfile", "MetaBuild", "MemoryStage", "Model", "ModelAdapter", "ModelInfo", "OutOfMemoryError",
    "OutputError", "OutputTarget", "PatchPoints", "PlanError", "PluginError", "Reader", "ReaderFactory",
    "ResolvedStage", "SourceInfo", "StageSpec", "UnknownNameError", "Upscaler", "WeightsError", "WindowJob", "Writer",
    "WriterFactory", "adapter_problems", "apply_each", "check_path_option", "empty_cache", "hookimpl", "packaged", "parse_stages",
    "patch_attributes", "set_attributes", *_LAZY,
]
