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
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from cinescale_post.contracts.engine import FrameRule
from cinescale_post.contracts.options import DRIVER_KEYS

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


@dataclass(frozen=True)
class AdapterOptions:
    """Base of a model adapter's own ``[backend_options]``: a frozen dataclass
    whose fields are the keys it declares (:attr:`ModelAdapter.options_type`).

    The driver assigns each key of a ``[backend_options]`` table to whoever
    declared it — its own :data:`~cinescale_post.contracts.options.DRIVER_KEYS`
    or the adapter's :meth:`keys` — and refuses undeclared ones, naming both
    lists; so :meth:`from_dict` sees only the adapter's keys. It checks and
    normalises their values (raise ``PlanError`` naming the key) and must
    accept its own :meth:`to_dict` again: plans record that form, and the
    driver rebuilds the typed options from it for :class:`ModelPlan`.
    """

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The declared keys (default: every field)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AdapterOptions":
        """Checked options from the adapter's part of ``backend_options``."""
        return cls(**dict(d))

    def to_dict(self) -> dict:
        """JSON-serialisable form (what the plan records)."""
        return {k: getattr(self, k) for k in self.keys()}


@dataclass(frozen=True)
class NoOptions(AdapterOptions):
    """An adapter without options of its own (the default)."""


@dataclass(frozen=True)
class ModelPlan:
    """The part of a render plan a model adapter reads, typed: what
    :meth:`ModelAdapter.load`, :meth:`~ModelAdapter.weight_files` and
    :meth:`~ModelAdapter.memory_profile` receive (the driver builds it from
    the plan; the adapter never sees the plan itself).

    ``model``: the ``--model`` path (None when not given). ``device``: where to
    load (this rank's device under context parallelism). ``dtype``: a name of
    ``Capabilities.dtypes``. ``stages``: the validated stage tables.
    ``options``: the adapter's own options, an instance of its
    ``options_type``. ``driver_options``: the driver's validated keys, read
    only (a memory profile reads ``cross_frame``, ``num_frames``,
    ``context_parallel``). ``mode``: "render" or "generate"; ``window``:
    source frames per render window; ``prompt``/``negative_prompt``.
    """

    model: str | None
    device: str
    dtype: str
    stages: tuple[Mapping[str, Any], ...] = ()
    options: AdapterOptions = NoOptions()
    driver_options: Mapping[str, Any] = field(default_factory=dict)
    mode: str = "render"
    window: int = 1
    prompt: str = ""
    negative_prompt: str = ""

    def weights_key(self) -> tuple:
        """(model, device, dtype, options): the :meth:`ModelAdapter.load_key`
        of an adapter whose ``load`` reads nothing else."""
        import json

        return (self.model, self.device, self.dtype, json.dumps(self.options.to_dict(), sort_keys=True, default=str))


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
    attributes describe it. ``parse_options``, ``weight_files`` and
    ``memory_profile`` run at plan time without torch; ``load`` returns a
    fresh :class:`Model`. Each of them receives a :class:`ModelPlan`.
    """

    id: str = ""
    description: str = ""
    capabilities: Capabilities | None = None
    #: The fix an out-of-memory error names for this model ("" : the driver's generic advice).
    oom_advice: str = ""
    #: The adapter's own ``backend_options``, declared (an :class:`AdapterOptions` subclass).
    options_type: type[AdapterOptions] = NoOptions

    def parse_options(self, options: Mapping[str, Any], source: Any = None) -> dict:
        """Check the adapter's part of ``backend_options`` (only keys of
        :attr:`options_type`; the driver refused undeclared ones) at plan
        time, without torch; ``source``: the probed input, when there is one.
        Return them normalised and JSON-serialisable. Default:
        ``options_type.from_dict(options).to_dict()``."""
        return self.options_type.from_dict(options).to_dict()

    def parse_stages(self, stages: Sequence[Mapping[str, Any]]) -> list:
        """Stage specs with the declared keys and defaults; an adapter may
        refuse values here (e.g. a DiT refuses dilation)."""
        from cinescale_post.contracts.stages import parse_stages

        caps = self.capabilities
        return parse_stages(list(stages), extra_keys=caps.stage_keys, defaults=dict(caps.stage_defaults) or None)

    def weight_files(self, plan: ModelPlan) -> list[str]:
        """Files whose hashes the manifest records."""
        return []

    def memory_profile(self, plan: ModelPlan) -> MemoryProfile | str:
        """The model's memory profile from its configs (no weights), or a
        string saying why none is available."""
        return "this backend declares no memory profile"

    @abc.abstractmethod
    def load(self, plan: ModelPlan) -> Model:
        """Load weights for ``plan.device``/``plan.dtype`` and return a new Model."""

    def load_key(self, plan: ModelPlan) -> Any:
        """What ``load`` reads from ``plan``, as a hashable value: two plans
        with equal keys get the same Model, so a worker rendering several
        shots loads it once (``RenderDriver.switch``). None (default): never
        shared, every render loads its own. An adapter whose ``load`` reads
        only the weights, device, dtype and its options returns those."""
        return None

    def tiny_model(self, device: str = "cpu") -> dict | None:
        """For the driver's smoke test: ``{"model": a tiny random-weight Model
        in memory, "stages": stage tables of a two-stage generate cascade,
        "size": (w, h)}`` (optional ``frames``: latent frames of a video
        model, ``prompt``, ``negative_prompt``, ``options``, ``facts``), or
        None when the adapter offers no smoke test (default)."""
        return None

    def meta_build(self) -> Any:
        """How ``--dry-run --simulate`` builds this model at real size on the
        meta device: a :class:`~cinescale_post.contracts.simulation.MetaBuild`,
        or None when the family cannot be simulated (default)."""
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
    opts = obj.options_type
    if not (isinstance(opts, type) and issubclass(opts, AdapterOptions) and dataclasses.is_dataclass(opts)):
        out.append("options_type: not an AdapterOptions dataclass (subclass cinescale_post.api.AdapterOptions)")
    elif isinstance(caps, Capabilities) and caps.latent_layout in DRIVER_KEYS:
        taken = sorted(set(opts.keys()) & set(DRIVER_KEYS[caps.latent_layout]))
        if taken:
            out.append(f"options_type declares the driver's key(s) {', '.join(taken)} (rename them)")
    return out


__all__ = ["AdapterOptions", "Capabilities", "DTYPES", "LAYOUTS", "MemoryProfile", "MemoryStage", "Model",
           "ModelAdapter", "ModelInfo", "ModelPlan", "NoOptions", "PatchPoints", "TASKS", "adapter_problems"]
