"""How a model family is built at real size on the meta device, for
``cinescale render/generate --dry-run --simulate`` (no weights are read).

An adapter that can be simulated returns a :class:`MetaBuild` from
:meth:`~cinescale_post.contracts.model.ModelAdapter.meta_build`. The
simulation kit (``cinescale_post.simulate``) then

1. builds every component :meth:`MetaBuild.component_dtypes` names on meta,
   from the plan's model folder (``<folder>/<name>/config.json``) or else from
   the built-in real-size architecture :meth:`MetaBuild.architecture` names
   (``cinescale_post.simulate.configs.ARCHITECTURES``);
2. hands them to :meth:`MetaBuild.assemble`, which returns the family's own
   :class:`~cinescale_post.contracts.model.Model` (the code that renders);
3. runs :meth:`MetaBuild.condition` (the text encoders, each call inside
   ``phase()`` so its FLOPs and memory are counted) and then the core driver's
   cascade with every stage patch, counting FLOPs and peak memory.

A component named ``vae`` is the VAE (its calls are memoised per tile shape).
"""

from __future__ import annotations

import abc
from typing import Any, Callable, ContextManager, Mapping


class MetaBuild(abc.ABC):
    """A family's recipe for a real-size model on the meta device."""

    @abc.abstractmethod
    def architecture(self, plan: Any) -> str:
        """The built-in architecture (``simulate.configs.ARCHITECTURES`` key)
        for ``plan`` (a :class:`~cinescale_post.contracts.model.ModelPlan`)
        when its model folder has no configs; also names the scheduler used
        when the folder has none."""

    @abc.abstractmethod
    def component_dtypes(self, plan: Any) -> dict[str, str]:
        """Component name -> torch dtype name (``"float32"``) to build, in
        the order the pipeline takes them, as a render of ``plan`` would load them."""

    @abc.abstractmethod
    def assemble(self, plan: Any, components: Mapping[str, Any], scheduler: Any) -> Any:
        """The family's Model around the meta ``components`` (a name is
        ``None`` where neither the folder nor the architecture has it) on
        ``plan.device`` (``"meta"``), with ``plan.options``."""

    @abc.abstractmethod
    def condition(self, model: Any, components: Mapping[str, Any], *, size: tuple[int, int], guidance: float,
                  phase: Callable[[], ContextManager]) -> Any:
        """The conditioning a cascade at ``guidance`` uses (prompt and negative
        prompt), computed by running the text encoders on meta token ids of
        the real length, each call inside ``with phase():``. ``size``: (w, h)
        of the base stage (SDXL's micro-conditioning)."""


__all__ = ["MetaBuild"]
