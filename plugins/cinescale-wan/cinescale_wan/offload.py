"""Where Wan's components sit between uses (``backend_options.offload``).

* ``"none"``: every component on the device for the whole render.
* ``"model"``: one component on the device at a time, kept there until
  another component needs the device — what diffusers' model offload does
  (``DiffusionPipeline.enable_model_cpu_offload``: ``accelerate.
  cpu_offload_with_hook``, where loading a model offloads the previous one).
  The transformer stays resident for every step of a stage (both CFG passes,
  every step) and leaves only when the VAE or a text/image encoder is used, so
  a render moves a small constant number of times (T5 in; T5 out, transformer
  in; transformer out, VAE in; ...), never twice per denoiser call. Peak
  memory is the same as moving around every call: the resident one leaves
  before the next comes in.

We keep our own slot instead of diffusers' hook chain because the cascade
does not use components in the pipeline's fixed order (a render window
encodes with the VAE, runs the transformer, decodes, then encodes again; an
image-to-video stage uses the VAE inside a denoiser call), where the chain
would offload the wrong predecessor and leave two models on the device.
"""

from __future__ import annotations

from typing import Any


class DeviceSlot:
    """The component currently on the device under ``"model"`` offload.

    ``use(module)`` before a module runs: under ``"model"`` the resident
    component (if another) goes to the CPU first, then ``module`` comes to the
    device and stays. ``moves`` counts ``.to`` calls, for tests and logs.
    """

    def __init__(self, device: Any, mode: str = "none"):
        self.device = device
        self.mode = mode
        self.resident: Any = None
        self.moves = 0

    def use(self, module: Any) -> Any:
        if module is None or self.mode != "model" or module is self.resident:
            return module
        if self.resident is not None:
            self.resident.to("cpu")
            self.moves += 1
        module.to(self.device)
        self.moves += 1
        self.resident = module
        return module

    def offload_all(self, modules) -> None:
        """Switch to ``"model"`` mid-render (memory back-off): everything to the CPU."""
        for m in modules:
            if m is not None:
                m.to("cpu")
                self.moves += 1
        self.mode, self.resident = "model", None


__all__ = ["DeviceSlot"]
