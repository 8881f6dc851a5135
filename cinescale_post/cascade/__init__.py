"""The method: the one denoising loop and the stage ladder (:mod:`.ladder`), re-noising and the
cosine blend (:mod:`.schedule`), the noise policies and random streams (:mod:`.noise`,
:mod:`.streams`), latent/pixel upscaling between stages (:mod:`.upscale`) and the frame-level
entry points (:mod:`.frames`). Torch is imported when a module that needs it is first used.
The stage value types are contracts (:mod:`cinescale_post.contracts.stages`); the driver that
runs a model adapter through this is :mod:`cinescale_post.render.driver`.
"""
