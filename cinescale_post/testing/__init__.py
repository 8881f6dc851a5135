"""Media factories for tests: tiny clips and image sequences with known pixels.

Tests of cinescale-post, and of third-party plugins, import these to build
their inputs on the fly instead of shipping media. Everything is written with
PyAV / OpenEXR / OpenCV from numpy, and the pixel truth is available to the
caller (``clip_rgb``, ``sequence_rgb``), so decode accuracy can be checked.

Y'CbCr clips are encoded from known R'G'B' with our own exact matrix
(``media.colour.rgb_to_ycbcr``), never through swscale, whose 10-bit
conversion is ~0.4 % off (reference/MEDIA_IO.md section 2.3): a reader that
decodes exactly gets back the code values we wrote.

Modules: ``pixels`` (the truth), ``clips`` (movies), ``sequences`` (image
sequences), ``kit`` (a host, a test plan and drivers for plugin authors),
``conformance`` (the backend suite), ``tiny`` (tiny model configs),
``backends`` (deterministic stand-in backends), ``pytest_plugin`` (fixtures).
The names below are the kit's public face.
"""

from cinescale_post.testing.clips import COLOUR_TAGS, make_clip
from cinescale_post.testing.conformance import (ConformanceError, ConformanceReport, gradient_frames,
                                                run_backend_conformance)
from cinescale_post.testing.kit import adapter_driver, conditioning_spy, fresh_host, make_test_plan, model_driver
from cinescale_post.testing.pixels import clip_rgb, index_rgb, read_index, sequence_rgb, vfr_pts
from cinescale_post.testing.sequences import make_sequence

__all__ = ["make_clip", "make_sequence", "clip_rgb", "index_rgb", "read_index", "sequence_rgb", "vfr_pts",
           "COLOUR_TAGS", "adapter_driver", "conditioning_spy", "model_driver", "ConformanceError", "ConformanceReport", "fresh_host",
           "gradient_frames", "make_test_plan", "run_backend_conformance"]
