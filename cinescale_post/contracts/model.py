"""The model-adapter contract: what a diffusion plugin implements.

A diffusion backend is a *model adapter*. The plugin registers a
:class:`ModelAdapter` (a cheap factory whose capabilities are declared data);
the core wraps it in its render driver (:mod:`cinescale_post.render.driver`),
which owns everything that is the method or the pipeline: the stage ladder,
the conditioning cache, noise policies, temporal post-ops, out-of-memory
back-off, memory estimates and the smoke test. ``ModelAdapter.load(plan)``
returns a fresh :class:`Model` holding that render's weights and state; the
core never writes into it and never keeps a reference to a plugin object
between renders.

Tensor conventions of a :class:`Model`: pixels are torch (B, 3, H, W) — or
(B, 3, F, H, W) for the ``"video"`` latent layout — in [-1, 1]; latents are
already multiplied by the VAE scaling factor (what the denoiser sees).

Nothing here imports torch: values are described, not constructed.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from cinescale_post.contracts.engine import FrameRule

TASKS = ("t2i", "t2v", "i2v", "v2v")
LAYOUTS = ("image", "video")
FAMILIES = ("unet", "dit")
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ModelInfo:
    """Facts from the model's config that size the ladder.

    ``base_size``: (width, height) in pixels the model was trained at (SDXL:
    ``unet.config.sample_size * vae_scale_factor`` = 1024). ``latent_factor``:
    pixels per latent cell. ``size_multiple``: stage sizes are snapped to it.
    ``temporal_factor``: frames per latent frame (1 for image models).
    ``dilation_base``: the (width, height) the dilation factor divides the
    stage size by, when not ``base_size`` (SDXL-Turbo: base 512, dilation
    ``W // 1024``, as the reference's turbo pipeline).
    """

    base_size: tuple[int, int]
    latent_factor: int = 8
    latent_channels: int = 4
    size_multiple: int = 8
    temporal_factor: int = 1
    dilation_base: tuple[int, int] | None = None


@dataclass(frozen=True)
class PatchPoints:
    """Where the method may change the denoiser, declared as data.

    ``dilate_convs``: module names of the convolutions restrained dilation
    touches. ``fusion_attention``: fnmatch patterns over attention-processor
    names that take scale fusion (self-attention only). ``freeu``: true when
    the up-blocks take FreeU (keyed on the decoder stage, ``ops.freeu``).
    ``extra``: backend-specific points (e.g. RoPE modules of a DiT).
    """

    dilate_convs: tuple[str, ...] = ()
    fusion_attention: tuple[str, ...] = ()
    freeu: bool = False
    extra: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can do, declared as data (checked when the plugin is
    registered; an adapter that does not declare them is refused, naming
    the plugin).

    ``tasks``: subset of ``TASKS``. ``family``: "unet" or "dit".
    ``latent_layout``: "image" — latents (B, C, H, W), the frames of a window
    refined one by one (temporal consistency from the driver's noise policies
    and post-ops) — or "video" — latents (B, C, F, H, W), a window denoised as
    a whole, padded to ``frame_rule``. ``dtypes``: model dtypes ``load``
    accepts (checked in the plan). ``stage_keys``/``stage_defaults``: stage
    keys of the adapter's own and its defaults for core stage keys.
    ``noise``: the driver's noise policies this model takes, the first is the
    default (:mod:`cinescale_post.cascade.noise`). ``option_defaults``:
    defaults for the driver-owned ``backend_options`` (e.g. ``posterior``).
    ``attention``: processor-name patterns of the self-attention of a DiT;
    declaring them gives the model the core's context parallelism.
    """

    tasks: frozenset[str]
    family: str
    latent_layout: str
    frame_rule: FrameRule = FrameRule()
    dtypes: tuple[str, ...] = DTYPES
    stage_keys: tuple[str, ...] = ()
    stage_defaults: Mapping[str, Any] = field(default_factory=dict)
    noise: tuple[str, ...] = ("shot", "frame", "flow")
    option_defaults: Mapping[str, Any] = field(default_factory=dict)
    attention: tuple[str, ...] = ()

    def problems(self) -> list[str]:
        """What is wrong with the declaration (empty when it is complete)."""
        out = []
        if not self.tasks or not set(self.tasks) <= set(TASKS):
            out.append(f"tasks {sorted(self.tasks)!r} (declare a non-empty subset of {', '.join(TASKS)})")
        if self.family not in FAMILIES:
            out.append(f"family {self.family!r} (use one of {', '.join(FAMILIES)})")
        if self.latent_layout not in LAYOUTS:
            out.append(f"latent_layout {self.latent_layout!r} (use one of {', '.join(LAYOUTS)})")
        if not isinstance(self.frame_rule, FrameRule):
            out.append(f"frame_rule {self.frame_rule!r} (a FrameRule)")
        if not self.dtypes or not set(self.dtypes) <= set(DTYPES):
            out.append(f"dtypes {self.dtypes!r} (a subset of {', '.join(DTYPES)})")
        if not self.noise:
            out.append("noise: no noise policy declared")
        return out


@dataclass(frozen=True)
class MemoryStage:
    """Device-memory demand of one resolved stage (``plan.build``, no weights).

    ``denoise(window) -> bytes`` and ``vae(tile, window) -> bytes`` as in
    :class:`cinescale_post.ops.memory_estimate.StageDemand`; ``info``: figures shown
    by ``--dry-run``.
    """

    denoise: Any
    vae: Any
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryProfile:
    """What a model declares so the core can estimate and choose memory
    settings before loading anything (``cinescale_post.ops.memory_estimate``).

    ``components``: ``ops.memory_estimate.Component`` list (weights). ``base_size``
    and ``size_multiple`` size the ladder; ``stage(size, resolved_stage) ->
    MemoryStage`` gives each stage's demand. ``tiles``/``offloads``/``windows``:
    the settings the model can switch to. ``denoisers``: component names of
    the denoisers. ``facts``: extra keys of the estimate (dtype, note...).
    """

    components: Sequence[Any]
    base_size: tuple[int, int]
    size_multiple: int
    stage: Any
    tiles: Sequence[Any] = (None,)
    offloads: Sequence[str] = ("none",)
    windows: Sequence[int] = (1,)
    denoisers: Sequence[str] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)


class Model(abc.ABC):
    """A loaded model: the object :meth:`ModelAdapter.load` returns, holding
    the weights and the state of one render. The driver calls only these
    methods; defaults say what a model without the feature does.
    """

    #: The adapter id, for messages.
    id: str = ""
    device: Any = "cpu"
    #: Latent dtype (what the loop and the scheduler see).
    dtype: Any = None
    #: Dtype pixels are handed to ``encode`` in (None: ``dtype``).
    vae_dtype: Any = None

    @property
    @abc.abstractmethod
    def model_info(self) -> ModelInfo:
        """Sizes from the loaded model's config."""

    @property
    @abc.abstractmethod
    def patch_points(self) -> PatchPoints:
        """Patchable modules of :attr:`denoiser`."""

    @property
    @abc.abstractmethod
    def denoiser(self) -> Any:
        """The ``nn.Module`` patches are applied to (UNet / transformer)."""

    @property
    def denoisers(self) -> list:
        """Every model the stage patches go on (two-expert models list both)."""
        return [self.denoiser]

    @abc.abstractmethod
    def make_scheduler(self, stage: Any = None) -> Any:
        """A fresh scheduler (own state) for ``stage`` (a ``ResolvedStage``; None
        outside a ladder)."""

    def stage_sigmas(self, stage: Any) -> Any:
        """Explicit sigmas for ``stage`` (``set_timesteps(steps, sigmas=...)``),
        or None for the scheduler's own spacing (default)."""
        return None

    def stage_patches(self, stage: Any) -> Any:
        """Handles held for the whole of ``stage``, base stage included (an
        iterable; a generator lets the loop remove earlier handles if a later
        one fails). Default: none."""
        return ()

    def stage_info(self, stage: Any) -> dict:
        """Extra facts recorded in a stage result's ``info`` (default none)."""
        return {}

    @abc.abstractmethod
    def encode(self, pixels: Any, *, generator: Any = None, sample: bool = True) -> Any:
        """Pixels -> scaled latents; ``sample``: draw from the posterior with
        ``generator`` or take its mean (controlled mode)."""

    @abc.abstractmethod
    def decode(self, latents: Any) -> Any:
        """Scaled latents -> pixels in about [-1, 1] (not clamped)."""

    @abc.abstractmethod
    def condition(self, prompt: str, negative_prompt: str = "", *, size: tuple[int, int], guidance: float,
                  image: Any = None) -> Any:
        """Prompt (and first-frame ``image``, (H, W, 3) in [0, 1]) conditioning
        for stages run with ``guidance``; ``size``: the base (width, height)
        for micro-conditioning. Opaque to the loop; the driver caches it."""

    @abc.abstractmethod
    def predict(self, x: Any, t: Any, cond: Any, *, guidance: float) -> Any:
        """One guided denoiser call: the model output for the scheduler (``x``
        already through ``scale_model_input``)."""

    def latent_shape(self, size: tuple[int, int], batch: int = 1, frames: int | None = None) -> tuple[int, ...]:
        """Latent shape for a (width, height) stage: 4-D, or 5-D when ``frames`` is given."""
        info = self.model_info
        w, h = size
        hw = (h // info.latent_factor, w // info.latent_factor)
        if frames is None:
            return (batch, info.latent_channels, *hw)
        return (batch, info.latent_channels, int(frames), *hw)

    def freeu(self) -> Any:
        """The ``ops.freeu.FreeUSpec`` held during every stage, or None (default)."""
        return None

    def to_frames(self, pixels: Any, size: tuple[int, int]) -> list | None:
        """Decoded video pixels (1, 3, F, H, W) -> F (h, w, 3) float32 images
        at ``size`` (video layout), or None (default): the driver then resizes
        bicubically (``render.video_path.video_frames``)."""
        return None

    def check_task(self, task: str, image: Any = None) -> None:
        """Refuse a task this particular checkpoint cannot do (raise ``PlanError``)."""

    # -- memory: the settings the driver's back-off walks through

    def memory_steps(self) -> list:
        """Cheaper live settings, in order: opaque values for :meth:`apply_memory`."""
        return []

    def apply_memory(self, step: Any) -> str:
        """Switch to ``step`` (one of :meth:`memory_steps`); describe it."""
        raise NotImplementedError

    def apply_memory_choice(self, choice: Mapping[str, Any]) -> str | None:
        """Adopt the planner's choice at load (VAE tile, offload); describe what changed."""
        return None

    def unload(self) -> None:  # noqa: B027 - optional
        """Free device memory; the object is not used again."""


class ModelAdapter(abc.ABC):
    """A model family, registered through ``register_backends``.

    Registration must be cheap (no torch import, no weights): the class
    attributes describe it. ``parse_options`` and ``weight_files`` run at
    plan time without torch; ``load`` returns a fresh :class:`Model`.
    """

    id: str = ""
    description: str = ""
    capabilities: Capabilities | None = None
    #: The fix an out-of-memory error names for this model ("" : the driver's generic advice).
    oom_advice: str = ""

    def parse_options(self, options: Mapping[str, Any], source: Any = None) -> dict:
        """Check the model's own ``backend_options`` (the driver has removed
        its keys); raise ``PlanError`` naming the key. Return them normalised
        and JSON-serialisable. Default: no options."""
        if options:
            from cinescale_post.contracts.errors import PlanError

            raise PlanError(f"backend_options: unknown key(s) {', '.join(sorted(options))} for backend {self.id!r}",
                            fix="remove them")
        return {}

    def parse_stages(self, stages: Sequence[Mapping[str, Any]]) -> list:
        """Stage specs with the declared keys and defaults; an adapter may
        refuse values here (e.g. a DiT refuses dilation)."""
        from cinescale_post.contracts.stages import parse_stages

        caps = self.capabilities
        return parse_stages(list(stages), extra_keys=caps.stage_keys, defaults=dict(caps.stage_defaults) or None)

    def weight_files(self, plan: Any) -> list[str]:
        """Files whose hashes the manifest records."""
        return []

    def memory_profile(self, plan: Any) -> MemoryProfile | str:
        """The model's memory profile from its configs (no weights), or a
        string saying why none is available."""
        return "this backend declares no memory profile"

    @abc.abstractmethod
    def load(self, plan: Any) -> Model:
        """Load weights for ``plan.device``/``plan.dtype`` and return a new Model."""

    def tiny_model(self, device: str = "cpu") -> dict | None:
        """For the driver's smoke test: ``{"model": a tiny random-weight Model
        in memory, "stages": stage tables of a two-stage generate cascade,
        "size": (w, h)}`` (optional ``frames``: latent frames of a video
        model, ``prompt``, ``negative_prompt``, ``options``, ``facts``), or
        None when the adapter offers no smoke test (default)."""
        return None


def adapter_problems(obj: Any) -> list[str]:
    """Why ``obj`` is not a complete adapter (empty when it is)."""
    if not isinstance(obj, ModelAdapter):
        return [f"{type(obj).__name__} is not a ModelAdapter"]
    out = []
    if not obj.id:
        out.append("id: not declared")
    caps = obj.capabilities
    if not isinstance(caps, Capabilities):
        out.append("capabilities: not declared (a cinescale_post.api.Capabilities)")
    else:
        out += [f"capabilities.{p}" for p in caps.problems()]
    return out


__all__ = ["Capabilities", "DTYPES", "LAYOUTS", "MemoryProfile", "MemoryStage", "Model", "ModelAdapter", "ModelInfo",
           "PatchPoints", "TASKS", "adapter_problems"]
