"""Built-in plugin: temporal attention fusions for image backends (issue 7).

* ``cross-frame`` — the self-attention keys/values of an anchor frame shared
  with the other frames of the batch (:mod:`cinescale_post.ops.cross_frame`).

The render driver, when it batches several frames of a clip through the
cascade, says how in the ``group = (frames_per_group, anchor_index)``
argument of ``apply`` (rows ``g * frames + j``; CFG and window stacking keep
that layout). With one frame per group the fusion changes nothing. Like every fusion it is applied per stage when a stage names it
(``fusion = "cross-frame"``), replacing that stage's scale fusion; a backend
can also apply it around the whole ladder (the driver's ``cross_frame =
true``), under the stage's scale fusion.
"""

from __future__ import annotations

from cinescale_post.contracts.hookspecs import hookimpl
from cinescale_post.contracts.engine import Fusion


class CrossFrame(Fusion):
    name = "cross-frame"
    #: Works across the frames of a batch (the ``group`` argument); one frame passes through.
    group_fusion = True
    description = "anchor frame's self-attention keys/values shared with the other frames of the batch"

    def state_for(self, group=(1, 0)):
        from cinescale_post.ops.cross_frame import CrossFrameState

        frames, anchor = group or (1, 0)
        return CrossFrameState(frames=int(frames), anchor=int(anchor))

    def apply(self, backend, stage=None, *, latent_hw=None, jitter=None, group=(1, 0)):
        from cinescale_post.ops.cross_frame import apply_cross_frame

        points = backend.patch_points.fusion_attention
        if not points:
            raise ValueError(f"backend {backend.id!r} declares no self-attention layers for cross-frame attention; "
                             'fix: set fusion = "none" in the stage and cross_frame = false')
        return apply_cross_frame(backend.denoiser, points, self.state_for(group))


CROSS_FRAME = CrossFrame()
FUSIONS = {CROSS_FRAME.name: CROSS_FRAME}


@hookimpl
def register_fusions(register):
    for f in FUSIONS.values():
        register(f)
