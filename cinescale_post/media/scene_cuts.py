"""Scene cuts inside a source (``window.cuts = "detect"``), found by PySceneDetect.

PySceneDetect's ``ContentDetector`` (HSV content change; the scenedetect
package on the headless OpenCV, ``[editorial]`` extra) is fed the frames our
own reader decodes, so a cut is numbered exactly as the render numbers its
frames, whatever the container (transport streams, AVI drop frames...).
Frames are shrunk to ``WIDTH`` pixels first: the detector compares colour
histograms and edges, which a thumbnail keeps, at a fraction of the cost.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterable

import numpy as np

from cinescale_post.contracts.errors import UsageError

WIDTH = 256
THRESHOLD = 27.0  # PySceneDetect's default for ContentDetector
MIN_SCENE = 8  # frames: a flash or a fast pan is not a new shot


def detect_cuts(reader, numbers: Iterable[int], rate: Fraction, *, threshold: float = THRESHOLD,
                min_scene: int = MIN_SCENE) -> tuple[int, ...]:
    """Frame numbers among ``numbers`` (read in order from ``reader``) where a
    new shot starts."""
    try:
        import cv2
        from scenedetect import ContentDetector, FrameTimecode
    except ImportError as exc:
        raise UsageError("window.cuts = \"detect\" needs PySceneDetect, which is not installed",
                         fix="pip install 'cinescale-post[editorial]' (or --set window.cuts=none)") from exc
    detector = ContentDetector(threshold=threshold, min_scene_len=min_scene)
    cuts, first = [], None
    for k, frame in enumerate(reader.read(numbers)):
        first = frame.number if first is None else first
        h, w = frame.rgb.shape[:2]
        small = cv2.resize(frame.rgb, (WIDTH, max(1, round(h * WIDTH / w))), interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray((np.clip(small[..., ::-1], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
        for cut in detector.process_frame(FrameTimecode(k, fps=Fraction(rate)), bgr):
            cuts.append(first + cut.frame_num)
    return tuple(sorted(set(cuts)))


__all__ = ["detect_cuts"]
