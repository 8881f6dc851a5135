"""``cinescale generate``: prompt -> still(s) or clip through a backend's
``generate(plan, seed_for)``, written by the plan's writer."""

from __future__ import annotations

import os
import re
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from cinescale_post.contracts.errors import PlanError
from cinescale_post.contracts.media import Colour, Frame, OutputTarget, SourceInfo
from cinescale_post.orchestrator.ranks import is_main_process
from cinescale_post.orchestrator.backend_calls import call_plugin, load_backend
from cinescale_post.orchestrator.seeds import seed_function


def _synthetic_source(plan, count: int) -> SourceInfo:
    """Generated media has no source; writers still want rate and timing."""
    rate = Fraction(plan.backend_options.get("fps", 24)) if hasattr(plan.backend_options, "get") else Fraction(24)
    return SourceInfo(path="", kind="generated", format="", codec="", width=plan.output.width,
                      height=plan.output.height, pix_fmt="", bit_depth=16, rate=rate, time_base=1 / rate,
                      frame_numbers=tuple(range(1001, 1001 + count)), pts=tuple(range(count)),
                      colour=Colour(1, 13, 1, 1))


def stage_path(path: str, stage: int) -> str:
    """Where stage ``stage``'s images of ``path`` go: ``sh.%04d.exr`` ->
    ``sh.stage0.%04d.exr``, ``still.png`` -> ``still.stage0.png``."""
    p = Path(path)
    m = re.search(r"[._]?%0?\d*d", p.name)
    if m:
        return str(p.with_name(f"{p.name[:m.start()]}.stage{stage}{p.name[m.start():]}"))
    return str(p.with_name(f"{p.stem}.stage{stage}{p.suffix}"))


def _write_images(host, plan, images, path: str, size: tuple[int, int], source: SourceInfo,
                  on_frame=lambda number: None) -> list[str]:
    """Write ``images`` (numbered from 1001) through the plan's writer to
    ``path`` (a frame pattern, or a still: written under a hidden pattern
    name, then renamed into place); the published paths."""
    factory = host.writer(plan.output.codec)
    still = plan.output.kind == "still"
    if still:
        if len(images) != 1:
            raise PlanError(f"{len(images)} images for a single-file output {path}",
                            fix="give a frame pattern such as out.####.exr")
        final = Path(path)
        pattern = str(final.with_name(f".{final.stem}.gen-{os.getpid()}.%04d{final.suffix}"))
    else:
        pattern = path
    target = OutputTarget(path=pattern, codec=plan.output.codec, width=int(size[0]), height=int(size[1]),
                          source=source, frame_numbers=source.frame_numbers[:len(images)],
                          options=dict(plan.output.options), colour=source.colour, audio=False,
                          metadata={"cinescale:prompt": plan.prompt, "cinescale:seed": str(plan.seed),
                                    "cinescale:backend": plan.backend})
    writer = factory.open(target)
    try:
        for i, img in enumerate(images):
            writer.write(Frame(number=1001 + i, index=i, rgb=np.asarray(img, np.float32), pts=i,
                               time_base=source.time_base))
            on_frame(1001 + i)
        paths = writer.close() or [pattern % (1001 + i) for i in range(len(images))]
    except BaseException:
        writer.abort()
        raise
    if still:
        os.replace(paths[0], path)
        paths = [path]
    return list(paths)


def run_generate(plan, host, sink) -> list[str]:
    backend = host.backend(plan.backend)
    t0 = time.monotonic()
    for w in plan.warnings:  # said once: the preset and codec chosen for it, dtype changes (plan.build)
        sink.emit("warning", message=w)
    load_backend(host, backend, plan, lambda m: sink.emit("warning", message=m))
    try:
        images = call_plugin(host, backend, "generate", backend.generate, plan, seed_function(plan.seed))
    finally:
        backend.unload()
    if not is_main_process():  # torchrun: rank 0 publishes, the others only took part in the math
        return []
    source = _synthetic_source(plan, len(images))
    sink.emit("start", total=len(images), done=0, output=plan.output.path, backend=plan.backend)
    paths = _write_images(host, plan, images, plan.output.path, (plan.output.width, plan.output.height), source,
                          on_frame=lambda n: sink.emit("frame", frame=n))
    # keep_stages: the earlier stages next to the output, at their own sizes (how people compare stages)
    for k, stage_images in sorted(backend.stage_outputs().items()):
        h, w = stage_images[0].shape[:2]
        paths += _write_images(host, plan, stage_images, stage_path(plan.output.path, k), (w, h), source)
    sink.emit("finished", status="finished", done=len(images), total=len(images),
              seconds=round(time.monotonic() - t0, 3), outputs=paths)
    return paths
