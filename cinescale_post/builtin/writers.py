"""Built-in writers, registered through the same hook as any plugin.

=========  =================================================  ===========  =========
factory    codecs                                             suffixes     per frame
=========  =================================================  ===========  =========
movie      prores_proxy/lt/standard/hq/4444/4444xq, dnxhr_hqx,  .mov .mxf    no
           h264_10, h265_10                                   .mp4
exr        exr (half|float; none ... dwab)                    .exr         yes
png16      png16                                              .png         yes
tiff16     tiff16                                             .tif .tiff   yes
=========  =================================================  ===========  =========

Which suffix goes with which movie codec: ProRes .mov; DNxHR .mov or .mxf;
H.264/H.265 .mp4 or .mov. The writer refuses other pairs with a PlanError.
Media modules are imported inside ``open`` so registering costs no PyAV import.
"""

from __future__ import annotations

from cinescale_post import hookimpl
from cinescale_post.contracts.media import OutputTarget, WriterFactory
from cinescale_post.media.exr import validate_exr_options
from cinescale_post.media.image_writer import validate_image_options
from cinescale_post.media.movie_codecs import MOVIE_CODECS, validate_movie_options


def _open_movie(target: OutputTarget):
    from cinescale_post.media.movie_writer import MovieWriter

    return MovieWriter(target)


def _open_exr(target: OutputTarget):
    from cinescale_post.media.exr import ExrWriter

    return ExrWriter(target)


def _open_image(target: OutputTarget):
    from cinescale_post.media.image_writer import ImageWriter

    return ImageWriter(target)


def _movie_suffixes() -> tuple[str, ...]:
    seen: list[str] = []
    for spec in MOVIE_CODECS.values():
        seen += [s for s in spec.suffixes if s not in seen]
    return tuple(seen)


MOVIE = WriterFactory(
    name="movie",
    codecs=tuple(MOVIE_CODECS),
    suffixes=_movie_suffixes(),
    per_frame=False,
    open=_open_movie,
    validate_options=validate_movie_options,
    describe="ProRes (proxy..4444 XQ), DNxHR HQX, H.264/H.265 10-bit through PyAV; "
             "own 10-bit matrix, source time base and timecode, audio copied, crash-safe MOV",
)

EXR = WriterFactory(
    name="exr",
    codecs=("exr",),
    suffixes=(".exr",),
    per_frame=True,
    open=_open_exr,
    validate_options=validate_exr_options,
    describe="OpenEXR half/float scanline frames with chromaticities, timecode and source attributes",
)


def _image_factory(codec: str, suffixes: tuple[str, ...], what: str) -> WriterFactory:
    return WriterFactory(name=codec, codecs=(codec,), suffixes=suffixes, per_frame=True, open=_open_image,
                         validate_options=validate_image_options,
                         describe=f"16-bit {what} frames (RGB, clipped to 0..1)")


PNG16 = _image_factory("png16", (".png",), "PNG")
TIFF16 = _image_factory("tiff16", (".tif", ".tiff"), "TIFF")


@hookimpl
def register_writers(register):
    for factory in (MOVIE, EXR, PNG16, TIFF16):
        register(factory)
