"""The engine contract: what the orchestrator drives (:class:`Backend`), and the
upscalers, fusions, frame rules and window jobs it hands around.

Two kinds of object are registered through ``register_backends``:

* an **engine** -- a :class:`Backend` itself: the classical draft engine, the
  test backends, or a third party's non-diffusion renderer. It receives whole
  windows (``render(job)``) and does everything between frames in and frames out.
* a **model adapter** -- a :class:`cinescale_post.contracts.model.ModelAdapter`:
  a diffusion model family. It is *not* a Backend: it offers encode / decode /
  condition / predict, and the host wraps it in a fresh core render driver for
  every render (:class:`cinescale_post.render.driver.RenderDriver`, itself a
  Backend), which owns the method (the cascade, noise, temporal post-ops,
  memory back-off, the smoke test).

So the orchestrator only ever sees Backends; a diffusion plugin only ever
writes a ModelAdapter. Nothing here imports torch.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from cinescale_post.contracts.errors import PlanError
from cinescale_post.contracts.media import Frame, SourceInfo

class Upscaler(abc.ABC):
    """How a stage result (or, in the draft engine, a frame) is enlarged,
    registered through ``register_upscalers``. ``upscaler(x, size)`` enlarges
    ``x`` to ``size`` = (width, height); pure, no state between calls.

    What ``x`` is, declared by two members:

    * ``space = "pixel"``: numpy (H, W, C) float32 images in [0, 1] (the draft
      engine's classical resizers; between stages the cascade decodes, calls
      it per image and encodes);
    * ``space = "latent"``, ``via_pixels = False``: torch latents (B, C, [F,] H, W),
      ``size`` in latent cells;
    * ``space = "latent"``, ``via_pixels = True``: torch pixels (B, 3, [F,] H, W)
      in [-1, 1] between a VAE decode and encode (the FreeScale reference,
      ``vae-bicubic``), ``size`` in pixels.
    """

    name: str  # unique, kebab-case
    space: str = "latent"
    via_pixels: bool = False
    description: str = ""

    @abc.abstractmethod
    def __call__(self, x: Any, size: tuple[int, int]) -> Any:
        """``x`` enlarged to ``size``."""


class Fusion(abc.ABC):
    """An attention fusion operator, registered through ``register_fusions``.

    ``apply(model, stage, *, latent_hw, jitter, group)`` patches the attention
    layers ``model.patch_points.fusion_attention`` names for one stage and
    returns a removable handle (``ops.handles.Handle``). ``model``: the loaded
    :class:`cinescale_post.api.Model`; ``stage``: a ``ResolvedStage`` (None
    when applied around a whole ladder); ``latent_hw``: the stage's latent
    size; ``jitter``: ``randint`` source for window jitter or None;
    ``group``: (frames per group, anchor index) of the batch rows, set by the
    driver when it batches frames (``group_fusion`` fusions use it).
    """

    name: str = ""
    description: str = ""
    #: True: the fusion works across the frames of a batch (``group``).
    group_fusion: bool = False

    @abc.abstractmethod
    def apply(self, model: Any, stage: Any, *, latent_hw: Any = None, jitter: Any = None,
              group: tuple[int, int] = (1, 0)) -> Any:
        """Patch ``model`` for ``stage``; return the removable handle."""


@dataclass(frozen=True)
class FrameRule:
    """Window lengths a backend accepts: ``n * multiple + offset`` frames
    (images: multiple=1, offset=0; Wan: multiple=4, offset=1)."""

    multiple: int = 1
    offset: int = 0

    def accepts(self, n: int) -> bool:
        return n >= max(1, self.offset) and (n - self.offset) % self.multiple == 0

    def largest_at_most(self, n: int) -> int:
        """The largest accepted length <= n (at least the smallest accepted)."""
        k = max(0, (n - self.offset) // self.multiple)
        return max(k * self.multiple + self.offset, self.offset or 1)


@dataclass
class WindowJob:
    """One temporal window handed to a backend's ``render``.

    ``frames``: source frames in order, handles/context included (the
    orchestrator drops what the window does not own). ``size``: output
    (width, height). ``seed_for(frame_number, tile=0) -> int``: the
    deterministic seed of a frame, derived from the plan seed, the frame
    number and the tile, never from processing order. ``progress(fraction)``
    may be called by the backend between steps. ``lookbehind``: source
    frames just before ``frames`` (in source order) that the backend asked
    to *read* but not render, through ``lookbehind_frames(options, stages)``
    (e.g. to reach the key frame its noise is warped from). ``mattes``: with a
    matte in detail mode (``--matte``), one (size[1], size[0]) float32 in
    [0, 1] per entry of ``frames``: where detail goes, in place of the
    plan's still detail mask (read by backends with ``takes_mattes``).
    """

    frames: Sequence[Frame]
    size: tuple[int, int]
    seed_for: Callable[..., int]
    progress: Callable[[float], None] = lambda f: None
    lookbehind: Sequence[Frame] = ()
    mattes: Sequence[np.ndarray] = ()


class Backend(abc.ABC):
    """A rendering engine as the orchestrator drives it.

    Two kinds are registered through ``register_backends``: engines that are
    backends themselves (the classical draft engine, the test backends), and
    diffusion *model adapters* (:class:`cinescale_post.api.ModelAdapter`),
    which the host wraps in a fresh core render driver for every render
    (:class:`cinescale_post.render.driver.RenderDriver`).

    Registration must be cheap (no weights): class attributes describe it.
    Lifecycle for one render: ``validate`` (inside ``plan.build``, the one
    place of validation) -> ``load(plan)`` once -> ``render(job)`` per window
    (or ``generate``) -> ``unload()``; a worker serving several renders asks
    ``switch(next_plan)`` before loading again. Every method the core calls is declared
    here with its default; the core never probes for optional methods.
    """

    id: str = ""
    family: str = ""  # "classical" | "unet" | "dit" | "test"
    capabilities: frozenset[str] = frozenset()  # {"v2v", "t2i", "t2v", "i2v"}
    frame_rule: FrameRule = FrameRule()
    temporal: bool = False  # True: frames of a window are denoised together
    description: str = ""
    #: Model dtypes ``load`` accepts (checked by ``plan.build``).
    dtypes: tuple[str, ...] = ("float32", "float16", "bfloat16")
    #: ``render`` reads ``WindowJob.mattes`` as its detail mask (``matte.mode`` detail/both).
    takes_mattes: bool = False

    def for_render(self, resolve: Callable[[str, str], Any]) -> "Backend":
        """The engine for one render (``Host.backend``): ``resolve(kind,
        name)`` looks up upscalers and fusions. Default: this object (an
        engine without per-render state); engines with state return a new one."""
        return self

    def validate(self, *, stages: tuple[dict, ...], options: dict, size: tuple[int, int],
                 source: SourceInfo | None) -> tuple[tuple[dict, ...], dict]:
        """Check and normalise the plan's ``stages`` and backend ``options``.

        Called by ``plan.build``; raise ``errors.PlanError`` naming the key,
        the value and what is allowed. Return (stages, options) with
        defaults filled in; they must be JSON-serialisable.
        """
        return stages, options

    def lookbehind_frames(self, options: Mapping[str, Any], stages: Sequence[Mapping[str, Any]]) -> int:
        """How many source frames before each window ``render`` wants to read
        (``WindowJob.lookbehind``); 0 by default."""
        return 0

    def weight_files(self, plan: Any) -> list[str]:
        """Files whose hashes the manifest records (empty without a model)."""
        return []

    def estimate_memory(self, plan: Any) -> dict:
        """Device-memory estimate and the planner's choice (``--dry-run``);
        ``{}`` when the backend does not estimate (engines without a model)."""
        return {}

    @abc.abstractmethod
    def load(self, plan: Any) -> None:
        """Load weights (once per render) for ``plan.device``/``plan.dtype``."""

    def apply_memory_choice(self, choice: Mapping[str, Any]) -> str | None:
        """Adopt ``plan.memory["choice"]`` after ``load``; describe what changed."""
        return None

    def switch(self, plan: Any) -> bool:
        """Serve another render's ``plan`` with what is already loaded (a Ray
        worker rendering the chunks of several shots keeps one model).

        True: this engine now renders ``plan`` exactly as it would after
        ``load(plan)`` and ``apply_memory_choice(plan.memory["choice"])``, so
        pixels do not depend on which shot a worker rendered before. False
        (default): the caller unloads it and loads a fresh engine."""
        return False

    @abc.abstractmethod
    def render(self, job: WindowJob) -> list[np.ndarray]:
        """Return one (H, W, 3) float32 image per ``job.frames`` entry, at
        ``job.size``, same order."""

    def generate(self, plan: Any, seed_for: Callable[..., int]) -> list[np.ndarray]:
        """Text/image to images (t2i/t2v backends): (H, W, 3) float32 each."""
        raise PlanError(f"backend {self.id!r} cannot generate", fix="choose a diffusion preset")

    def stage_outputs(self) -> dict[int, list[np.ndarray]]:
        """After ``generate`` with ``backend_options.keep_stages``: stage index ->
        that stage's (h, w, 3) float32 images at the stage's own size, for every
        stage before the last (written next to the output as
        ``<name>.stage<K>.####.<ext>``). Default: none."""
        return {}

    def reduce_memory(self) -> str | None:
        """After running out of device memory: switch to the next cheaper
        setting and describe it, or None when nothing cheaper exists."""
        return None

    def smoke(self, device: str = "cpu") -> dict | None:
        """A quick self-test on ``device`` for ``cinescale doctor --smoke``
        (None: the backend offers none)."""
        return None

    def unload(self) -> None:  # noqa: B027 - optional
        pass


class ProgressSink(Protocol):
    """Receives progress events (see ``orchestrator.progress``)."""

    def emit(self, event: str, **fields: Any) -> None: ...
